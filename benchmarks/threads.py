"""How many CPU threads should a fit use? Whole `fit` and `encode` calls, one thread
against all of torch's, side by side in one run.

`SequenceAutoencoder(threads="auto")` computes a recurrent encoder of `hidden_size` up to
`seqae.recipe.ONE_THREAD_HIDDEN` on one thread when OMP_WAIT_POLICY=PASSIVE (OpenMP's
threads sleep between parallel regions) and leaves torch's setting alone otherwise.
This script is the measurement behind that rule: for each recipe it times the whole
call the user waits for (`fit` of a fixed number of epochs, then `encode` of the
training data) with ``threads=1`` and with ``threads=N`` (torch's thread count when the
script starts), the runs interleaved ``--repeats`` times, the median kept.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/threads.py [--repeats 3]
    python benchmarks/threads.py --cases 1,2,3,4   # OpenMP's default policy (spinning)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import string
import time

import numpy as np


def ragged(n: int, mean: int, features: int, seed: int = 0):
    """``n`` noisy sines of log-normal lengths (mean ``mean``), ``features`` channels."""
    from seqae import Sequences

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(mean) - 0.08, 0.4, n).astype(int), 2, 10 * mean)
    arrays = []
    for length in lengths:
        t = np.arange(length)[:, None] / rng.uniform(2, 10)
        phase = rng.uniform(0, 6, features)
        arrays.append(np.sin(t + phase) + 0.1 * rng.normal(size=(length, features)))
    return Sequences.from_list([a.astype(np.float32) for a in arrays])


def words(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    return ["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(n)]


CASES = {  # name: (data, settings)
    "GRU 64, 12 channels, ~30 steps (the default for short sequences)":
        (lambda: ragged(1000, 30, 12), {}),
    "GRU 256, same data": (lambda: ragged(1000, 30, 12), {"hidden_size": 256}),
    "GRU 512, same data": (lambda: ragged(1000, 30, 12), {"hidden_size": 512}),
    "texts: GRU 64 on 2,000 words (the default for texts)": (lambda: words(2000), {}),
    "conv 64, 1 channel, ~300 steps (the default for long sequences)":
        (lambda: ragged(300, 300, 1), {}),
}


def one_run(data, settings: dict, threads: int, epochs: int) -> tuple[float, float]:
    from seqae import SequenceAutoencoder

    ae = SequenceAutoencoder(**{"max_epochs": epochs, "verbose": 0, "seed": 0,
                                "validation_fraction": 0, **settings, "threads": threads})
    start = time.perf_counter()
    ae.fit(data)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    ae.encode(data)
    return fit_s, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--cases", default=None, help="comma list of case numbers (1-based)")
    args = ap.parse_args()

    import torch

    from seqae import SequenceAutoencoder

    n = torch.get_num_threads()
    policy = os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP's default)")
    print(f"# {platform.machine()}, torch {torch.__version__}, {n} threads by default, "
          f"OMP_WAIT_POLICY {policy}, Python {platform.python_version()}; {args.epochs} "
          f"epochs per fit, median of {args.repeats} interleaved runs\n")
    chosen = list(CASES.items())
    if args.cases:
        chosen = [chosen[int(i) - 1] for i in args.cases.split(",")]
    made = {name: make() for name, (make, _) in chosen}
    times: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for name, (_, settings) in chosen:
            for threads in (1, n):
                times.setdefault((name, threads), []).append(
                    one_run(made[name], settings, threads, args.epochs))
    print(f"| recipe | `fit` s, 1 thread | `fit` s, {n} threads | {n} threads / 1 "
          f"| `encode` s, 1 | `encode` s, {n} | {n} / 1 | `threads=\"auto\"` picks |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, (_, settings) in chosen:
        f1 = statistics.median(t[0] for t in times[(name, 1)])
        fn = statistics.median(t[0] for t in times[(name, n)])
        e1 = statistics.median(t[1] for t in times[(name, 1)])
        en = statistics.median(t[1] for t in times[(name, n)])
        probe = SequenceAutoencoder(**{"max_epochs": 1, "verbose": 0, **settings})
        probe.fit(made[name][:50])
        from seqae import recipe

        picks = recipe.threads(probe.threads, probe.model_config_, "cpu")
        print(f"| {name} | {f1:.1f} | {fn:.1f} | {fn / f1:.2f} | {e1:.2f} | {en:.2f} | "
              f"{en / e1:.2f} | {picks or 'torch (' + str(n) + ')'} |", flush=True)


if __name__ == "__main__":
    main()
