"""loss_normalize="element" against "sequence" on a synthetic set of mixed lengths.

Many long smooth sequences (sines, 150-200 steps) and a few short ones of another kind
(random walks, 5-15 steps); a small GRU is fitted under each normalisation, and the
reconstruction error (`score`, the mean per sequence) of held-out short and long
sequences is reported: under "element" the short sequences' few elements weigh little.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/loss_normalize.py [--seeds 0,1,2]
        [--normalize element,sequence] [--epochs 15]
"""

import argparse
import time

import numpy as np

import seqae


def _data(n_long: int, n_short: int, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    long = []
    for k in rng.integers(150, 200, n_long):
        t = np.arange(k)[:, None]
        long.append(np.sin(t * rng.uniform(0.05, 0.2) + rng.uniform(0, 6.3, (1, 2)))
                    .astype(np.float32))
    short = [np.cumsum(rng.normal(size=(int(k), 2)), axis=0).astype(np.float32)
             for k in rng.integers(5, 15, n_short)]
    return long, short


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--normalize", default="element,sequence")
    args = ap.parse_args()
    print("| seed | loss_normalize | short: mean score | long: mean score | fit s |")
    print("|---|---|---|---|---|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        long, short = _data(200, 20, seed)
        test_long, test_short = _data(100, 100, seed + 100)
        for normalize in args.normalize.split(","):
            began = time.perf_counter()
            ae = seqae.SequenceAutoencoder(hidden_size=32, latent_dim=8, max_epochs=args.epochs,
                                           loss_normalize=normalize, device="cpu", seed=seed,
                                           verbose=0).fit(long + short)
            took = time.perf_counter() - began
            print(f"| {seed} | {normalize} | {ae.score(test_short).mean():.4f} | "
                  f"{ae.score(test_long).mean():.4f} | {took:.0f} |", flush=True)


if __name__ == "__main__":
    main()
