"""seqae ships its types (PEP 561 `py.typed`), and a type checker sees them: a user's
script that misuses the API is flagged, a correct one is clean."""

import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_py_typed_marker_is_in_the_package():
    assert files("seqae").joinpath("py.typed").is_file()


@pytest.mark.skipif(shutil.which("mypy") is None and not (Path(sys.executable).parent /
                                                          "mypy").exists(),
                    reason="mypy is not installed (pip install -e '.[test]')")
def test_type_checker_sees_the_public_api(tmp_path):
    good = tmp_path / "good.py"
    good.write_text(
        "import numpy as np\nimport seqae\n\n"
        "seqs = seqae.Sequences.from_list([np.zeros((3, 2)), np.ones((5, 2))])\n"
        "ae = seqae.SequenceAutoencoder(latent_dim=4, verbose=0)\n"
        "Z: np.ndarray = ae.fit(seqs).encode(seqs)\n"
        "v = seqae.CharVocab.from_texts(['ab'])\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import seqae\n\n"
        "ae = seqae.SequenceAutoencoder(latent_dim=4)\n"
        "ae.fit()\n"  # missing the data
        "n: str = seqae.Sequences.from_list([]).n_features\n"  # an int
    )
    mypy = [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent",
            "--ignore-missing-imports"]
    ok = subprocess.run([*mypy, str(good)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stdout
    ko = subprocess.run([*mypy, str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert ko.returncode == 1
    assert 'Missing positional argument "X" in call to "fit"' in ko.stdout, ko.stdout
    assert "bad.py:5: error: Incompatible types in assignment" in ko.stdout, ko.stdout
