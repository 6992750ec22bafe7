"""Matplotlib figures written as PNG files (no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import Sequences

__all__ = [
    "plot_history",
    "plot_reconstructions",
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


def plot_reconstructions(
    seqs: Sequences,
    recon: Sequences,
    scores: np.ndarray,
    path: str | os.PathLike,
    max_features: int = 4,
) -> Path:
    """Input vs reconstruction for the best, a typical (median) and the worst sequence."""
    plt = _pyplot()
    order = np.argsort(scores)
    picks = [("best", order[0]), ("typical", order[len(order) // 2]), ("worst", order[-1])]
    nf = min(seqs.n_features, max_features)
    names = seqs.feature_names or [f"feature {j}" for j in range(seqs.n_features)]
    fig, axes = plt.subplots(3, nf, figsize=(3.4 * nf + 0.6, 7.5), squeeze=False)
    for row, (what, i) in enumerate(picks):
        x, r = seqs[int(i)], recon[int(i)]
        sid = seqs.ids[i] if seqs.ids is not None else i
        for j in range(nf):
            ax = axes[row, j]
            ax.plot(x[:, j], color="tab:blue", lw=1.6, label="input")
            ax.plot(r[:, j], color="tab:orange", lw=1.6, ls="--", label="reconstruction")
            if row == 0:
                ax.set_title(names[j])
            if j == 0:
                ax.set_ylabel(f"{what}\n{sid}\nerror {scores[i]:.3g}", fontsize=9)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="best")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.suptitle("Reconstructions (each at its own length)")
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
    scores: np.ndarray, path: str | os.PathLike, threshold: float | None = None
) -> Path:
    """Histogram of anomaly scores (log-spaced bins) with the threshold marked."""
    plt = _pyplot()
    scores = np.asarray(scores, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    lo, hi = max(scores.min(), 1e-12), max(scores.max(), 1e-11)
    bins = np.geomspace(lo, hi * 1.0001, 40) if hi / lo > 20 else 40
    ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8)
    if isinstance(bins, np.ndarray):
        ax.set_xscale("log")
    if threshold is not None:
        n_over = int((scores > threshold).sum())
        ax.axvline(threshold, color="tab:red", lw=2,
                   label=f"threshold {threshold:.3g} ({n_over} above)")
        ax.legend()
    ax.set_xlabel("anomaly score (mean squared reconstruction error)")
    ax.set_ylabel("sequences")
    ax.set_title("Anomaly scores")
    ax.grid(alpha=0.3)
    return _save(fig, path)
