"""Every ```python block of the README runs, top to bottom, as one script."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)  # examples that save files write here
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    head = text[: text.index("## ")] if "## " in text else text
    assert "make demo" in head and "make test" in head
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_docs_python_blocks_run(tmp_path, monkeypatch):
    """Each page of the documentation site runs as one script, like the README."""
    import pytest

    pages = sorted((README.parent / "docs").glob("*.md"))
    assert {p.stem for p in pages} >= {"index", "embeddings", "anomalies", "decoding", "texts",
                                       "cli", "api", "data", "scale", "model", "defaults",
                                       "architecture"}
    monkeypatch.chdir(tmp_path)
    ran = 0
    import importlib.util

    export = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
    for page in pages:
        if page.stem == "deploy" and not export:
            continue  # its examples need seqae[export]; tests/test_export.py skips, saying so
        namespace: dict = {}
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(),
                                             flags=re.S)):
            exec(compile(block, f"docs/{page.name} python block {i}", "exec"), namespace)
            ran += 1
    if ran == 0:
        pytest.fail("the docs have no python example")


def test_readme_scale_commands_are_those_of_the_docs_page():
    """The README's streaming and torchrun commands (tests/test_stream.py and
    tests/test_distributed.py run them) are also on docs/scale.md, the page that explains
    them: the two never drift apart."""
    text = README.read_text()
    page = (README.parent / "docs" / "scale.md").read_text()
    for heading in ("## Data larger than memory", "## More than one process"):
        section = text[text.index(heading):]
        block = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
        commands = [line for line in block.splitlines() if line.strip()
                    and not line.startswith("#")]
        assert commands, heading
        for line in commands:
            assert line in page, f"{heading}: {line!r} is not on docs/scale.md"
