"""Imputation: `SequenceAutoencoder(missing="mask").impute` against baselines (issue 25).

Protocol (after TSI-Bench): on each data set's official train/test split, remove a share
(``--missing``, default 10 %) of the observed elements of every split at random (the data
the user has, gaps included); fit each learned method on the training split; then hide
more of the test split's observed elements and impute them:

  random  10 % of the observed elements, at random;
  block   in each sequence, one channel loses a run of consecutive steps (10 % of the
          sequence's length, at least one step) at a random place.

MAE and MSE over the hidden elements only (within each sequence's length), in
standardised units (each feature divided by its standard deviation over the training
split). Methods, in the same run, on the same gaps:

  seqae   ``SequenceAutoencoder(missing="mask", max_time=--max-time)`` on the raw data;
  mean    the training mean of the feature;
  locf    the last observation carried forward (the next one before the first);
  linear  linear interpolation between the neighbouring observations (flat beyond
          the ends); a channel with no observation left in a sequence gets the mean;
  saits   PyPOTS's SAITS, the README's example: ``n_layers=2, d_model=256, d_ffn=128,
          n_heads=4, d_k=64, d_v=64, dropout=0.1``, batch 32, Adam (lr 1e-3);
  brits   PyPOTS's BRITS, ``rnn_hidden_size=64`` (the BRITS paper's size), batch 32.

PyPOTS models take one fixed ``n_steps`` (its maintainers: all samples must have the
same length, PyPOTS issue 315): train and test are padded at the end to the longest
sequence of both, with NaN, which PyPOTS reads as missing (no loss on it); the model sees
the training split standardised with seqae's training statistics and its imputations
are mapped back. PyPOTS has no time budget: the model is fitted one epoch per ``fit``
call (``epochs=1``; the Adam state lives in the model object, so the calls continue one
training) until the next epoch, at the mean epoch time so far, would end past
``--max-time``; no validation split and no early stopping, as seqae gets none. Every
method computes on ``--threads`` torch threads (default 1: seqae's own choice for its
GRU under ``OMP_WAIT_POLICY=PASSIVE``) and gets the run's seed.

``--modes embed``: embedding quality under gaps. For each set and seed, 0 %, 10 % and
30 % of the elements of both splits are removed at random; seqae (``missing="mask"``)
is fitted on the training split, both splits are encoded and scored with the quality
suite's protocol (`quality.svm_accuracy`: RBF SVM, C by 5-fold CV); test accuracy.

Data, shipped in the sktime wheel (nothing is downloaded at run time):

  basicmotions  BasicMotions: 80 sequences, 6 channels, 100 steps each
  vowels        JapaneseVowels: 640 sequences, 12 channels, lengths 7-29 (ragged)
  gunpoint      GunPoint: 200 sequences, 1 channel, 150 steps each

    pip install --no-deps sktime==1.2.0
    pip install pypots scikit-learn      # or: pip install -e '.[bench]'
    OMP_WAIT_POLICY=PASSIVE python benchmarks/impute.py \
        --datasets basicmotions,vowels,gunpoint --seeds 0,1,2 --max-time 60 \
        --modes impute,embed --json impute.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import numpy as np

try:  # run as a script (benchmarks/ on the path) or imported by the tests
    from quality import _package_dir, svm_accuracy
except ImportError:  # pragma: no cover
    from benchmarks.quality import _package_dir, svm_accuracy

SETS = {"basicmotions": "BasicMotions", "vowels": "JapaneseVowels", "gunpoint": "GunPoint"}
METHODS = ("seqae", "mean", "locf", "linear", "saits", "brits")
LABELS = {"seqae": "seqae (missing='mask')", "mean": "mean",
          "locf": "last observation carried forward", "linear": "linear interpolation",
          "saits": "SAITS (PyPOTS)", "brits": "BRITS (PyPOTS)"}
SAITS_PARAMS = {"n_layers": 2, "d_model": 256, "d_ffn": 128, "n_heads": 4, "d_k": 64,
                "d_v": 64, "dropout": 0.1}
BRITS_PARAMS = {"rnn_hidden_size": 64}
EMBED_SHARES = (0.0, 0.1, 0.3)


def load(name: str, limit: int | None = None):
    """``(train list, y_train, test list, y_test)`` of a data set of the sktime wheel;
    ``limit``: at most that many sequences of each split, drawn with seed 0."""
    from seqae.io import read_ts

    folder = SETS.get(name, name)
    base = _package_dir("sktime") / "datasets" / "data" / folder
    out = []
    for split in ("TRAIN", "TEST"):
        seqs, y = read_ts(base / f"{folder}_{split}.ts")
        arrays, y = seqs.to_list(), np.asarray(y)
        keep = np.arange(len(arrays))
        if limit is not None and limit < len(arrays):
            keep = np.sort(np.random.default_rng(0).permutation(len(arrays))[:limit])
        out += [[arrays[i] for i in keep], y[keep]]
    return tuple(out)


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
        if hide.any() and hide.sum() == (~np.isnan(b)).sum():  # never hide everything
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


def pad(arrays: list[np.ndarray], n_steps: int) -> np.ndarray:
    """``(N, n_steps, features)`` float32, each sequence at the start of its row and NaN
    (PyPOTS's "missing") after its length."""
    out = np.full((len(arrays), n_steps, arrays[0].shape[1]), np.nan, np.float32)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return out


def unpad(X: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """The sequences of a padded array, each cut to its length."""
    return [X[i, :n] for i, n in enumerate(lengths)]


@contextlib.contextmanager
def _quiet():
    """PyPOTS's import prints a logo to stdout: sent to stderr, off the table."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def fit_pypots(kind: str, X: np.ndarray, max_time: float, seed: int,
               max_epochs: int = 10_000):
    """A PyPOTS ``kind`` ("saits" or "brits") fitted on the padded, standardised ``X``
    for about ``max_time`` seconds: one ``fit(epochs=1)`` call after another until the
    next epoch, at the mean epoch time so far, would end past the budget (at least
    one). Returns ``(model, epochs, seconds)``."""
    with _quiet():
        from pypots.imputation import BRITS, SAITS
        from pypots.utils.random import set_random_seed

    start = time.perf_counter()
    set_random_seed(seed)
    cls, params = (SAITS, SAITS_PARAMS) if kind == "saits" else (BRITS, BRITS_PARAMS)
    model = cls(n_steps=X.shape[1], n_features=X.shape[2], **params, batch_size=32,
                epochs=1, device="cpu", saving_path=None, verbose=False)
    epochs = 0
    while True:
        model.fit({"X": X})
        epochs += 1
        spent = time.perf_counter() - start
        if epochs >= max_epochs or spent + spent / epochs > max_time:
            return model, epochs, spent


def run(name: str, patterns: list[str], share: float, max_time: float, seed: int,
        methods: tuple[str, ...] = METHODS, threads: int = 1, limit: int | None = None,
        max_epochs: int = 10_000, hidden_size: int = 64) -> list[dict]:
    """One seed of the imputation protocol on one set: a row per (gaps, method)."""
    import seqae

    rng = np.random.default_rng(seed)
    train, _, test, _ = load(name, limit)
    train_gappy = with_gaps(train, share, rng)
    test_gappy = with_gaps(test, share, rng)
    mean, std = seqae.Sequences.from_list(train_gappy, missing="mask").feature_stats()
    asked = {p: with_gaps(test_gappy, share, rng, p) for p in patterns}
    filled: dict[tuple[str, str], list[np.ndarray]] = {}
    notes: dict[str, tuple[float, int]] = {}
    if "seqae" in methods:
        t0 = time.perf_counter()
        ae = seqae.SequenceAutoencoder(missing="mask", max_time=max_time,
                                       max_epochs=max_epochs, hidden_size=hidden_size,
                                       threads=threads, seed=seed, verbose=0)
        ae.fit(train_gappy)
        notes["seqae"] = (time.perf_counter() - t0, len(ae.history_))
        for p in patterns:
            filled[p, "seqae"] = ae.impute(asked[p]).to_list()
    pypots = [m for m in methods if m in ("saits", "brits")]
    if pypots:
        n_steps = max(len(a) for a in train_gappy + test_gappy)
        X = (pad(train_gappy, n_steps) - mean) / std
        for m in pypots:
            model, epochs, fit_s = fit_pypots(m, X, max_time, seed, max_epochs)
            notes[m] = (fit_s, epochs)
            for p in patterns:
                out = model.impute({"X": (pad(asked[p], n_steps) - mean) / std})
                filled[p, m] = unpad(out * std + mean, [len(a) for a in asked[p]])
    simple = {"mean": fill_mean, "locf": fill_locf, "linear": fill_linear}
    rows = []
    for p in patterns:
        hidden = [np.isnan(q) & ~np.isnan(t) for q, t in zip(asked[p], test_gappy,
                                                             strict=True)]
        for m in methods:
            got = filled.get((p, m)) or [simple[m](a, mean) for a in asked[p]]
            mae, mse = errors(got, test_gappy, hidden, std)
            fit_s, epochs = notes.get(m, (0.0, 0))
            rows.append({"set": name, "gaps": p, "method": m, "seed": seed, "mae": mae,
                         "mse": mse, "fit_s": fit_s, "epochs": epochs})
    return rows


def run_embed(name: str, max_time: float, seed: int, threads: int = 1,
              limit: int | None = None, shares: tuple[float, ...] = EMBED_SHARES,
              max_epochs: int = 10_000, missing: str = "mask") -> list[dict]:
    """Embedding quality under gaps: seqae's test accuracy by the suite's protocol with
    each ``share`` of the elements of both splits removed at random. ``missing="error"``
    fits the default model instead (complete data only: ``shares`` must be 0)."""
    import seqae

    train, ytr, test, yte = load(name, limit)
    rows = []
    for share in shares:
        rng = np.random.default_rng(seed)
        tr, te = with_gaps(train, share, rng), with_gaps(test, share, rng)
        t0 = time.perf_counter()
        ae = seqae.SequenceAutoencoder(missing=missing, max_time=max_time,
                                       max_epochs=max_epochs, threads=threads, seed=seed,
                                       verbose=0)
        ae.fit(tr)
        fit_s = time.perf_counter() - t0
        acc, c = svm_accuracy(ae.encode(tr), ytr, ae.encode(te), yte)
        rows.append({"set": name, "missing": share, "model": missing, "seed": seed,
                     "accuracy": acc, "C": c, "fit_s": fit_s, "epochs": len(ae.history_)})
    return rows


def _pm(values: list[float], digits: int = 4) -> str:
    """``mean ± std`` over seeds (the mean alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def impute_table(rows: list[dict]) -> str:
    """Markdown: one line per (set, gaps, method), mean ± std over the seeds."""
    lines = ["| data set | gaps | method | MAE | MSE | fit s | epochs | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["set"], r["gaps"], r["method"]) for r in rows))
    for key in keys:
        rs = [r for r in rows if (r["set"], r["gaps"], r["method"]) == key]
        fit = (f"{np.mean([r['fit_s'] for r in rs]):.0f} | "
               f"{np.mean([r['epochs'] for r in rs]):.0f}"
               if key[2] in ("seqae", "saits", "brits") else " | ")
        lines.append(f"| {key[0]} | {key[1]} | {LABELS[key[2]]} | "
                     f"{_pm([r['mae'] for r in rs])} | {_pm([r['mse'] for r in rs])} | "
                     f"{fit} | {len(rs)} |")
    return "\n".join(lines)


def embed_table(rows: list[dict]) -> str:
    """Markdown: seqae's test accuracy per (set, missing share), mean ± std over seeds."""
    lines = ["| data set | elements removed | model | seqae + RBF SVM test accuracy | fit s "
             "| seeds |", "|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r["set"], r["missing"], r.get("model", "mask")) for r in rows):
        rs = [r for r in rows if (r["set"], r["missing"], r.get("model", "mask")) == key]
        lines.append(f"| {key[0]} | {key[1]:.0%} | missing={key[2]!r} | "
                     f"{_pm([r['accuracy'] for r in rs])} | "
                     f"{np.mean([r['fit_s'] for r in rs]):.0f} | {len(rs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="basicmotions,vowels,gunpoint")
    ap.add_argument("--modes", default="impute", help="impute, embed or impute,embed")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--patterns", default="random,block")
    ap.add_argument("--missing", type=float, default=0.1,
                    help="share removed from the data, and hidden for the test")
    ap.add_argument("--max-time", type=float, default=60.0, help="seconds per fit")
    ap.add_argument("--seeds", default="0", help="comma-separated; gaps and fits per seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, every method")
    ap.add_argument("--limit", type=int, default=None,
                    help="at most this many sequences per split (smoke runs)")
    ap.add_argument("--json", default=None, help="write the per-seed rows here")
    ap.add_argument("--shares", default=",".join(f"{v:g}" for v in EMBED_SHARES),
                    help="embed: shares of the elements removed")
    ap.add_argument("--embed-model", default="mask", choices=("mask", "error"),
                    help="embed: missing='mask' (default) or the default model "
                         "(missing='error', --shares 0 only)")
    args = ap.parse_args(argv)
    shares = tuple(float(v) for v in args.shares.split(","))
    if args.embed_model == "error" and any(shares):
        ap.error("--embed-model error takes complete data only: --shares 0")
    import torch

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = tuple(args.methods.split(","))
    modes = args.modes.split(",")
    versions = {"torch": torch.__version__}
    if {"saits", "brits"} & set(methods) and "impute" in modes:
        try:
            with _quiet():
                import pypots
        except ImportError:
            raise SystemExit("saits/brits need pypots: pip install pypots "
                             "(or drop them with --methods)") from None
        versions["pypots"] = pypots.__version__
    print(f"# {', '.join(f'{k} {v}' for k, v in versions.items())}, {args.threads} "
          f"torch threads, max_time {args.max_time:g} s per fit, seeds {seeds}"
          + (f", at most {args.limit} sequences per split" if args.limit else ""),
          flush=True)
    result: dict = {"args": vars(args), "versions": versions}
    if "impute" in modes:
        rows = [r for name in args.datasets.split(",") for seed in seeds
                for r in run(name, args.patterns.split(","), args.missing, args.max_time,
                             seed, methods, args.threads, args.limit)]
        result["impute"] = rows
        print(impute_table(rows), flush=True)
    if "embed" in modes:
        rows = [r for name in args.datasets.split(",") for seed in seeds
                for r in run_embed(name, args.max_time, seed, args.threads, args.limit,
                                   shares, missing=args.embed_model)]
        result["embed"] = rows
        print(embed_table(rows), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
