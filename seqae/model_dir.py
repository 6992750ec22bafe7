"""The model folder: write, read, check, and say what it holds.

Files: ``weights.safetensors``, ``config.json`` (parameters, architecture, the task's
statistics or vocabulary, feature names, versions, training scores, threshold and the
weights' checksum), ``metrics.csv`` (the history, a row per epoch) and, when the
command line trained it, ``run.json`` (how the data were read). Each file is written
atomically; ``config.json`` last, so a folder is complete once it holds a config naming
its weights. Nothing is ever unpickled.

`Fitted` is everything `fit` learns, committed to an estimator at once; `write` and
`read` move it to and from a folder; `info` summarises a folder for ``seqae info``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .errors import IncompatibleModelError
from .io import atomic_write_bytes, atomic_write_text
from .nn.model import AutoencoderNet, ModelConfig, current_names
from .tasks import Task, from_config
from .train import Callback, best_epoch, resolve_device

__all__ = ["FORMAT_VERSION", "RUN_FILE", "Fitted", "PartialWriter", "write", "read", "info",
           "version", "write_data_settings", "read_data_settings", "read_history"]

# 2: the encoder's body is ``encoder.body`` (was ``encoder.rnn``, which also held the
# convolutional encoder), ``ModelConfig.max_length`` is ``longest_predicted`` and the
# unreachable ``conv_output`` and ``crop_min`` are gone. Format 1 folders are read.
FORMAT_VERSION = 2
READS = (1, 2)
RUN_FILE = "run.json"


@dataclass
class Fitted:
    """What a fit learns: the network and its config, the task (scaler or vocabulary),
    the longest training sequence, the history, the training scores and the threshold
    (None while a fit is running)."""

    net: AutoencoderNet
    config: ModelConfig
    task: Task
    max_length: int
    history: list[dict[str, Any]]
    train_scores: np.ndarray | None = None
    threshold: float | None = None


def version() -> str:
    """seqae's version."""
    return __version__


