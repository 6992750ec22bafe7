"""Matplotlib figures written as PNG files (no display needed)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import Sequences

__all__ = [
    "plot_history",
    "plot_reconstructions",
    "reconstruction_picks",
    "worst_steps",
    "n_marked",
    "plot_embeddings",
    "plot_scores",
    "pca_2d",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    import io

    from .io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def plot_history(history: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Training (and validation) loss per epoch, log scale."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["train_loss"] for r in history], label="train", lw=2)
    if history and "val_loss" in history[0]:
        from .train import best_epoch

        ax.plot(epochs, [r["val_loss"] for r in history], label="validation", lw=2)
        best = best_epoch(history)  # the epoch whose weights were kept
        if best is not None:
            ax.scatter([best["epoch"]], [best["val_loss"]], color="black", zorder=3,
                       label=f"best: epoch {best['epoch']}")
    ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked loss (standardised units)")
    ax.set_title("Training history")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


# The share of a sequence's steps marked as its worst in the reconstructions figure, and
# the most marked in one sequence.
MARKED_SHARE = 0.05
MAX_MARKED = 10


def n_marked(length: int) -> int:
    """How many worst steps the reconstructions figure marks in a sequence of ``length``
    steps: `MARKED_SHARE` of them rounded up, at least 1 and at most `MAX_MARKED`."""
    return min(MAX_MARKED, max(1, math.ceil(MARKED_SHARE * length)))


def worst_steps(per_step: np.ndarray, k: int) -> np.ndarray:
    """The steps of the ``k`` highest per-step scores, highest first (a tie: the earlier
    step first); NaN steps are never among them, so fewer than ``k`` come back when
    fewer steps have a score.

    Args:
        per_step: ``(T,)`` one sequence's per-step scores (NaN where a step has none).
        k: how many steps at most.

    Returns:
        ``(min(k, number of non-NaN steps),)`` int64 step indices (from 0).
    """
    s = np.asarray(per_step, dtype=np.float64).reshape(-1)
    scored = np.flatnonzero(~np.isnan(s))
    order = scored[np.argsort(-s[scored], kind="stable")]
    return order[: max(k, 0)].astype(np.int64)


def reconstruction_picks(scores: np.ndarray) -> list[tuple[str, int]]:
    """``[("best", i), ("typical", i), ("worst", i)]``: the positions of the lowest, the
    median and the highest of ``scores`` ``(N,)``, the sequences `plot_reconstructions`
    draws (one position may come twice when ``N < 3``)."""
    order = np.argsort(np.asarray(scores), kind="stable")
    return [("best", int(order[0])), ("typical", int(order[len(order) // 2])),
            ("worst", int(order[-1]))]


def plot_reconstructions(
    seqs: Sequences,
    recon: Sequences,
    scores: np.ndarray,
    path: str | os.PathLike,
    max_features: int = 4,
    per_step: Mapping[int, np.ndarray] | None = None,
    score_kind: str = "reconstruction",
) -> Path:
    """Input vs reconstruction for the best, a typical (median) and the worst sequence
    (`reconstruction_picks`), at most ``max_features`` features each.

    Args:
        seqs, recon: the sequences and their reconstructions (NaN inputs, missing
            elements, are left out of the input's line).
        scores: ``(N,)`` the sequences' scores.
        path: the PNG to write.
        max_features: how many features (columns of panels) at most.
        per_step: ``{position: (T,) per-step scores}`` for at least the drawn sequences
            (``score(..., per_step=True)`` of those); with it each drawn sequence's
            `worst_steps` (`n_marked` of them) are shaded red in all its panels, the
            worst one darker, and its worst step is named beside it.
        score_kind: the model's ``anomaly_score`` (what the panels call the score:
            "error", or "distance" for ``"neighbours"``).
    """
    plt = _pyplot()
    picks = reconstruction_picks(scores)
    nf = min(seqs.n_features, max_features)
    names = seqs.feature_names or [f"feature {j}" for j in range(seqs.n_features)]
    fig, axes = plt.subplots(3, nf, figsize=(3.4 * nf + 0.6, 7.5), squeeze=False)
    for row, (what, i) in enumerate(picks):
        x, r = seqs[i], recon[i]
        sid = seqs.ids[i] if seqs.ids is not None else i
        word = "distance" if score_kind == "neighbours" else "error"
        label = f"{what}\n{sid}\n{word} {scores[i]:.3g}"
        marked = np.zeros(0, dtype=np.int64)
        if per_step is not None:
            steps = np.asarray(per_step[i], dtype=np.float64).reshape(-1)
            if len(steps) != len(x):
                raise ValueError(f"per_step[{i}] has {len(steps)} steps; sequence {i} "
                                 f"has {len(x)}")
            marked = worst_steps(steps, n_marked(len(x)))
            if len(marked):
                label += f"\nworst step {marked[0]}"
        for j in range(nf):
            ax = axes[row, j]
            for rank, t in enumerate(marked):
                ax.axvspan(t - 0.5, t + 0.5, color="tab:red", lw=0,
                           alpha=0.55 if rank == 0 else 0.22,
                           label="worst steps" if rank == 0 else None)
            ax.plot(x[:, j], color="tab:blue", lw=1.6, label="input",
                    marker="." if len(x) == 1 else None)
            ax.plot(r[:, j], color="tab:orange", lw=1.6, ls="--", label="reconstruction",
                    marker="." if len(x) == 1 else None)
            if row == 0:
                ax.set_title(names[j])
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="best")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    title = "Reconstructions (each at its own length)"
    if per_step is not None:
        title += (f"\nshaded: each sequence's worst {MARKED_SHARE:.0%} of steps by per-step "
                  f"error (at least 1, at most {MAX_MARKED}); the darkest: its worst step")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def pca_2d(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components of ``Z`` and their explained-variance ratios."""
    Zc = Z - Z.mean(0)
    _, s, vt = np.linalg.svd(Zc, full_matrices=False)
    var = s**2 / max((s**2).sum(), 1e-12)
    return Zc @ vt[:2].T, var[:2]


