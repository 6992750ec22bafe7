"""Export a fitted model's encoder, decoder or scorer to ONNX or TorchScript.

Each part becomes one graph that a service runs without seqae's code: a padded batch and
its lengths in (int64; batch size and time length both dynamic), results out, in the
user's units (the scaler is folded into the graph). Token and text models take and give
token ids; their vocabulary, and every setting a client needs, is written beside the
file as JSON (``FILE.json``) and into the file itself (the ONNX metadata key ``seqae``;
the TorchScript extra file ``settings.json``).

How: the part is wrapped as a module of tensors only (`EncoderGraph`, `DecoderGraph`,
`ScorerGraph`) and traced once by `torch.jit.trace`; the TorchScript file is that trace,
and the ONNX file is the same trace converted by torch's TorchScript-based exporter
(``dynamo=False``). seqae's encoders gather each sequence's last valid step instead of
packing, so nothing in the graph depends on the example's lengths; the torch.export
(dynamo) exporter is not used because the encoders' input checks read the lengths
(``int(lengths.max())``), a data-dependent guard that torch.export refuses. The Python
checks are not part of the trace: the graph is *checked* instead, before anything is
written, on a second batch of another size and length with NaN in its padding, against
the model itself (`export_model`).

Not exportable, with a clear `ExportError`: the free-running autoregressive decoder (its
number of steps depends on the data; the scorer of a token model is exported, as it
decodes with teacher forcing), and, once missing values land (``missing="mask"``), a
model that takes the observed mask (the graph's third input, to come).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .errors import ExportError
from .io import atomic_write_bytes, atomic_write_text
from .losses import masked_mse
from .masking import lengths_to_mask
from .model_dir import Fitted
from .nn.model import AutoencoderNet
from .tasks import Task
from .vocab import BOS, EOS, PAD, UNK

__all__ = ["PARTS", "FORMATS", "OPSET", "SETTINGS_VERSION", "EncoderGraph", "DecoderGraph",
           "ScorerGraph", "export_model", "graph_of", "settings_path", "check_out"]

PARTS = ("encoder", "decoder", "scorer")
FORMATS = ("onnx", "torchscript")
OPSET = 17  # onnxruntime >= 1.14 runs it
SETTINGS_VERSION = 1  # of the JSON written beside an exported file
# the exported graph against the model, on the check batch (float32, same kernels)
CHECK_RTOL, CHECK_ATOL = 1e-4, 1e-5
_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript",
             ".torchscript": "torchscript", ".jit": "torchscript"}


class _Scaling(nn.Module):
    """User units -> model units, as `seqae.scaling.Scaler.transform` does: global (or
    no) standardisation by constants, or each sequence by its own mean and std over its
    valid steps (float64, a feature without spread gets std 1)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, task: Task):
        super().__init__()
        scaler = task.scaler
        assert scaler is not None
        self.per_sequence = scaler.mode_ == "sequence"
        self.register_buffer("mean", torch.as_tensor(scaler.mean_, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(scaler.std_, dtype=torch.float32))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor):
        if not self.per_sequence:
            return (x - self.mean) / self.std  # (B, T, F)
        m = mask[..., None]  # (B, T, 1)
        v = torch.where(m, x, torch.zeros((), dtype=x.dtype)).double()  # (B, T, F)
        n = lengths.double().clamp(min=1)[:, None]  # (B, 1)
        mean = v.sum(1) / n  # (B, F)
        d = torch.where(m, v - mean[:, None, :], torch.zeros((), dtype=v.dtype))
        std = torch.sqrt((d * d).sum(1) / n)  # (B, F)
        std = torch.where(std > 1e-8 * mean.abs().clamp(min=1.0), std, torch.ones_like(std))
        return (x - mean.float()[:, None, :]) / std.float()[:, None, :]


class _Graph(nn.Module):
    """What the three parts share: the network, and the scaling of continuous data."""

    def __init__(self, net: AutoencoderNet, task: Task):
        super().__init__()
        self.net = net
        self.tokens = task.vocab_size > 0
        self.scaling = None if self.tokens else _Scaling(task)

    def model_units(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x`` with padding set to 0 (NaN there never reaches anything), scaled."""
        mask = lengths_to_mask(lengths, x.shape[1])  # (B, T)
        if self.tokens:
            return torch.where(mask, x, torch.zeros_like(x))  # (B, T)
        x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype))  # (B, T, F)
        assert self.scaling is not None
        return self.scaling(x, lengths, mask)


class EncoderGraph(_Graph):
    """``(x, lengths) -> z``: ``x`` ``(B, T, F)`` float32 in the user's units (or ``(B, T)``
    int64 token ids), ``lengths`` ``(B,)`` int64, ``z`` ``(B, latent_dim)`` float32."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net.encode(self.model_units(x, lengths), lengths)  # (B, Z)


