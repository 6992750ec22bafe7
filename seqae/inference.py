"""Batched inference loops: encode, score, reconstruct and decode.

Each function takes a fitted model (an `AutoencoderNet` on its device), its task
(`seqae.tasks`) and the data; none reads an estimator. Batches are length-sorted
(`seqae.batching.sorted_batches`), so padding stays small, and results are written back
in the input's order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .batching import sorted_batches
from .batching import to_device as batching_to_device
from .data import Sequences
from .errors import SequenceDataError
from .losses import masked_mse
from .nn.model import AutoencoderNet, observed
from .params import check_limit
from .sources import DeviceData
from .tasks import Task
from .train import cpu_threads

__all__ = ["Model", "each_batch", "encode_score", "step_scores", "reconstruct", "impute",
           "decode", "scatter",
           "to_device", "Gathered", "GPU_BATCH_STEPS"]


# Padded steps per inference batch on a GPU (`Model.batches`): enough to fill one with a
# hidden size of 256 (benchmarks/gpu.py's encode), a few hundred MB of activations.
GPU_BATCH_STEPS = 65_536


class Model:
    """A fitted network with what inference needs beside it: its task, the batch size
    and the CPU threads to compute on."""

    def __init__(self, net: AutoencoderNet, task: Task, batch_size: int,
                 threads: int | None):
        self.net, self.task, self.threads = net, task, threads
        self.batch = max(4 * batch_size, 64)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Length-sorted batches: of ``4 x batch_size`` sequences (at least 64) on the
        CPU; on a GPU by a budget of `GPU_BATCH_STEPS` padded steps (from half to 8
        times as many sequences), which fills it with short sequences too."""
        if self.device.type == "cpu":
            return sorted_batches(lengths, self.batch, "count")
        return sorted_batches(lengths, self.batch, "tokens", max_tokens=GPU_BATCH_STEPS)


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """``a`` on ``device`` without waiting for it (through pinned memory to a GPU)."""
    return batching_to_device(torch.from_numpy(np.ascontiguousarray(a)), device)


class Gathered:
    """Batch outputs kept on the device until `rows` or `steps` reads them all at once
    (a read per batch would wait for the device each time)."""

    def __init__(self) -> None:
        self.idx: list[np.ndarray] = []
        self.lens: list[tuple[np.ndarray, int]] = []
        self.outs: list[torch.Tensor] = []

    def add(self, idx: np.ndarray, out: torch.Tensor, lens: np.ndarray | None = None) -> None:
        self.idx.append(np.asarray(idx))
        self.outs.append(out.flatten(0, 1) if lens is not None else out)
        if lens is not None:
            self.lens.append((np.asarray(lens), out.shape[1]))

    def rows(self, out: np.ndarray) -> None:
        """Write per-sequence outputs ``(B, ...)`` into ``out`` in the input's order."""
        if self.outs:
            out[np.concatenate(self.idx)] = torch.cat(self.outs).cpu().numpy()

    def steps(self, out: np.ndarray, offsets: np.ndarray) -> None:
        """Write the valid steps of padded outputs ``(B, T, ...)`` into flat ``out``."""
        if not self.outs:
            return
        flat = torch.cat(self.outs).cpu().numpy()
        start = 0
        for idx, (lens, t) in zip(self.idx, self.lens, strict=True):
            n = len(idx) * t
            scatter(out, offsets, idx, flat[start : start + n].reshape(
                (len(idx), t) + flat.shape[1:]), lens)
            start += n


def scatter(out: np.ndarray, offsets: np.ndarray, idx: Any, y: np.ndarray, lens: Any) -> None:
    """Write the valid steps of padded batch ``y`` (rows ``idx``) into flat ``out``."""
    mask = np.arange(y.shape[1])[None, :] < np.asarray(lens)[:, None]
    flat = (offsets[idx][:, None] + np.arange(y.shape[1])[None, :])[mask]
    out[flat] = y[mask]


