"""Training with several processes under torchrun against one process, side by side.

The same `seqae train` call (same data, settings and seed) runs as:

  1 process, 1 thread, --accumulate N   the reference: the same weights as N processes
  1 process, N threads, --accumulate N  the same, with every core in one process
  torchrun, N processes of 1 thread     the data-parallel run

Each is a real `seqae train` process (the whole command, what the user waits for:
reading the file, training, the post-training pass, writing the model). Reported: wall
time, training valid steps per second (from the model's metrics.csv), optimizer steps per
process, peak resident memory per process, the ratio to the reference, and the largest
weight difference to it. Runs are interleaved --repeats times; the median is shown.
With --stream the same data are written as a folder of 8 Parquet files (row groups of
4,096 rows) and streamed (`seqae.stream`): each process reads its own windows.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ddp.py [--nproc 2] [--sequences 2000] [--stream]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _data(path: Path, n: int, seed: int = 0, files: int = 0) -> None:
    """One Parquet file at ``path`` or, with ``files``, a folder of that many."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(100) - 0.32, 0.8, n).astype(int), 2, 1000)
    ids = np.repeat(np.arange(n), lengths)
    t = np.concatenate([np.arange(k) for k in lengths])
    x = rng.normal(size=(int(lengths.sum()), 4)).astype(np.float32)
    table = pa.table({"id": ids, "t": t, **{f"x{j}": x[:, j] for j in range(4)}})
    if not files:
        pq.write_table(table, path)
        return
    path.mkdir()
    cuts = np.searchsorted(ids, np.linspace(0, n, files + 1).astype(int))  # whole sequences
    for f in range(files):
        pq.write_table(table.slice(cuts[f], cuts[f + 1] - cuts[f]), path / f"part-{f}.parquet",
                       row_group_size=4096)


def _run(cmd: list[str], env: dict, out: Path) -> dict:
    start = time.perf_counter()
    # GNU time is not everywhere: the children's peak RSS comes from getrusage
    wrapped = [sys.executable, "-c",
               "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "file=sys.stderr); sys.exit(r.returncode)", *cmd]
    r = subprocess.run(wrapped, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    rss_mb = int(r.stderr.strip().splitlines()[-1]) / 1024
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    steps = sum(int(row["steps"]) for row in rows)
    train_s = float(rows[-1]["time"])
    return {"wall": wall, "steps_s": steps / train_s, "rss": rss_mb,
            "opt_steps": sum(int(row["optimizer_steps"]) for row in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--sequences", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stream", action="store_true",
                    help="write the data as a folder of 8 Parquet files and stream them")
    ap.add_argument("--params", default="--hidden-size 64 --batch-size 32",
                    help="extra `seqae train` flags")
    args = ap.parse_args()
    from safetensors.torch import load_file

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    tmp = Path(tempfile.mkdtemp())
    data = tmp / ("data" if args.stream else "data.parquet")
    _data(data, args.sequences, files=8 if args.stream else 0)
    base = ["train", str(data), "--time-col", "t", "--epochs", str(args.epochs),
            "--val-fraction", "0", "-q", *args.params.split()]
    n = args.nproc
    env1 = {**os.environ, "OMP_NUM_THREADS": "1"}
    envn = {**os.environ, "OMP_NUM_THREADS": str(n)}
    runs = {
        f"1 process, 1 thread, --accumulate {n}": (
            [sys.executable, "-m", "seqae"], env1, ["--accumulate", str(n)]),
        f"1 process, {n} threads, --accumulate {n}": (
            [sys.executable, "-m", "seqae"], envn, ["--accumulate", str(n)]),
        f"torchrun, {n} processes of 1 thread": (
            [torchrun, f"--nproc-per-node={n}", "-m", "seqae"], env1, []),
    }
    results: dict[str, list[dict]] = {k: [] for k in runs}
    for rep in range(args.repeats):
        for i, (name, (prefix, env, extra)) in enumerate(runs.items()):
            out = tmp / f"m{i}"
            shutil.rmtree(out, ignore_errors=True)
            res = _run([*prefix, *base, "--out", str(out), *extra], env, out)
            res["weights"] = load_file(out / "weights.safetensors")
            results[name].append(res)
            print(f"# repeat {rep + 1}: {name}: {res['steps_s']:,.0f} valid steps/s, "
                  f"wall {res['wall']:.1f} s", flush=True)
    ref_name = next(iter(runs))
    ref = sorted(results[ref_name], key=lambda r: r["steps_s"])[len(results[ref_name]) // 2]
    import torch

    print(f"\n# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; {args.sequences} sequences (mean length ~100), "
          f"{args.epochs} epochs, `seqae train {' '.join(args.params.split())}`"
          f"{' on a folder of 8 files, streamed' if args.stream else ''}; "
          f"median of {args.repeats}\n")
    print("| run | training valid steps/s | ratio | wall s (whole command) | optimizer steps "
          "per process | peak RSS MB (largest process tree) | max weight difference |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        med = sorted(rs, key=lambda r: r["steps_s"])[len(rs) // 2]
        diff = max(float((med["weights"][k] - ref["weights"][k]).abs().max())
                   for k in ref["weights"])
        print(f"| {name} | {med['steps_s']:,.0f} | {med['steps_s'] / ref['steps_s']:.2f} | "
              f"{med['wall']:.1f} | {med['opt_steps']} | {med['rss']:.0f} | {diff:.1e} |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
