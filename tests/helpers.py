"""Shared test helpers: the one check for sequence blocks (padding invariance), random
sequences, and a folder of Parquet files (`write_parquet_folder`).

`check_padding_invariance(fn, seqs)` runs a block
``fn(x (B, T, F), lengths (B,)) -> out`` where ``out`` is per-sequence ``(B, D)`` or
per-step ``(B, T, D)``, on

* each sequence alone with no padding (the reference),
* the whole batch padded to its longest sequence,
* the batch with extra padding filled with NaN, and with a large constant,
* the batch in reverse order,

and asserts that every run gives the reference values (float tolerance), and that
per-step outputs are exactly zero at padded positions. It returns the largest absolute
difference seen, which the tests report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

ATOL = 1e-5


def _pad(seqs: list[np.ndarray], t: int, value: float) -> tuple[torch.Tensor, torch.Tensor]:
    f = seqs[0].shape[1]
    x = np.full((len(seqs), t, f), value, dtype=np.float32)
    for b, s in enumerate(seqs):
        x[b, : len(s)] = s
    return torch.from_numpy(x), torch.tensor([len(s) for s in seqs])


def check_padding_invariance(fn, seqs: list[np.ndarray], atol: float = ATOL) -> float:
    with torch.no_grad():
        ref = []
        for s in seqs:  # alone, no padding at all
            out = fn(torch.from_numpy(s[None].astype(np.float32)), torch.tensor([len(s)]))
            ref.append(out[0].numpy())
        longest = max(len(s) for s in seqs)
        worst = 0.0
        order = list(range(len(seqs)))
        for t, value, perm in [
            (longest, 0.0, order),
            (longest + 7, float("nan"), order),
            (longest + 3, 1e6, order),
            (longest + 1, float("nan"), order[::-1]),
        ]:
            x, lengths = _pad([seqs[i] for i in perm], t, value)
            out = fn(x, lengths).numpy()
            assert np.isfinite(out).all(), "non-finite output: padding leaked"
            for b, i in enumerate(perm):
                r = ref[i]
                if out.ndim == 3:  # per step: valid part equal, padding exactly zero
                    n = len(seqs[i])
                    got = out[b, :n]
                    assert (out[b, n:] == 0).all(), "padded output positions are not zero"
                else:
                    got = out[b]
                diff = float(np.abs(got - r).max())
                worst = max(worst, diff)
                assert diff <= atol, f"sequence {i}: differs by {diff} with padding {value}"
        return worst


def random_seqs(rng: np.random.Generator, lengths, n_features: int = 3) -> list[np.ndarray]:
    return [rng.normal(size=(n, n_features)).astype(np.float32) for n in lengths]


def write_parquet_folder(folder: Path, n_files=3, per_file=30, rows_per_group=97, seed=0,
                         lo=3, hi=40, n_features=2) -> Path:
    """A folder of Parquet files of long tables (id, t, f0, f1...), one row per step; row
    groups of ``rows_per_group`` rows cut through sequences, and each file's rows are
    shuffled within their sequence (a time column orders them)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    k = 0
    for f in range(n_files):
        ids, ts, cols = [], [], [[] for _ in range(n_features)]
        for _ in range(per_file):
            n = int(rng.integers(lo, hi))
            t = rng.permutation(n)
            ids += [f"s{k:04d}"] * n
            ts += t.tolist()
            for j in range(n_features):  # scales differ by feature
                cols[j] += list((np.sin(t / 3 + k + j) + 0.1 * rng.normal(size=n)) * (j + 1))
            k += 1
        table = pa.table({"id": ids, "t": ts,
                          **{f"f{j}": np.float32(c) for j, c in enumerate(cols)}})
        pq.write_table(table, folder / f"part-{f:02d}.parquet", row_group_size=rows_per_group)
    return folder
