"""The model folder: write, read, check, and say what it holds.

Files: ``weights.safetensors``, ``config.json`` (parameters, architecture, the task's
statistics or vocabulary, feature names, versions, training scores, threshold and the
weights' checksum), ``metrics.csv`` (the history, a row per epoch), with
``anomaly_score="neighbours"`` ``neighbours.safetensors`` (the reference embeddings,
`seqae.neighbours`, its checksum in the config) and, when the command line trained it,
``run.json`` (how the data were read). Each file is written
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
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .errors import IncompatibleModelError
from .io import atomic_write_bytes, atomic_write_text
from .neighbours import REFERENCE, Neighbours
from .nn.model import CONTRASTS, DECODERS, ENCODERS, AutoencoderNet, ModelConfig, current_names
from .params import PARAMS, limit
from .params import validate as validate_params
from .tasks import Task, from_config
from .train import Callback, best_epoch, resolve_device

__all__ = ["FORMAT_VERSION", "RUN_FILE", "Fitted", "PartialWriter", "write", "read", "info",
           "version", "write_data_settings", "read_data_settings", "read_history",
           "is_model_folder", "check_target", "check_config"]

# 2: the encoder's body is ``encoder.body`` (was ``encoder.rnn``, which also held the
# convolutional encoder), ``ModelConfig.max_length`` is ``longest_predicted`` and the
# unreachable ``conv_output`` and ``crop_min`` are gone. Format 1 folders are read.
FORMAT_VERSION = 2
READS = (1, 2)
RUN_FILE = "run.json"
NEIGHBOURS_FILE = "neighbours.safetensors"


@dataclass
class Fitted:
    """What a fit learns: the network and its config, the task (scaler or vocabulary),
    the longest training sequence, the history, the training scores and the threshold
    (None while a fit is running), and how many training sequences those scores were
    drawn from (``n_train``: more than the scores when a time budget made the pass after
    training score a sample; None: as many as the scores)."""

    net: AutoencoderNet
    config: ModelConfig
    task: Task
    max_length: int
    history: list[dict[str, Any]]
    train_scores: np.ndarray | None = None
    threshold: float | None = None
    n_train: int | None = None
    neighbours: Neighbours | None = None  # anomaly_score="neighbours": the reference


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
    check_target(path)
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
        # the scores (the threshold, the length head) are those of a sample when the
        # time budget left no time to score every training sequence (issue 29)
        "scored": None if partial_epoch or fitted.train_scores is None else {
            "sequences": len(fitted.train_scores),
            "of": len(fitted.train_scores) if fitted.n_train is None else fitted.n_train},
        "partial": None if partial_epoch is None else {
            "epoch": partial_epoch,
            "note": "written during fit: the best weights up to this epoch, no "
                    "training scores or threshold yet"},
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    stale = path / NEIGHBOURS_FILE
    if fitted.neighbours is not None and partial_epoch is None:
        from safetensors.numpy import save as save_arrays

        ref = save_arrays(fitted.neighbours.tensors())
        atomic_write_bytes(stale, ref)
        config["neighbours_sha256"] = hashlib.sha256(ref).hexdigest()
    elif stale.is_file():  # an earlier model's, in a folder seqae wrote
        stale.unlink()
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


# ------------------------------------------------------------------- what a folder is
# what a fit writes in its folder before its first model (checkpoints: `seqae.checkpoint`;
# temporary files of atomic writes: ".NAME.*.tmp")
_CHECKPOINTS = re.compile(r"epoch-\d+(-\d+)?|\..+\.tmp")
# config.json is read only below this size (a model's config is a few hundred KB at most:
# its training scores are one number per training sequence)
CONFIG_BYTES = 1 << 30


def _marked(path: Path) -> bool:
    """Whether ``path/config.json`` says seqae wrote the folder (a JSON object with a
    ``kind`` and a ``format_version``)."""
    cfg = path / "config.json"
    try:
        if not cfg.is_file() or cfg.stat().st_size > CONFIG_BYTES:
            return False
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and {"kind", "format_version"} <= set(config)


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder seqae wrote: its ``config.json`` is seqae's, or (a
    fit stopped before its first model was written) it holds only checkpoints."""
    path = Path(path)
    if not path.is_dir():
        return False
    if _marked(path):
        return True
    names = [p.name for p in path.iterdir()]
    return bool(names) and all(_CHECKPOINTS.fullmatch(n) for n in names)