class DecoderGraph(_Graph):
    """``(z, lengths) -> y``: ``z`` ``(B, latent_dim)`` float32, ``lengths`` ``(B,)``
    int64 >= 1; ``y`` ``(B, max(lengths), F)`` float32 in the units `decode` returns (or
    ``(B, max(lengths))`` int64 token ids), exact zeros (PAD) past each length."""

    def forward(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # (T,): a tensor end keeps T a function of the lengths in the trace (an int would
        # be the example's)
        steps = torch.arange(lengths.max())  # type: ignore[call-overload]
        y = self.net.decode(z, lengths, steps.shape[0])  # (B, T, F) or (B, T)
        if self.tokens:
            return y
        assert self.scaling is not None  # decoded sequences: the global statistics
        mask = lengths_to_mask(lengths, y.shape[1])[..., None]  # (B, T, 1)
        y = y * self.scaling.std + self.scaling.mean
        return torch.where(mask, y, torch.zeros((), dtype=y.dtype))


class ScorerGraph(_Graph):
    """``(x, lengths) -> scores``: inputs as `EncoderGraph`; ``scores`` ``(B,)`` float32,
    what `SequenceAutoencoder.score` gives (the mean squared reconstruction error over
    valid steps in scored units; tokens: the mean cross-entropy per token and EOS)."""

    scale: torch.Tensor

    def __init__(self, net: AutoencoderNet, task: Task):
        super().__init__(net, task)
        scale = task.score_scale(torch.device("cpu"))
        if scale is not None:
            self.register_buffer("scale", scale.float())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.model_units(x, lengths)
        if self.tokens:
            err, _, _ = self.net.loss(x, lengths, None, reduction="sequence")
            return err  # (B,)
        z = self.net.encode(x, lengths)  # (B, Z)
        rec = self.net.decode(z, lengths, x.shape[1])  # (B, T, F)
        return masked_mse(rec * self.scale, x * self.scale, lengths, reduction="sequence")


_GRAPHS = {"encoder": EncoderGraph, "decoder": DecoderGraph, "scorer": ScorerGraph}


def _not_exportable(fitted: Fitted, params: dict[str, Any], part: str) -> str | None:
    """Why ``part`` of this model cannot be exported (None: it can)."""
    if params.get("missing", "error") == "mask":
        # hook for the missing-values issue: the graph will take the observed mask too
        return ("a model fitted with missing='mask' takes the observed mask as an input; "
                "this seqae cannot export it yet")
    if part == "scorer" and fitted.neighbours is not None:
        return ("this model scores by the distance of a sequence's embedding to the nearest "
                "training one (anomaly_score='neighbours'), a search over its reference "
                "embeddings rather than a graph: export the encoder and search its vectors "
                "against the folder's neighbours.safetensors (standardised by its mean and "
                "std), or fit with anomaly_score='reconstruction' to export a scorer")
    cfg = fitted.config
    free_running = cfg.decoder == "autoregressive" and (
        part == "decoder" or (part == "scorer" and cfg.vocab_size == 0))
    if free_running:
        what = "decoding" if part == "decoder" else "scoring (continuous data are scored on " \
            "the free-running reconstruction)"
        return (f"the {part} of a model with decoder='autoregressive' is not exportable: its "
                f"{what} feeds each output back as the next input for a number of steps "
                "that depends on the data, which a traced graph cannot hold. Export the "
                "encoder" + (" or the scorer" if cfg.vocab_size else "") + ", or fit with "
                "decoder='repeat' (every part exports)")
    return None


def graph_of(fitted: Fitted, part: str, params: dict[str, Any] | None = None) -> _Graph:
    """The part of ``fitted`` as a module of tensors, on the CPU, in eval mode (a copy:
    the fitted network is left as it is). Raises `ExportError` for a part that cannot
    be exported."""
    if part not in PARTS:
        raise ExportError(f"part must be one of {PARTS}, got {part!r}")
    why = _not_exportable(fitted, params or {}, part)
    if why:
        raise ExportError(why)
    net = copy.deepcopy(fitted.net).cpu().float().eval()
    net.requires_grad_(False)  # a service's outputs need no autograd
    return _GRAPHS[part](net, fitted.task).eval()


# ------------------------------------------------------------------- example batches
def _example(fitted: Fitted, part: str, batch: int, length: int, seed: int,
             nan: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``batch`` rows, the first ``length`` long, the others shorter; NaN
    (or PAD... for tokens, random ids) in the padding when ``nan``."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = length
    if batch > 1:
        lengths[1] = 1
    if batch > 2:
        lengths[2] = length // 2 + 1
    if part == "decoder":
        return torch.randn(batch, fitted.config.latent_dim, generator=g), lengths
    mask = lengths_to_mask(lengths, length)
    task = fitted.task
    if task.vocab_size:
        x = torch.randint(min(UNK + 1, task.vocab_size - 1), task.vocab_size, (batch, length),
                          generator=g)
        return torch.where(mask, x, torch.full_like(x, -7) if nan else 0), lengths
    assert task.scaler is not None
    x = torch.randn(batch, length, task.n_features, generator=g)
    x = x * torch.as_tensor(task.scaler.std_) + torch.as_tensor(task.scaler.mean_)
    return torch.where(mask[..., None], x, float("nan") if nan else 0.0), lengths


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "iu":
        return bool(np.array_equal(a, b))
    return bool(np.allclose(a, b, rtol=CHECK_RTOL, atol=CHECK_ATOL))


def _trace(graph: _Graph, example: tuple[torch.Tensor, torch.Tensor]):
    # The tracer warns at each Python check of the encoders (lengths in range, right
    # padding); they are not part of the graph, which is checked instead on other shapes.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.trace(graph, example, check_trace=False)


def _io_names(part: str) -> tuple[list[str], list[str]]:
    first = "z" if part == "decoder" else "x"
    out = {"encoder": "z", "decoder": "y", "scorer": "scores"}[part]
    return [first, "lengths"], [out]


def _onnx_bytes(traced, part: str, example, settings: dict[str, Any]) -> bytes:
    import onnx

    inputs, outputs = _io_names(part)
    dynamic: dict[str, dict[int, str]] = {inputs[0]: {0: "batch"}, "lengths": {0: "batch"},
                                          outputs[0]: {0: "batch"}}
    if part == "decoder":
        dynamic[outputs[0]][1] = "time"
    else:
        dynamic[inputs[0]][1] = "time"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated in torch 2.9+, and warns that a GRU
        # could depend on the example's batch size (seqae's do not: checked below)
        warnings.simplefilter("ignore")
        torch.onnx.export(traced, example, buf,  # type: ignore[arg-type]  # a file object
                          dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET)
    proto = onnx.load_from_string(buf.getvalue())
    proto.doc_string = f"seqae {part}: " + settings["summary"]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "seqae", json.dumps(settings)
    return proto.SerializeToString()


def _torchscript_bytes(traced, settings: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in torch 2.9+
        torch.jit.save(traced, buf, _extra_files={"settings.json": json.dumps(settings)})
    return buf.getvalue()


def _run_onnx(blob: bytes, part: str, batch) -> np.ndarray | None:
    """The ONNX graph run by onnxruntime on ``batch`` (None without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    inputs, _ = _io_names(part)
    feed = {name: t.numpy() for name, t in zip(inputs, batch, strict=True)}
    return session.run(None, feed)[0]


# ------------------------------------------------------------------- settings
def settings_path(path: str | Path) -> Path:
    """The JSON written beside an exported file: ``FILE.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _settings(fitted: Fitted, params: dict[str, Any], part: str, fmt: str,
              name: str) -> dict[str, Any]:
    """Everything a client needs beside the graph, as JSON."""
    task, cfg = fitted.task, fitted.config
    tokens = task.vocab_size > 0
    step = ({"dtype": "int64", "shape": ["batch", "time"], "meaning": "token ids, PAD (0) "
             "or anything past each length"} if tokens else
            {"dtype": "float32", "shape": ["batch", "time", task.n_features],
             "meaning": "values in the training data's units; anything (NaN too) past "
                        "each length"})
    lengths = {"name": "lengths", "dtype": "int64", "shape": ["batch"],
               "meaning": "valid steps of each row, 1..time"}
    latent = {"dtype": "float32", "shape": ["batch", cfg.latent_dim]}
    if part == "decoder":
        inputs = [{"name": "z", **latent, "meaning": "embeddings"},
                  {**lengths, "meaning": "steps to decode each row at, >= 1"}]
        out = ({"dtype": "int64", "shape": ["batch", "max(lengths)"], "meaning": "token "
                "ids, PAD (0) past each length"} if tokens else
               {"dtype": "float32", "shape": ["batch", "max(lengths)", task.n_features],
                "meaning": "decoded values, zeros past each length"})
        outputs = [{"name": "y", **out}]
    else:
        inputs = [{"name": "x", **step}, lengths]
        outputs = [{"name": "z", **latent, "meaning": "embeddings"} if part == "encoder" else
                   {"name": "scores", "dtype": "float32", "shape": ["batch"],
                    "meaning": "anomaly scores, higher = more anomalous; above threshold "
                               "= an anomaly"}]
    scaler = task.scaler
    vocab = None
    if tokens:
        vocab = {"size": task.vocab_size, "pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK,
                 "chars": None if task.vocab is None else list(task.vocab.chars),
                 "first_char_id": UNK + 1}
    summary = (f"{part} of a {task.kind} model ({cfg.encoder} encoder, {cfg.decoder} "
               f"decoder, latent {cfg.latent_dim})")
    return {
        "seqae_export": SETTINGS_VERSION,
        "file": name,
        "part": part,
        "format": fmt,
        "summary": summary,
        "inputs": inputs,
        "outputs": outputs,
        "data": task.kind,
        "n_features": None if tokens else task.n_features,
        "feature_names": task.feature_names,
        "normalize": None if scaler is None else {
            "mode": scaler.mode_, "mean": scaler.mean_.tolist(), "std": scaler.std_.tolist(),
            "note": "folded into the graph: inputs and outputs are in the data's units"
                    + (" (decoded values and scores of mode 'sequence' are standardised)"
                       if scaler.mode_ == "sequence" else "")},
        "vocab": vocab,
        "latent_dim": cfg.latent_dim,
        "longest_training_sequence": fitted.max_length,
        "max_len": params.get("max_len"),
        "max_len_policy": params.get("max_len_policy"),
        "threshold": fitted.threshold,
        # what the threshold is of: the scorer's reconstruction error, or (neighbours)
        # the distance of the encoder's output to the model folder's reference embeddings
        "anomaly_score": "reconstruction" if fitted.neighbours is None else "neighbours",
        "architecture": {k: getattr(cfg, k) for k in ("encoder", "cell", "bidirectional",
                                                        "num_layers", "hidden_size", "patch",
                                                        "pooling", "decoder")},
        "opset": OPSET if fmt == "onnx" else None,
        "seqae_version": __version__,
        "torch_version": torch.__version__,
    }


# ------------------------------------------------------------------- the files
def _suffix_format(path: Path) -> str | None:
    return _SUFFIXES.get(path.suffix.lower())


def _ours(path: Path) -> bool:
    """Whether ``path`` (an exported file) was written by seqae: its settings file says
    so, with the file's checksum."""
    side = settings_path(path)
    try:
        info = json.loads(side.read_text())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "seqae_export" in info and info.get("sha256") == digest


def _ours_settings(side: Path) -> bool:
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "seqae_export" in info


def check_out(path: str | Path, fmt: str | None = None,
              protect: tuple[str | Path, ...] = ()) -> tuple[Path, str]:
    """``(path, format)`` once ``path`` is a place an export may be written: not a
    folder, not inside a ``protect``-ed folder (the model folder), and neither it nor its
    settings file a file that seqae did not write. ``fmt`` None: from the suffix
    (``.onnx``; ``.pt``, ``.ts``... for TorchScript), else ``"onnx"``."""
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise ExportError(f"format must be one of {FORMATS}, got {fmt!r}")
    implied = _suffix_format(path)
    if fmt is None:
        fmt = implied or "onnx"
    elif implied is not None and implied != fmt:
        raise ExportError(f"{path}: the suffix {path.suffix!r} is for {implied}, not {fmt}; "
                          "name the file to match the format")
    if path.suffix.lower() == ".json":
        raise ExportError(f"{path}: an exported {fmt} file is not .json (its settings are "
                          "written beside it as FILE.json)")
    resolved = path.resolve()
    for folder in protect:
        top = Path(folder).resolve()
        if resolved == top or top in resolved.parents:
            raise ExportError(f"{path} is inside the model folder {folder}; seqae never "
                              "writes into a model folder: export to a file elsewhere")
    if path.is_dir():
        raise ExportError(f"{path} is a folder; give the file to write")
    side = settings_path(path)
    if path.exists() and not _ours(path):
        raise ExportError(f"{path} exists and was not written by seqae export (or its "
                          f"{side.name} is gone or does not match it); seqae never "
                          "overwrites it: choose another file or remove it")
    if side.exists() and not _ours_settings(side):
        raise ExportError(f"{side} exists and was not written by seqae export; seqae never "
                          "overwrites it: choose another file or remove it")
    return path, fmt


@dataclass
class _Checked:
    """An exported graph, serialised and checked, not yet written."""

    blob: bytes
    settings: dict[str, Any]


def _build(fitted: Fitted, params: dict[str, Any], part: str, fmt: str,
           name: str) -> _Checked:
    graph = graph_of(fitted, part, params)
    settings = _settings(fitted, params, part, fmt, name)
    example = _example(fitted, part, batch=2, length=7, seed=0, nan=False)
    traced = _trace(graph, example)
    # a batch of another size and length (13: no patch size divides it), NaN in the
    # padding: the trace must not have frozen the example's shapes, nor let padding in
    check = _example(fitted, part, batch=3, length=13, seed=1, nan=True)
    with torch.no_grad():
        want = graph(*check).numpy()
        got = traced(*check).numpy()
    if not _close(got, want):
        raise ExportError(f"the traced {part} differs from the model on a batch of another "
                          "shape; this model cannot be exported faithfully (please report it)")
    if fmt == "onnx":
        blob = _onnx_bytes(traced, part, example, settings)
        ran = _run_onnx(blob, part, check)
        if ran is not None and not _close(ran, want) and ran.dtype.kind == "f":
            raise ExportError(f"the ONNX {part} run by onnxruntime differs from the model "
                              "(please report it)")
    else:
        blob = _torchscript_bytes(traced, settings)
    settings = {**settings, "sha256": hashlib.sha256(blob).hexdigest(),
                "checked": {"against": "the model, on a batch of 3 rows (lengths "
                            f"{check[1].tolist()}) unlike the example (2 rows of "
                            f"{example[1].tolist()})", "rtol": CHECK_RTOL,
                            "atol": CHECK_ATOL}}
    return _Checked(blob, settings)


def export_model(fitted: Fitted, path: str | Path, part: str = "encoder",
                 format: str | None = None, params: dict[str, Any] | None = None,
                 protect: tuple[str | Path, ...] = ()) -> Path:
    """Write ``part`` of a fitted model to ``path`` as ONNX or TorchScript, and its
    settings to ``path.json``.

    Every argument is checked before anything is written (`check_out`, the part and the
    format); the graph is checked against the model on a batch unlike the example it was
    traced with; then both files are written atomically. A failed call writes nothing.

    Args:
        fitted: the fitted model (`seqae.model_dir.Fitted`).
        path: the file to write.
        part: ``"encoder"`` (default), ``"decoder"`` or ``"scorer"``.
        format: ``"onnx"`` or ``"torchscript"``; None: from the suffix (``.onnx``,
            ``.pt``), else ONNX.
        params: the estimator's parameters (recorded in the settings).
        protect: folders nothing may be written into (the model folder).

    Returns:
        ``path``.

    Raises:
        ExportError: a bad part, format or path, or a part this model cannot export.
    """
    params = params or {}
    if part not in PARTS:
        raise ExportError(f"part must be one of {PARTS}, got {part!r}")
    out, fmt = check_out(path, format, protect)
    why = _not_exportable(fitted, params, part)
    if why:
        raise ExportError(why)
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ExportError("format='onnx' needs the onnx package: pip install "
                              "'seqae[export]' (or export format='torchscript')") from None
    checked = _build(fitted, params, part, fmt, out.name)
    side = settings_path(out)
    existed = out.exists()
    atomic_write_bytes(out, checked.blob)
    try:
        atomic_write_text(side, json.dumps(checked.settings, indent=2))
    except BaseException:
        if not existed:
            out.unlink(missing_ok=True)
        raise
    return out
