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
from .data import Sequences
from .errors import SequenceDataError
from .losses import masked_mse
from .nn.model import AutoencoderNet
from .params import check_limit
from .sources import DeviceData
from .tasks import Task
from .train import cpu_threads

__all__ = ["Model", "each_batch", "encode_score", "reconstruct", "decode", "scatter"]


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
        return sorted_batches(lengths, self.batch, "count")


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
    with cpu_threads(model.threads):
        for idx in model.batches(scaled.lengths):
            x, lens = data.batch(idx)
            fn(idx, x, lens)
    return stats


def encode_score(model: Model, seqs: Sequences, latents: bool = False,
                 scores: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(Z or None, scores or None)`` in one pass: each batch is encoded once, and its
    latents are decoded for the scores. Scores: continuous data, the mean squared error
    over each sequence's valid steps and features in scored units (see
    `seqae.scaling.Scaler.score_scale`); tokens, the mean cross-entropy per valid token
    (and the EOS)."""
    net = model.net
    Z = np.empty((len(seqs), net.config.latent_dim), dtype=np.float32) if latents else None
    out = np.empty(len(seqs), dtype=np.float64) if scores else None
    scale = model.task.score_scale(model.device)

    def fn(idx, x, lens):
        if scores and scale is None:  # tokens: the loss per sequence
            err, z, _ = net.loss(x, lens, None, reduction="sequence")
        else:
            z = net.encode(x, lens)
            if scores:
                assert scale is not None
                rec = net.decode(z, lens, x.shape[1])
                err = masked_mse(rec * scale, x * scale, lens, reduction="sequence")
        if Z is not None:
            Z[idx] = z.cpu().numpy()
        if out is not None:
            out[idx] = err.double().cpu().numpy()

    with torch.no_grad():
        each_batch(model, seqs, fn)
    return Z, out


def reconstruct(model: Model, seqs: Sequences) -> Sequences:
    """Reconstructions at each sequence's own length, in the input's units
    (free-running for an autoregressive decoder)."""
    values = np.empty_like(seqs.values)

    def fn(idx, x, lens):
        y = model.net.reconstruct(x, lens).cpu().numpy()
        scatter(values, seqs.offsets, idx, y, lens.cpu().numpy())

    stats = each_batch(model, seqs, fn)
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
    for idx in model.batches(lens_all):
        lens = torch.as_tensor(lens_all[idx], device=dev)
        y = net.decode(z_all[idx].to(dev), lens).cpu().numpy()
        scatter(values, offsets, idx, y, lens_all[idx])
    return model.task.decoded(Sequences(values, offsets, feature_names=feature_names))
