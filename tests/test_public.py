"""Every public name the README, the design contract and the issues promise is importable
from `seqae` (lazily: nothing heavy is imported until a name is touched)."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import seqae

ROOT = Path(__file__).resolve().parents[1]

# Names promised outside the README (design contract, issue texts), as dotted paths.
PROMISED = [
    "seqae.Sequences", "seqae.Sequences.from_list", "seqae.Sequences.from_padded",
    "seqae.Sequences.from_table", "seqae.Sequences.pad", "seqae.Sequences.sequence_stats",
    "seqae.Sequences.step_index",
    "seqae.SequenceAutoencoder", "seqae.SequenceAutoencoder.fit",
    "seqae.SequenceAutoencoder.encode", "seqae.SequenceAutoencoder.transform",
    "seqae.SequenceAutoencoder.reconstruct", "seqae.SequenceAutoencoder.decode",
    "seqae.SequenceAutoencoder.score", "seqae.SequenceAutoencoder.impute",
    "seqae.SequenceAutoencoder.threshold_for", "seqae.SequenceAutoencoder.is_anomaly",
    "seqae.neighbours.Neighbours", "seqae.neighbours.Reservoir", "seqae.neighbours.REFERENCE",
    "seqae.SequenceAutoencoder.save",
    "seqae.SequenceAutoencoder.load", "seqae.SequenceAutoencoder.get_params",
    "seqae.SequenceAutoencoder.set_params", "seqae.clone",
    "seqae.SequenceAutoencoder.export", "seqae.ExportError", "seqae.export.export_model",
    "seqae.CharVocab", "seqae.CharVocab.from_texts", "seqae.vocab", "seqae.vocab.CharVocab",
    "seqae.Scaler", "seqae.scaling.Scaler",
    "seqae.SeqaeError", "seqae.SequenceDataError", "seqae.IncompatibleModelError",
    "seqae.DataFileError", "seqae.read_sequences", "seqae.io.read_ts",
    "seqae.lengths_to_mask", "seqae.mask_from_value",
    "seqae.losses.masked_cross_entropy", "seqae.losses.masked_mse",
    "seqae.train.best_epoch", "seqae.train.Callback", "seqae.train.TrainConfig",
    "seqae.progress.Progress",
    "seqae.nn.KerasMaskedRNN", "seqae.nn.RNNEncoder", "seqae.nn.ConvEncoder",
    "seqae.nn.RepeatDecoder", "seqae.nn.AutoregressiveDecoder", "seqae.nn.ModelConfig",
    "seqae.nn.AutoencoderNet", "seqae.datasets.make_demo",
]


def _resolve(dotted: str):
    parts = dotted.split(".")
    assert parts[0] == "seqae"
    obj = seqae
    for part in parts[1:]:
        obj = getattr(obj, part)  # AttributeError names what is missing
    return obj


def _documented() -> list[str]:
    names = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]:
        for m in re.finditer(r"\bseqae(?:\.[A-Za-z_][A-Za-z0-9_]*)+", doc.read_text()):
            name = m.group(0)
            if name.startswith("seqae.keras"):
                continue  # the optional Keras front end: tests/test_keras.py
            names.add(name)
    return sorted(names)


@pytest.mark.parametrize("name", PROMISED + _documented())
def test_promised_name_resolves(name):
    assert _resolve(name) is not None


@pytest.mark.parametrize("name", seqae.__all__)
def test_everything_in_all_resolves(name):
    assert getattr(seqae, name) is not None
    assert name in dir(seqae)


def test_every_submodule_all_resolves():
    for mod in seqae._SUBMODULES:
        module = importlib.import_module(f"seqae.{mod}")
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"seqae.{mod}.__all__ lists missing {name!r}"


def test_unknown_name_is_a_clear_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        seqae.Nope  # noqa: B018


def test_import_is_light():
    """``import seqae`` alone does not import torch (the CLI's --help stays instant)."""
    code = "import sys, seqae; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