def check_target(path: str | Path) -> None:
    """Raise unless a model may be written to folder ``path``: it does not exist, is
    empty, or is a model folder seqae wrote (which is replaced); a file, or a folder
    holding anything else, is refused before any work, as its files are not seqae's."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise IncompatibleModelError(f"{path} is a file, not a folder: a model is written to "
                                     "a folder (give a new or empty one)")
    if path.is_dir() and any(path.iterdir()) and not is_model_folder(path):
        raise IncompatibleModelError(
            f"{path} is not empty and is not a seqae model folder (its files are not seqae's, "
            f"e.g. {sorted(p.name for p in path.iterdir())[:5]}): give a new or empty folder")


# ------------------------------------------------------------------- config schema
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v))


def _int_in(lo: int, hi: str | int | None = None) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        top = limit(hi) if isinstance(hi, str) else hi
        return _is_int(v) and v >= lo and (top is None or v <= top)
    if isinstance(hi, str):
        return ok, (f"an int in {lo}..{limit(hi):,} (raise the limit with "
                    f"SEQAE_LIMIT_{hi.upper()})")
    return ok, f"an int >= {lo}" if hi is None else f"an int in {lo}..{hi}"


def _num_in(lo: float, hi: float = math.inf) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_num(v) and lo <= v <= hi), f"a finite number in [{lo:g}, {hi:g}]"


def _one_of(*values: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, str) and v in values), f"one of {values}"


def _typed(t: type, what: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, t) and not isinstance(v, bool) or
            (t is bool and isinstance(v, bool))), what


def _or_none(rule: tuple[Callable[[Any], bool], str]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v is None or rule[0](v)), f"null or {rule[1]}"


def _list_of(rule: Callable[[Any], bool], what: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, list) and all(rule(x) for x in v)), what


_HEX64 = re.compile(r"[0-9a-f]{64}")

# config.json: every key, what it must be, and whether it may be absent (older folders)
_TOP: dict[str, tuple[tuple[Callable[[Any], bool], str], bool]] = {
    "format_version": ((lambda v: v in READS and _is_int(v), f"one of {READS}"), True),
    "kind": (_typed(str, "a string"), True),
    "seqae_version": (_typed(str, "a string"), True),
    "torch_version": (_typed(str, "a string"), True),
    "params": (_typed(dict, "an object of parameters"), True),
    "model": (_typed(dict, "an object (the architecture)"), True),
    "n_features": (_int_in(1, "n_features"), True),
    "feature_names": (_or_none(_list_of(lambda x: isinstance(x, str), "a list of strings")),
                      True),
    "scaler": (_or_none(_typed(dict, "an object")), False),
    "vocab_size": (_int_in(0, "vocab_size"), True),
    "vocab": (_or_none(_typed(dict, "an object")), True),
    "max_length": (_int_in(1), True),
    "train_scores": (_or_none(_list_of(_is_num, "a list of finite numbers")), True),
    "threshold": (_or_none((_is_num, "a finite number")), True),
    "scored": (_or_none(_typed(dict, "an object")), False),
    "partial": (_or_none(_typed(dict, "an object")), False),
    "weights_sha256": ((lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)),
                        "64 hexadecimal digits"), True),
    "neighbours_sha256": ((lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)),
                           "64 hexadecimal digits"), False),
    # folders written before the scaler had its own entry
    "mean": (_list_of(_is_num, "a list of finite numbers"), False),
    "std": (_list_of(_is_num, "a list of finite numbers"), False),
}

_MODEL: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n_features": _int_in(1, "n_features"),
    "latent_dim": _int_in(1, "latent_dim"),
    "hidden_size": _int_in(1, "hidden_size"),
    "num_layers": _int_in(1, "num_layers"),
    "cell": _one_of("gru", "lstm"),
    "bidirectional": _typed(bool, "true or false"),
    "pooling": (PARAMS["pooling"].check, PARAMS["pooling"].allowed),
    "dropout": _num_in(0.0, 1.0),
    "decoder": _one_of(*DECODERS),
    "position": _one_of("fourier", "relative", "none"),
    "reverse_target": _typed(bool, "true or false"),
    "longest_predicted": _int_in(1),
    "vocab_size": _int_in(0, "vocab_size"),
    "embedding_dim": _int_in(1, "hidden_size"),
    "token_dropout": _num_in(0.0, 1.0),
    "encoder": _one_of(*ENCODERS),
    "depth": _int_in(0, 64),
    "kernel_size": _int_in(1, 64),
    "contrastive": _num_in(0.0),
    "contrast": _one_of(*CONTRASTS),
    "hide": _num_in(0.0, 1.0),
    "pooled_latent": _typed(bool, "true or false"),
    "bottleneck": _int_in(0, "latent_dim"),
    "patch": _int_in(1, 4096),
    "copies": _num_in(0.0),
    "copies_kind": _one_of("random", "crops"),
    "missing": _typed(bool, "true or false"),
    "hide_observed": _num_in(0.0, 1.0),
    "imputer": _typed(bool, "true or false"),
}
assert set(_MODEL) == {f.name for f in fields(ModelConfig)}


def _bad(cfg_file: Path, key: str, value: Any, what: str) -> IncompatibleModelError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return IncompatibleModelError(f"{cfg_file}: {key} must be {what}, got {shown} (the file "
                                  "was changed, or not written by seqae)")


def _check_fields(cfg_file: Path, where: str, config: dict[str, Any],
                  schema: dict[str, tuple[Callable[[Any], bool], str]],
                  required: set[str]) -> None:
    unknown = sorted(set(config) - set(schema))
    if unknown:
        raise IncompatibleModelError(f"{cfg_file}: unknown key(s) {where}{unknown}; a seqae "
                                     f"config has {sorted(schema)}")
    missing = sorted(required - set(config))
    if missing:
        raise IncompatibleModelError(f"{cfg_file}: missing key(s) {where}{missing}")
    for key, value in config.items():
        ok, what = schema[key]
        if not ok(value):
            raise _bad(cfg_file, where + key, value, what)


def check_config(config: Any, cfg_file: Path) -> dict[str, Any]:
    """``config`` (as read from ``cfg_file``) checked against the schema of a seqae
    config.json, before anything is built from it: every key known and of its type and
    range, none missing, sizes within `seqae.params.LIMITS`, the parameters valid, the
    architecture complete, the scaler's and vocabulary's entries consistent. Returns
    the model's architecture in today's names (a format-1 folder's is renamed)."""
    if not isinstance(config, dict):
        raise IncompatibleModelError(f"{cfg_file}: expected a JSON object, got "
                                     f"{type(config).__name__}")
    _check_fields(cfg_file, "", config, {k: rule for k, (rule, _) in _TOP.items()},
                  {k for k, (_, needed) in _TOP.items() if needed})
    unknown = sorted(set(config["params"]) - set(PARAMS))
    if unknown:
        raise IncompatibleModelError(f"{cfg_file}: unknown parameter(s) {unknown} in params")
    try:
        validate_params(config["params"])
    except ValueError as e:
        raise IncompatibleModelError(f"{cfg_file}: params: {e}") from None
    model = dict(config["model"])
    if config["format_version"] == 1:
        for key, default in (("conv_output", 0), ("crop_min", 0.5)):
            if model.pop(key, default) != default:
                raise IncompatibleModelError(
                    f"{cfg_file}: sets model.{key}, which this seqae no longer has")
        if "max_length" in model:
            model["longest_predicted"] = model.pop("max_length")
    _check_fields(cfg_file, "model.", model, _MODEL, {"n_features"})
    n = config["n_features"]
    names = config["feature_names"]
    if names is not None and len(names) != n:
        raise _bad(cfg_file, "feature_names", names, f"a list of {n} names (n_features)")
    if model["n_features"] != n:
        raise _bad(cfg_file, "model.n_features", model["n_features"], f"{n} (n_features)")
    if model.get("vocab_size", 0) != config["vocab_size"]:
        raise _bad(cfg_file, "model.vocab_size", model.get("vocab_size", 0),
                   f"{config['vocab_size']} (vocab_size)")
    _check_scaler(cfg_file, config, n)
    vocab = config["vocab"]
    if vocab is not None:
        chars = vocab.get("chars")
        if (set(vocab) != {"type", "chars"} or vocab.get("type") != "CharVocab"
                or not isinstance(chars, list)
                or not all(isinstance(c, str) and len(c) == 1 for c in chars)
                or len(set(chars)) != len(chars)):
            raise _bad(cfg_file, "vocab", vocab, "{'type': 'CharVocab', 'chars': [distinct "
                       "single characters]}")
        if len(chars) + 4 != config["vocab_size"]:
            raise _bad(cfg_file, "vocab_size", config["vocab_size"],
                       f"{len(chars) + 4} (the vocabulary's characters and 4 reserved ids)")
    return model


def _check_scaler(cfg_file: Path, config: dict[str, Any], n: int) -> None:
    scaler = config.get("scaler")
    if scaler is None:
        return
    keys = {"mode", "mode_", "spread", "mean", "std"}
    fill = {"fill_mean", "fill_std"}  # sequence scaling, since issue 25: optional
    if set(scaler) not in (keys, keys | fill):
        raise _bad(cfg_file, "scaler", sorted(scaler), f"an object with keys {sorted(keys)} "
                   f"(and, both or neither, {sorted(fill)})")
    if not PARAMS["normalize"].check(scaler["mode"]):
        raise _bad(cfg_file, "scaler.mode", scaler["mode"], PARAMS["normalize"].allowed)
    if scaler["mode_"] not in ("global", "sequence", "none"):
        raise _bad(cfg_file, "scaler.mode_", scaler["mode_"], "'global', 'sequence' or 'none'")
    if not _is_num(scaler["spread"]):
        raise _bad(cfg_file, "scaler.spread", scaler["spread"], "a finite number")
    for key in ("mean", "std", *sorted(fill & set(scaler))):
        v = scaler[key]
        if not (isinstance(v, list) and len(v) == n and all(_is_num(x) for x in v)):
            raise _bad(cfg_file, f"scaler.{key}", v, f"a list of {n} finite numbers")
    for key in ("std", "fill_std"):
        zero = [i for i, x in enumerate(scaler.get(key, [])) if not x > 0]
        if zero:
            raise _bad(cfg_file, f"scaler.{key}[{zero[0]}]", scaler[key][zero[0]],
                       "a number > 0 (a feature without spread is saved with std 1)")


def _config(path: Path, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config.json, the architecture checked)`` of the model folder ``path``."""
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        what = "not a regular file" if cfg_file.exists() else "no config.json"
        raise IncompatibleModelError(f"{path} is not a seqae model directory ({what})")
    if cfg_file.stat().st_size > CONFIG_BYTES:
        raise IncompatibleModelError(f"{cfg_file} is {cfg_file.stat().st_size:,} bytes, more "
                                     "than a seqae config ever holds")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IncompatibleModelError(f"{cfg_file} is not valid JSON: {e}") from None
    if isinstance(config, dict):
        found = config.get("format_version")
        if config.get("kind") != kind or found not in READS:
            raise IncompatibleModelError(
                f"{path} holds a {config.get('kind')!r} model in format {found!r}; this seqae "
                f"({version()}) reads {kind} formats {', '.join(map(str, READS))}"
            )
    return config, check_config(config, cfg_file)


def _weights(path: Path, config: dict[str, Any], model: ModelConfig) -> bytes:
    """The bytes of ``weights.safetensors``, read only after checking that it is a
    regular file of a safetensors header and exactly the size the architecture needs."""
    file = path / "weights.safetensors"
    if not file.is_file():
        what = "is not a regular file" if file.exists() else "is missing"
        raise IncompatibleModelError(f"{file} {what}: the folder is incomplete or was changed")
    with torch.device("meta"):  # the shapes, without allocating a byte
        shapes = AutoencoderNet(model).state_dict()
    need = sum(t.numel() * t.element_size() for t in shapes.values())
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
    header = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
    if not 0 < header <= min(size - 8, 100_000_000):
        raise IncompatibleModelError(f"{file} is not a safetensors file (seqae writes its "
                                     "weights as safetensors only; nothing is unpickled)")
    if size != 8 + header + need:
        raise IncompatibleModelError(
            f"{file} holds {size - 8 - header:,} bytes of tensors; the architecture in "
            f"config.json needs {need:,}: the folder was changed or partly written")
    return file.read_bytes()


def read(path: str | Path, kind: str,
         device: str = "auto") -> tuple[dict[str, Any], Fitted]:
    """``(params, fitted)`` of the model in folder ``path`` (written by `write`), the
    network on ``device``; a folder of another kind or format, or whose weights do not
    match their checksum, raises `IncompatibleModelError`."""
    config, fitted = _read(Path(path), kind, device)
    return dict(config["params"]), fitted


def _read(path: Path, kind: str, device: str) -> tuple[dict[str, Any], Fitted]:
    """``(config.json as read, fitted)``: `read`, with the config it checked."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    config, model = _config(path, kind)
    model_config = ModelConfig(**model)
    blob = _weights(path, config, model_config)
    if hashlib.sha256(blob).hexdigest() != config["weights_sha256"]:
        raise IncompatibleModelError(
            f"{path}/weights.safetensors does not match config.json (checksum differs): "
            "the directory was modified or partly written"
        )
    try:
        state = load(blob)
    except SafetensorError as e:
        raise IncompatibleModelError(f"{path}/weights.safetensors is not a valid safetensors "
                                     f"file: {e}") from None
    if config["format_version"] == 1:
        state = current_names(state)
    net = AutoencoderNet(model_config)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise IncompatibleModelError(f"{path}/weights.safetensors does not fit the "
                                     f"architecture in config.json: {e}") from None
    net.to(resolve_device(device)).eval()
    # a folder written during fit (see `fit`'s checkpoint_dir) has no scores yet
    scores = np.asarray(config.get("train_scores") or [], np.float64)
    threshold = None if config.get("threshold") is None else float(config["threshold"])
    scored = config.get("scored") or {}
    fitted = Fitted(net, model_config, from_config(config),
                    config["max_length"], read_history(path / "metrics.csv"), scores,
                    threshold, scored.get("of") if isinstance(scored.get("of"), int) else None,
                    _neighbours(path, config, model_config.latent_dim, len(scores)))
    return config, fitted


def _neighbours(path: Path, config: dict[str, Any], dim: int,
                n_scores: int) -> Neighbours | None:
    """The reference of an ``anomaly_score="neighbours"`` model (None for the
    reconstruction score), checked: its checksum, the three arrays and their shapes (as
    many embeddings as training scores, of the model's latent width), finite values."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_arrays

    kind = config["params"].get("anomaly_score", "reconstruction")
    digest = config.get("neighbours_sha256")
    complete = config.get("train_scores") is not None
    if digest is None:
        if kind == "neighbours" and complete:
            raise IncompatibleModelError(f"{path}/config.json: anomaly_score is 'neighbours' "
                                         "but the folder names no reference embeddings")
        return None
    if kind != "neighbours" or not complete or n_scores == 0:
        raise IncompatibleModelError(f"{path}/config.json: names reference embeddings, but "
                                     f"with anomaly_score {kind!r} and {n_scores} training "
                                     "scores (a reference needs 'neighbours' and one score "
                                     "per embedding)")
    file = path / NEIGHBOURS_FILE
    need = (REFERENCE * dim * 4 + 2 * dim * 8) + 100_000  # the arrays and a header
    if not file.is_file() or file.stat().st_size > need:
        raise IncompatibleModelError(f"{file} is missing or larger than a reference of "
                                     f"{REFERENCE:,} embeddings: the folder is incomplete or "
                                     "was changed")
    blob = file.read_bytes()
    if hashlib.sha256(blob).hexdigest() != digest:
        raise IncompatibleModelError(f"{file} does not match config.json (checksum differs): "
                                     "the folder was modified or partly written")
    try:
        arrays = load_arrays(blob)
    except SafetensorError as e:
        raise IncompatibleModelError(f"{file} is not a valid safetensors file: {e}") from None
    shapes = {k: v.shape for k, v in arrays.items()}
    ref = arrays.get("reference")
    dtypes = {k: v.dtype for k, v in arrays.items()}
    if (set(arrays) != {"reference", "mean", "std"} or ref is None or ref.ndim != 2
            or dtypes != {"reference": np.float32, "mean": np.float64, "std": np.float64}
            or ref.shape != (n_scores, dim) or arrays["mean"].shape != (dim,)
            or arrays["std"].shape != (dim,)
            or not all(np.isfinite(v).all() for v in arrays.values())
            or not (arrays["std"] > 0).all()):
        raise IncompatibleModelError(
            f"{file} holds {shapes}; a reference is 'reference' ({n_scores}, {dim}) float32 "
            f"(one embedding per training score), 'mean' and 'std' ({dim},) float64, "
            "finite, std > 0")
    return Neighbours.from_tensors(arrays)


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
            "training_sequences": (fitted.n_train if fitted.n_train is not None
                                   else 0 if fitted.train_scores is None
                                   else len(fitted.train_scores)),
            # the training scores behind the threshold: every training sequence's, or
            # a sample's when the time budget left no time for all (issue 29)
            "scored_sequences": 0 if fitted.train_scores is None else len(fitted.train_scores),
            "longest": fitted.max_length,
            "normalize": scaler.get("mode"),
            "missing": config["params"].get("missing", "error"),
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
