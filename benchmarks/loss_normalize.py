"""loss_normalize="element" against "sequence" on a synthetic set of mixed lengths.

Many long smooth sequences (sines, 150-200 steps) and a few short ones of another kind
(random walks, 5-15 steps); a small GRU is fitted under each normalisation, and the
reconstruction error (`score`, the mean per sequence) of held-out short and long
sequences is reported: under "element" the short sequences' few elements weigh little.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/loss_normalize.py [--seeds 0,1,2]
        [--normalize element,sequence] [--epochs 15]

``--data vowels`` (or another set of the sktime wheel, `quality`'s loader): the set's
official split instead, the default model fitted for ``--max-time`` seconds under each
normalisation, and the mean `score` of the shortest and the longest third of the test
sequences (the real counterpart: JapaneseVowels' lengths run from 7 to 29 steps).
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
    ap.add_argument("--data", default=None, help="a set of the sktime wheel")
    ap.add_argument("--max-time", type=float, default=30.0, help="with --data")
    args = ap.parse_args()
    if args.data:
        return _real(args)
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


def _real(args) -> None:
    """Element against sequence on a real set's official split (``--data``)."""
    from impute import load

    train, _, test, _ = load(args.data)
    lengths = np.array([len(a) for a in test])
    order = np.argsort(lengths, kind="stable")
    third = len(order) // 3
    short, long = order[:third], order[-third:]
    print(f"# {args.data}: {len(train)} training sequences; test thirds of "
          f"{lengths[short].min()}-{lengths[short].max()} and "
          f"{lengths[long].min()}-{lengths[long].max()} steps; {args.max_time:g} s per fit")
    print("| seed | loss_normalize | shortest third: mean score | longest third | all |")
    print("|---|---|---|---|---|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        for normalize in args.normalize.split(","):
            ae = seqae.SequenceAutoencoder(max_time=args.max_time, loss_normalize=normalize,
                                           seed=seed, verbose=0).fit(train)
            score = ae.score(test)
            print(f"| {seed} | {normalize} | {score[short].mean():.4f} | "
                  f"{score[long].mean():.4f} | {score.mean():.4f} |", flush=True)


if __name__ == "__main__":
    main()
