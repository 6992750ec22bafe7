"""docs/architecture.md is true of the code: every module is on the page, in one layer
of its picture, and no module imports one from a higher layer (at run time or for type
checking) nor the estimator, except the front ends."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "architecture.md").read_text()


def _layers() -> dict[str, int]:
    """module (top-level name, without .py) -> layer number, from the page's picture."""
    out: dict[str, int] = {}
    layer = None
    for line in PAGE.split("## The import rules")[0].split("The import rules")[0].splitlines():
        m = re.match(r"\s*│\s*(\d)\s+[a-z ]+?\s{2,}(.*)│", line)
        cont = re.match(r"\s*│\s{3,}(.*)│", line)
        if m:
            layer, names = int(m.group(1)), m.group(2)
        elif cont and layer is not None:
            names = cont.group(1)
        else:
            continue
        for name in re.findall(r"([a-z_]+)(?:\.py|/)", names):
            out[name] = layer
    return out


def _modules() -> dict[str, Path]:
    return {str(p.relative_to(ROOT / "seqae")): p for p in (ROOT / "seqae").rglob("*.py")}


def _top(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


def _imports(rel: str, path: Path) -> set[str]:
    """The seqae modules (top-level names) ``rel`` imports."""
    pkg = rel.split("/")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - node.level + 1]
            target = base + (node.module.split(".") if node.module else [])
            names = target[:1] if target else [a.name for a in node.names]
            found.update(n for n in names if n != "__version__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("seqae."):
            found.add(node.module.split(".")[1])
    return found


def test_every_module_is_in_one_layer_and_on_the_list():
    layers = _layers()
    assert len(set(layers.values())) == 6, layers
    for rel in _modules():
        top = _top(rel)
        if top == "__main__":
            continue
        assert top in layers, f"{rel} is not in the picture of docs/architecture.md"
        assert re.search(rf"^\s+{re.escape(top)}(\.py|/)\s", PAGE, re.M), (
            f"{rel} is not in the module list of docs/architecture.md")


def test_no_module_imports_a_higher_layer_or_the_estimator():
    layers = _layers()
    front = {m for m, layer in layers.items() if layer == max(layers.values())}
    for rel, path in _modules().items():
        top = _top(rel)
        if top == "__main__":
            continue
        for target in _imports(rel, path):
            if target == top:
                continue
            assert layers[target] <= layers[top], (
                f"{rel} (layer {layers[top]}) imports {target} (layer {layers[target]})")
            if target == "estimator":
                assert top in front, f"{rel} imports the estimator"
