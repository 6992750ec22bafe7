"""Two versions of seqae side by side: the wall time of whole `fit` and `encode` calls.

Each version is a checkout (a folder holding ``seqae/``); every fit runs in a process of
its own with that checkout first on the path, and the versions alternate, so that a
shared machine's load falls on both alike. Prints each pair and the medians.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/compare.py BEFORE_DIR AFTER_DIR [--rounds 5]

(Made for issue 23's redesign: `git worktree add /tmp/before d14de26`.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ONE_FIT = """
import json, sys, time
import seqae
seqs, _, _ = seqae.datasets.make_demo(n=600, seed=0)
kw = dict(max_epochs=3, verbose=0, seed=0, validation_fraction=0.1)
if sys.argv[1] == "conv":
    kw["encoder"] = "conv"
t = time.perf_counter()
ae = seqae.SequenceAutoencoder(**kw).fit(seqs)
fit = time.perf_counter() - t
t = time.perf_counter()
ae.encode(seqs)
print(json.dumps({"fit_s": fit, "encode_s": time.perf_counter() - t,
                  "steps": int(sum(r["steps"] for r in ae.history_))}))
"""


def one(checkout: str, recipe: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(checkout)}
    out = subprocess.run([sys.executable, "-c", ONE_FIT, recipe], env=env, check=True,
                         capture_output=True, text=True, cwd=checkout)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--recipes", default="gru,conv")
    args = ap.parse_args()
    for recipe in args.recipes.split(","):
        pairs = []
        for _ in range(args.rounds):
            b, a = one(args.before, recipe), one(args.after, recipe)
            assert a["steps"] == b["steps"], "the versions did different work"
            pairs.append((b, a))
            print(f"{recipe}: fit {b['fit_s']:.1f} s -> {a['fit_s']:.1f} s "
                  f"({a['fit_s'] / b['fit_s']:.2f}), encode {b['encode_s']:.3f} s -> "
                  f"{a['encode_s']:.3f} s", flush=True)
        for key in ("fit_s", "encode_s"):
            before = statistics.median(b[key] for b, _ in pairs)
            after = statistics.median(a[key] for _, a in pairs)
            ratio = statistics.median(a[key] / b[key] for b, a in pairs)
            print(f"{recipe} {key}: median {before:.3f} -> {after:.3f}, after/before {ratio:.2f}")


if __name__ == "__main__":
    main()