@torch.no_grad()
def each_batch(model: Model, seqs: Sequences,
               fn: Callable[[Any, torch.Tensor, torch.Tensor], None]) -> Any:
    """Call ``fn(idx, x, lengths)`` on length-sorted batches of ``seqs`` in model units;
    returns the per-sequence statistics the task scaled them with (None for tokens)."""
    model.task.check(seqs)
    model.net.eval()
    scaled, stats = model.task.to_model(seqs)
    data = DeviceData(scaled, model.device)
    batches = model.batches(scaled.lengths)
    with cpu_threads(model.threads):
        for idx, (x, lens) in zip(batches, data.iterate(batches), strict=True):
            fn(idx, x, lens)
    return stats


def encode_score(model: Model, seqs: Sequences, latents: bool = False,
                 scores: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(Z or None, scores or None)`` in one pass: each batch is encoded once, and its
    latents are decoded for the scores. Scores: continuous data, the mean squared error
    over each sequence's valid steps and features in scored units (see
    `seqae.scaling.Scaler.score_scale`; with missing values, over its observed elements);
    tokens, the mean cross-entropy per valid token (and the EOS)."""
    net = model.net
    Z = np.empty((len(seqs), net.config.latent_dim), dtype=np.float32) if latents else None
    out = np.empty(len(seqs), dtype=np.float64) if scores else None
    scale = model.task.score_scale(model.device)
    zs, errs = Gathered(), Gathered()

    def fn(idx, x, lens):
        if scores and scale is None:  # tokens: the loss per sequence
            err, z, _ = net.loss(x, lens, None, reduction="sequence")
        else:
            z = net.encode(x, lens)
            if scores:
                assert scale is not None
                rec = net.decode(z, lens, x.shape[1])
                err = masked_mse(rec * scale, x * scale, _scored(net, x, lens),
                                 reduction="sequence")
        if Z is not None:
            zs.add(idx, z)
        if out is not None:
            errs.add(idx, err.double())

    with torch.no_grad():
        each_batch(model, seqs, fn)
    if Z is not None:
        zs.rows(Z)
    if out is not None:
        errs.rows(out)
    return Z, out


def _scored(net: AutoencoderNet, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """What a score counts: the lengths, or with missing values the observed elements."""
    return observed(x, lens) if net.config.missing else lens


def step_scores(model: Model, seqs: Sequences) -> np.ndarray:
    """``(n_steps,)`` each step's error, aligned with ``seqs.values``: continuous data,
    the mean squared error over the step's observed features in scored units (as
    `encode_score`; NaN for a step whose every feature is missing); tokens, the
    cross-entropy of the step's token. A sequence's score is the mean of its steps'
    errors weighted by their observed features."""
    net = model.net
    out = np.empty(seqs.n_steps, dtype=np.float64)
    scale = model.task.score_scale(model.device)
    ys = Gathered()

    def fn(idx, x, lens):
        if scale is None:  # tokens: each token's cross-entropy (the EOS left out)
            elem, _, _ = net.loss(x, lens, None, reduction="none")
            per_step = elem[:, : x.shape[1]].double()  # (B, T)
        else:
            rec = net.decode(net.encode(x, lens), lens, x.shape[1])
            seen = _scored(net, x, lens)
            if seen.dim() == 1:
                seen = observed(torch.zeros_like(x), lens)  # (B, T, F): every element
            elem = masked_mse(rec * scale, x * scale, seen, reduction="none").double()
            count = seen.sum(-1)  # (B, T)
            per_step = elem.sum(-1) / count.clamp(min=1)
            per_step = torch.where(count > 0, per_step, torch.full((), float("nan"),
                                                                   dtype=per_step.dtype,
                                                                   device=per_step.device))
        ys.add(idx, per_step, seqs.lengths[idx])

    each_batch(model, seqs, fn)
    ys.steps(out, seqs.offsets)
    return out


def reconstruct(model: Model, seqs: Sequences) -> Sequences:
    """Reconstructions at each sequence's own length, in the input's units
    (free-running for an autoregressive decoder)."""
    return _each_step(model, seqs, model.net.reconstruct)


def impute(model: Model, seqs: Sequences) -> Sequences:
    """The model's value of every element (`seqae.nn.AutoencoderNet.impute`), at each
    sequence's own length, in the input's units."""
    return _each_step(model, seqs, model.net.impute)


def _each_step(model: Model, seqs: Sequences, net_fn) -> Sequences:
    """``net_fn(x, lengths) -> (B, T, F)`` over every batch, at each sequence's own
    length, in the input's units."""
    values = np.empty_like(seqs.values)
    ys = Gathered()

    def fn(idx, x, lens):
        ys.add(idx, net_fn(x, lens), seqs.lengths[idx])

    stats = each_batch(model, seqs, fn)
    ys.steps(values, seqs.offsets)
    return model.task.from_model(seqs.with_values(values), stats)


