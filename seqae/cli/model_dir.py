"""STAND-IN for `seqae.model_dir` (issue 23), which is being written on main: the same
names and signatures, so that the CLI switches by importing ``..model_dir`` instead and
this file is deleted. Until then the model folder's files are read and written here,
and only here, in the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["RUN_FILE", "write_data_settings", "read_data_settings", "info", "version"]

RUN_FILE = "run.json"


def version() -> str:
    from .. import __version__

    return __version__


def write_data_settings(path: str | os.PathLike, settings: dict[str, Any]) -> None:
    """``run.json``: the data settings a model was trained with (and its parameters)."""
    from ..io import atomic_write_text

    p = Path(path)
    params = json.loads((p / "config.json").read_text())["params"]
    atomic_write_text(p / RUN_FILE, json.dumps({"data": settings, "model": params}, indent=2))


def read_data_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The data settings saved by `write_data_settings` ({} when there are none)."""
    run = Path(path) / RUN_FILE
    return json.loads(run.read_text())["data"] if run.is_file() else {}


_ARCHITECTURE = ("encoder", "cell", "bidirectional", "hidden_size", "num_layers",
                 "latent_dim", "pooling", "decoder", "depth", "contrastive", "contrast")


def info(path: str | os.PathLike) -> dict[str, Any]:
    """What a model directory holds, from its files (config, metrics, run settings)."""
    from ..estimator import SequenceAutoencoder
    from ..train import best_epoch

    p = Path(path)
    ae = SequenceAutoencoder.load(p)  # validates the folder and the weights' checksum
    config = json.loads((p / "config.json").read_text())
    history = ae.history_  # load read metrics.csv
    best = best_epoch(history)
    scaler = config.get("scaler") or {}
    out: dict[str, Any] = {
        "model": str(p),
        "versions": {"format": config["format_version"], "seqae": config["seqae_version"],
                     "torch": config["torch_version"]},
        "data": {
            "kind": "texts" if ae.vocab_ is not None else
            "tokens" if ae.vocab_size_ else "continuous",
            "features": None if ae.vocab_size_ else ae.n_features_in_,
            "feature_names": ae.feature_names_in_,
            "vocabulary": None if ae.vocab_ is None else "".join(ae.vocab_.chars),
            "vocab_size": ae.vocab_size_ or None,
            "training_sequences": len(ae.train_scores_),  # without validation
            "longest": ae.max_length_,
            "normalize": scaler.get("mode"),
            "source": read_data_settings(p).get("source"),
        },
        "architecture": {k: v for k, v in config["model"].items() if k in _ARCHITECTURE},
        "parameters": sum(t.numel() for t in ae.module_.parameters()),
        "training": {
            "epochs": len(history),
            "seconds": history[-1]["time"] if history else None,
            "best_epoch": None if best is None else int(best["epoch"]),
            "best_train_loss": None if best is None else best["train_loss"],
            "best_val_loss": None if best is None else best.get("val_loss"),
        },
        "threshold": config["threshold"],
        "settings": config["params"],
    }
    if out["architecture"].get("encoder") != "conv":
        out["architecture"].pop("depth", None)
    return out