def write(path: str | Path, fitted: Fitted, params: dict[str, Any], kind: str,
          partial_epoch: int | None = None,
          state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``fitted`` (with the estimator's ``params``) to folder ``path``; with
    ``partial_epoch``, the model of a running fit after that epoch: the weights ``state``
    (the best epoch's so far; the current ones when None), no training scores or
    threshold yet."""
    from safetensors.torch import save

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = fitted.net.state_dict() if state is None else state
    blob = save({k: v.detach().cpu().contiguous() for k, v in state.items()})
    atomic_write_bytes(path / "weights.safetensors", blob)
    if fitted.history:
        buf = io.StringIO()
        keys = list(dict.fromkeys(k for rec in fitted.history for k in rec))
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(fitted.history)
        atomic_write_text(path / "metrics.csv", buf.getvalue())
    task = fitted.task.to_config()
    config = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "seqae_version": version(),
        "torch_version": torch.__version__,
        "params": params,
        "model": fitted.config.to_dict(),
        "n_features": task["n_features"],
        "feature_names": task["feature_names"],
        "scaler": task["scaler"],
        "vocab_size": task["vocab_size"],
        "vocab": task["vocab"],
        "max_length": fitted.max_length,
        "train_scores": (None if partial_epoch or fitted.train_scores is None
                         else fitted.train_scores.tolist()),
        "threshold": None if partial_epoch else fitted.threshold,
        "partial": None if partial_epoch is None else {
            "epoch": partial_epoch,
            "note": "written during fit: the best weights up to this epoch, no "
                    "training scores or threshold yet"},
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    atomic_write_text(path / "config.json", json.dumps(config, indent=2))
    return path


class PartialWriter(Callback):
    """A training callback that writes the model of a running fit into ``folder`` after
    every epoch: the best epoch's weights so far, the history, no scores yet."""

    def __init__(self, fitted: Fitted, params: dict[str, Any], kind: str, folder: Path):
        self.fitted, self.params, self.kind, self.folder = fitted, params, kind, folder
        self.best: dict[str, torch.Tensor] | None = None

    def on_best(self, epoch: int, state: dict[str, torch.Tensor]) -> None:
        self.best = state

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        history = self.fitted.history
        if not history and epoch > 1:  # resumed: the past epochs' records
            history = read_history(self.folder / "metrics.csv")
        self.fitted.history = [r for r in history if r["epoch"] < epoch] + [record]
        write(self.folder, self.fitted, self.params, self.kind, partial_epoch=epoch,
              state=self.best)


def _config(path: Path, kind: str) -> dict[str, Any]:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise IncompatibleModelError(f"{path} is not a seqae model directory (no config.json)")
    try:
        config = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IncompatibleModelError(f"{cfg_file} is not valid JSON: {e}") from None
    found = config.get("format_version")
    if config.get("kind") != kind or found not in READS:
        raise IncompatibleModelError(
            f"{path} holds a {config.get('kind')!r} model in format {found!r}; this seqae "
            f"({version()}) reads {kind} formats {', '.join(map(str, READS))}"
        )
    return config


def _from_format_1(path: Path, model: dict[str, Any],
                   state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """A format-1 model config and weights in today's names."""
    model = dict(model)
    for key, default in (("conv_output", 0), ("crop_min", 0.5)):
        if model.pop(key, default) != default:
            raise IncompatibleModelError(
                f"{path}: config.json sets model.{key}, which this seqae no longer has")
    model["longest_predicted"] = model.pop("max_length")
    return model, current_names(state)


def read(path: str | Path, kind: str,
         device: str = "auto") -> tuple[dict[str, Any], Fitted]:
    """``(params, fitted)`` of the model in folder ``path`` (written by `write`), the
    network on ``device``; a folder of another kind or format, or whose weights do not
    match their checksum, raises `IncompatibleModelError`."""
    config, fitted = _read(Path(path), kind, device)
    return dict(config["params"]), fitted


def _read(path: Path, kind: str, device: str) -> tuple[dict[str, Any], Fitted]:
    """``(config.json as read, fitted)``: `read`, with the config it checked."""
    from safetensors.torch import load

    config = _config(path, kind)
    blob = (path / "weights.safetensors").read_bytes()
    if hashlib.sha256(blob).hexdigest() != config["weights_sha256"]:
        raise IncompatibleModelError(
            f"{path}/weights.safetensors does not match config.json (checksum differs): "
            "the directory was modified or partly written"
        )
    model, state = config["model"], load(blob)
    if config["format_version"] == 1:
        model, state = _from_format_1(path, model, state)
    model_config = ModelConfig(**model)
    net = AutoencoderNet(model_config)
    net.load_state_dict(state)
    net.to(resolve_device(device)).eval()
    # a folder written during fit (see `fit`'s checkpoint_dir) has no scores yet
    scores = np.asarray(config.get("train_scores") or [], np.float64)
    threshold = None if config.get("threshold") is None else float(config["threshold"])
    fitted = Fitted(net, model_config, from_config(config),
                    config["max_length"], read_history(path / "metrics.csv"), scores,
                    threshold)
    return config, fitted


def read_history(path: Path) -> list[dict[str, Any]]:
    """The history a ``metrics.csv`` holds ([] without one)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
            for row in csv.DictReader(f)
        ]


def write_data_settings(path: str | Path, settings: dict[str, Any]) -> None:
    """Keep how the command line read the training data (``run.json``)."""
    atomic_write_text(Path(path) / RUN_FILE, json.dumps(settings, indent=2))


def read_data_settings(path: str | Path) -> dict[str, Any]:
    """The ``data`` settings of ``run.json`` ({} when the folder has none)."""
    run = Path(path) / RUN_FILE
    return json.loads(run.read_text())["data"] if run.is_file() else {}


_ARCHITECTURE = ("encoder", "cell", "bidirectional", "hidden_size", "num_layers", "latent_dim",
                 "pooling", "decoder", "depth", "contrastive", "contrast")


def info(path: str | Path, kind: str = "SequenceAutoencoder") -> dict[str, Any]:
    """What a model folder holds (after checking it as `read` does): versions, data,
    architecture, parameter count, training, threshold and settings."""
    path = Path(path)
    config, fitted = _read(path, kind, "cpu")
    task, history = fitted.task, fitted.history
    best = best_epoch(history)
    scaler = config.get("scaler") or {}
    out: dict[str, Any] = {
        "model": str(path),
        "versions": {"format": config["format_version"], "seqae": config["seqae_version"],
                     "torch": config["torch_version"]},
        "data": {
            "kind": task.kind,
            "features": None if task.vocab_size else task.n_features,
            "feature_names": task.feature_names,
            "vocabulary": None if task.vocab is None else "".join(task.vocab.chars),
            "vocab_size": task.vocab_size or None,
            "training_sequences": 0 if fitted.train_scores is None else len(fitted.train_scores),
            "longest": fitted.max_length,
            "normalize": scaler.get("mode"),
            "source": read_data_settings(path).get("source"),
        },
        "architecture": {k: v for k, v in config["model"].items() if k in _ARCHITECTURE},
        "parameters": sum(t.numel() for t in fitted.net.parameters()),
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
