"""Imputation: `SequenceAutoencoder(missing="mask").impute` against simple baselines.

Protocol (after TSI-Bench): on each data set's official train/test split, remove a share
(``--missing``, default 10 %) of the observed elements of every split at random (the data
the user has, gaps included); fit seqae on the training split with ``missing="mask"``;
then hide more of the test split's observed elements and impute them:

  random  10 % of the observed elements, at random;
  block   in each sequence, one channel loses a run of consecutive steps (10 % of the
          sequence's length, at least one step) at a random place.

MAE and MSE over the hidden elements only, in standardised units (each feature divided by
its standard deviation over the training split). Baselines in the same run, on the same
gaps: the training mean of the feature, the last observation carried forward (the next
one before the first), and linear interpolation between the neighbouring observations
(flat beyond the ends); a channel with no observation left in a sequence gets the mean.

Data, shipped in the sktime wheel (nothing is downloaded at run time):

  basicmotions  BasicMotions: 80 sequences, 6 channels, 100 steps each
  vowels        JapaneseVowels: 640 sequences, 12 channels, lengths 7-29 (ragged)

    pip install --no-deps sktime==1.2.0
    OMP_WAIT_POLICY=PASSIVE python benchmarks/impute.py --datasets basicmotions,vowels \
        --max-time 60
"""

from __future__ import annotations

import argparse
import time

import numpy as np

try:  # run as a script (benchmarks/ on the path) or imported by the tests
    from quality import _package_dir
except ImportError:  # pragma: no cover
    from benchmarks.quality import _package_dir

SETS = {"basicmotions": "BasicMotions", "vowels": "JapaneseVowels"}


def load(name: str):
    """``(train Sequences, test Sequences)`` of a data set of the sktime wheel."""
    from seqae.io import read_ts

    folder = SETS.get(name, name)
    base = _package_dir("sktime") / "datasets" / "data" / folder
    return read_ts(base / f"{folder}_TRAIN.ts")[0], read_ts(base / f"{folder}_TEST.ts")[0]


def with_gaps(arrays: list[np.ndarray], share: float, rng: np.random.Generator,
              pattern: str = "random") -> list[np.ndarray]:
    """Copies of ``arrays`` with more elements set to NaN: a ``share`` of the observed
    ones at random, or (``"block"``) a run of ``share`` of each sequence's steps in one
    channel. Each sequence keeps at least one observed element."""
    out = []
    for a in arrays:
        b = a.astype(np.float32, copy=True)
        if pattern == "random":
            hide = ~np.isnan(b) & (rng.random(b.shape) < share)
        else:
            hide = np.zeros(b.shape, bool)
            n = max(1, int(round(share * len(b))))
            start = int(rng.integers(0, len(b) - n + 1))
            hide[start:start + n, int(rng.integers(0, b.shape[1]))] = True
            hide &= ~np.isnan(b)
        if hide.sum() == (~np.isnan(b)).sum():  # never hide everything
            hide[tuple(np.argwhere(hide)[0])] = False
        b[hide] = np.nan
        out.append(b)
    return out


def fill_mean(a: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), mean, a)


def fill_locf(a: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Last observation carried forward (the first observation backwards before it)."""
    out = a.copy()
    for j in range(a.shape[1]):
        col = out[:, j]
        seen = np.flatnonzero(~np.isnan(col))
        if not len(seen):
            col[:] = mean[j]
            continue
        idx = np.maximum.accumulate(np.where(np.isnan(col), 0, np.arange(len(col))))
        col[:] = np.where(np.arange(len(col)) < seen[0], col[seen[0]], col[idx])
    return out


def fill_linear(a: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Linear interpolation between observations, flat beyond the first and last."""
    out = a.copy()
    steps = np.arange(len(a))
    for j in range(a.shape[1]):
        seen = ~np.isnan(a[:, j])
        out[:, j] = np.interp(steps, steps[seen], a[seen, j]) if seen.any() else mean[j]
    return out


def errors(filled: list[np.ndarray], truth: list[np.ndarray], hidden: list[np.ndarray],
           std: np.ndarray) -> tuple[float, float]:
    """MAE and MSE over the hidden elements, in units of the training std."""
    d = np.concatenate([((f - t) / std)[h] for f, t, h in zip(filled, truth, hidden,
                                                               strict=True)])
    return float(np.abs(d).mean()), float((d ** 2).mean())


def run(name: str, patterns: list[str], share: float, max_time: float, seed: int,
        max_epochs: int = 10_000, hidden_size: int = 64) -> list[tuple]:
    import seqae

    rng = np.random.default_rng(seed)
    train, test = load(name)
    train_gappy = with_gaps(train.to_list(), share, rng)
    test_gappy = with_gaps(test.to_list(), share, rng)
    stats = seqae.Sequences.from_list(train_gappy, missing="mask").feature_stats()
    mean, std = stats
    t0 = time.perf_counter()
    ae = seqae.SequenceAutoencoder(missing="mask", max_time=max_time, max_epochs=max_epochs,
                                   hidden_size=hidden_size, seed=seed, verbose=0)
    ae.fit(train_gappy)
    fit_s = time.perf_counter() - t0
    rows = []
    for pattern in patterns:
        asked = with_gaps(test_gappy, share, rng, pattern)
        hidden = [np.isnan(q) & ~np.isnan(p) for q, p in zip(asked, test_gappy, strict=True)]
        filled = ae.impute(asked).to_list()
        rows.append((name, pattern, "seqae (missing='mask')", *errors(filled, test_gappy,
                                                                      hidden, std),
                     f"fit {fit_s:.0f}s, {len(ae.history_)} epochs"))
        for label, fn in (("mean", fill_mean), ("last observation carried forward",
                                                fill_locf),
                          ("linear interpolation", fill_linear)):
            got = [fn(a, mean) for a in asked]
            rows.append((name, pattern, label, *errors(got, test_gappy, hidden, std), ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="basicmotions,vowels")
    ap.add_argument("--patterns", default="random,block")
    ap.add_argument("--missing", type=float, default=0.1,
                    help="share removed from the data, and hidden for the test")
    ap.add_argument("--max-time", type=float, default=60.0, help="seconds per fit")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads; seqae "
          f"SequenceAutoencoder(missing='mask', max_time={args.max_time:g}), seed {args.seed}")
    print("| data set | gaps | method | MAE | MSE | notes |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets.split(","):
        for row in run(name, args.patterns.split(","), args.missing, args.max_time,
                       args.seed):
            print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.4f} | {row[4]:.4f} | "
                  f"{row[5]} |", flush=True)


if __name__ == "__main__":
    main()
