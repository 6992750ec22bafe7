"""Built-in demo data, generated on the fly (nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .data import Sequences

__all__ = ["make_demo", "demo_table", "DEMO_CLASSES"]

DEMO_CLASSES = ("ramp", "bump", "dip", "wave")


def _signal(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """One ``(n, 3)`` sensor session of a class: a signal, its rate of change and a level.

    Each class has a characteristic shape over the session (a step up, a bump, a dip
    with slow recovery, two oscillations) whose position, width and amplitude vary.
    """
    t = np.linspace(0.0, 1.0, n)
    amp = rng.uniform(0.7, 1.3)
    c = rng.uniform(0.35, 0.65)
    w = rng.uniform(0.06, 0.14)
    if kind == "ramp":
        s = amp / (1 + np.exp(-(t - c) / (0.5 * w)))
    elif kind == "bump":
        s = amp * np.exp(-(((t - c) / w) ** 2))
    elif kind == "dip":
        s = -amp * np.exp(-np.clip(t - c, 0, None) / (2 * w)) * (t > c - w) * np.clip(
            (t - c + w) / w, 0, 1
        )
    else:  # wave
        s = 0.6 * amp * np.sin(2 * np.pi * (2 * t + rng.uniform(-0.05, 0.05)))
    level = rng.uniform(-0.5, 0.5) + 0.3 * t
    x = np.stack([s, np.gradient(s, t) / 10.0, level], axis=1)
    return x + rng.normal(0, 0.03, x.shape)


def make_demo(
    n: int = 600,
    seed: int = 0,
    anomaly_fraction: float = 0.02,
    min_len: int = 16,
    max_len: int = 200,
) -> tuple[Sequences, np.ndarray, np.ndarray]:
    """Synthetic sensor sessions of four shapes with log-normal lengths.

    Args:
        n: number of sequences (default 600).
        seed: random seed.
        anomaly_fraction: share of sequences given a spike or a flat-lined stretch.
        min_len / max_len: length bounds (lengths are log-normal, median about 50).

    Returns:
        ``(seqs, labels, is_anomaly)``: `Sequences` with ids ``"seq-0000"``... and feature
        names ``("signal", "rate", "level")``, the class name of each, and a bool flag.
    """
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(50), 0.5, size=n).astype(int), min_len, max_len)
    labels = rng.choice(DEMO_CLASSES, size=n)
    anomalous = rng.random(n) < anomaly_fraction
    arrays = []
    for length, kind, bad in zip(lengths, labels, anomalous, strict=True):
        x = _signal(str(kind), int(length), rng)
        if bad:
            at = rng.integers(0, length)
            if rng.random() < 0.5:
                x[at : at + 2, :2] += rng.choice([-1, 1]) * 3.0  # spike
            else:
                stop = min(length, at + max(4, length // 4))
                x[at:stop, 0] = x[at, 0]  # sensor stuck
                x[at:stop, 1] = 0.0
        arrays.append(x.astype(np.float32))
    ids = np.array([f"seq-{i:04d}" for i in range(n)])
    seqs = Sequences.from_list(arrays, ids=ids, feature_names=["signal", "rate", "level"])
    return seqs, labels, anomalous


def demo_table(n: int = 600, seed: int = 0) -> pa.Table:
    """The demo data as a long table (``id, t, signal, rate, level, label``), rows
    shuffled."""
    seqs, labels, _ = make_demo(n, seed)
    rng = np.random.default_rng(seed + 1)
    seq_index = seqs.step_index
    step = np.arange(seqs.n_steps) - seqs.offsets[seq_index]
    order = rng.permutation(seqs.n_steps)
    cols = {"id": seqs.ids[seq_index][order], "t": step[order]}
    for j, name in enumerate(seqs.feature_names or []):
        cols[name] = seqs.values[order, j]
    cols["label"] = labels[seq_index][order]
    return pa.table(cols)