def _lengths(lengths: Any, n: int) -> np.ndarray:
    """Requested lengths, checked: an int or one whole number >= 1 per vector."""
    given = np.asarray(lengths)
    if given.ndim > 1 or (given.ndim == 1 and len(given) != n):
        raise ValueError(f"lengths must be an int or one length per vector ({n}), got "
                         f"{given.shape[0] if given.ndim == 1 else given.shape}")
    whole = given.dtype.kind in "iu" or (given.dtype.kind == "f" and bool(
        np.all(np.isfinite(given) & (given == np.round(given)))))
    if not whole:
        raise ValueError(f"lengths must be whole numbers, got {given.tolist()}")
    lens = np.broadcast_to(given.astype(np.int64), (n,)).copy()
    bad = np.flatnonzero(lens < 1)
    if len(bad):
        raise SequenceDataError(
            f"requested length {lens[bad[0]]} for sequence {bad[0]}: lengths must be >= 1",
            index=int(bad[0]))
    check_limit("decode_length", int(lens.max()), "a decode length of", SequenceDataError)
    return lens


def decode(model: Model, Z: Any, lengths: Any, max_length: int,
           feature_names: list[str] | None) -> Sequences:
    """Sequences decoded from latent vectors ``Z`` ``(N, latent_dim)``: at ``lengths``
    (an int or ``(N,)``); None lets the model choose (tokens stop at EOS, or after
    ``max_length`` tokens; continuous data take the lengths the length head predicts).
    Outputs in the task's units (token ids for tokens)."""
    with cpu_threads(model.threads):
        return _decode(model, Z, lengths, max_length, feature_names)


@torch.no_grad()
def _decode(model: Model, Z: Any, lengths: Any, max_length: int,
            feature_names: list[str] | None) -> Sequences:
    net = model.net.eval()
    latent = net.config.latent_dim
    z_all = torch.as_tensor(np.asarray(Z, dtype=np.float32))
    if z_all.dim() != 2 or z_all.shape[1] != latent:
        raise ValueError(f"Z must be (N, {latent}), got {tuple(z_all.shape)}")
    n, dev = z_all.shape[0], model.device
    tokens = net.config.vocab_size > 0
    check_limit("decode_length", max_length, "max_length", ValueError)
    if lengths is not None:
        lens_all = _lengths(lengths, n)
    elif tokens:  # free-running to EOS: lengths come out of the decoding
        outs = []
        for i in range(0, n, 512):
            tok, ln = net.generate(z_all[i : i + 512].to(dev), max_length)
            outs += [t[: int(k)].cpu().numpy() for t, k in zip(tok, ln, strict=True)]
        return Sequences.from_list(outs)
    else:
        lens_all = net.length_head.predict(z_all.to(dev)).cpu().numpy()
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens_all, out=offsets[1:])
    if tokens:
        values = np.empty(offsets[-1], dtype=np.int64)
    else:
        values = np.empty((offsets[-1], net.config.n_features), dtype=np.float32)
    batches = model.batches(lens_all)
    order = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    z_dev = to_device(z_all.numpy()[order], dev)  # in batch order: one copy each
    lens_dev = to_device(lens_all[order], dev)
    ys, start = Gathered(), 0
    for idx in batches:
        part = slice(start, start + len(idx))
        ys.add(idx, net.decode(z_dev[part], lens_dev[part], int(lens_all[idx].max())),
               lens_all[idx])
        start += len(idx)
    ys.steps(values, offsets)
    return model.task.decoded(Sequences(values, offsets, feature_names=feature_names))