def plot_embeddings(
    Z: np.ndarray, path: str | os.PathLike, labels: Sequence[Any] | None = None
) -> Path:
    """2-D PCA projection of the embeddings, coloured by label when given."""
    plt = _pyplot()
    P, var = pca_2d(np.asarray(Z, dtype=np.float64))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if labels is None:
        ax.scatter(P[:, 0], P[:, 1], s=12, alpha=0.7)
    else:
        label_arr = np.asarray(labels)
        for k, lab in enumerate(sorted(set(label_arr.tolist()), key=str)):
            m = label_arr == lab
            ax.scatter(P[m, 0], P[m, 1], s=12, alpha=0.75, label=str(lab), color=f"C{k % 10}")
        ax.legend(title="label", markerscale=2)
    ax.set_xlabel(f"PC 1 ({var[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({var[1]:.0%} of variance)" if len(var) > 1 else "PC 2")
    ax.set_title(f"Embeddings ({Z.shape[1]}-d), PCA projection")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_scores(
    scores: np.ndarray, path: str | os.PathLike, threshold: float | None = None,
    score_kind: str = "reconstruction",
) -> Path:
    """Histogram of anomaly scores (log-spaced bins when they spread over more than 20 x;
    linear for distances, ``score_kind="neighbours"``, which are 0 for a training
    sequence) with the threshold marked."""
    plt = _pyplot()
    scores = np.asarray(scores, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    lo, hi = max(scores.min(), 1e-12), max(scores.max(), 1e-11)
    log_bins = hi / lo > 20 and score_kind != "neighbours"
    bins = np.geomspace(lo, hi * 1.0001, 40) if log_bins else 40
    ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8)
    if isinstance(bins, np.ndarray):
        ax.set_xscale("log")
    if threshold is not None:
        n_over = int((scores > threshold).sum())
        ax.axvline(threshold, color="tab:red", lw=2,
                   label=f"threshold {threshold:.3g} ({n_over} above)")
        ax.legend()
    ax.set_xlabel("anomaly score (distance to the nearest training embedding)"
                  if score_kind == "neighbours"
                  else "anomaly score (mean squared reconstruction error)")
    ax.set_ylabel("sequences")
    ax.set_title("Anomaly scores")
    ax.grid(alpha=0.3)
    return _save(fig, path)
