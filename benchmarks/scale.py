"""Folders larger than memory (issue 29): what `max_time` bounds, the index pass against a
plain scan, and peak memory, for the two common shapes of a Parquet folder.

  narrow  many short narrow sequences: 500 steps x 6 float32 features, long tables
          (id, t, f0..f5), row groups of 500,000 rows, 12 files (sensor sessions,
          transactions, user events); 3 GB holds 204,000 sequences
  wide    few wide sequences: 30-90 steps x 256 float32 features, row groups of 20,000
          rows, 8 files, uncompressed (the streaming test's shape)

The folder is generated on the fly (--gb of it) in --work (kept with --keep; generated
again only when absent). Then, for the shape:

  scan    a plain pyarrow scan of the id, time and feature columns, row group by row
          group: the limit of an index pass
  index   `ParquetSource.index(stats=True)` with the cache off: rows per second and the
          ratio to the scan (goal >= 0.5), then once more from the cache
  train   `seqae train FOLDER --out M --max-time T` in a fresh process: wall time of the
          whole command, its phases (from its log lines as they arrive: reading and
          indexing, training with validation, the pass after training), peak RSS
  encode, score, reconstruct
          the same for `seqae encode|score|reconstruct M FOLDER --out X.parquet`

``--commands heap`` instead times `fit` on sequences in memory (500 and 40 steps) with
and without giving the C heap back after steps (`seqae.heap.Heap`), alternating.

Each line of output is a JSON record (also appended to --json); RESULTS.md quotes them.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/scale.py --shape narrow --gb 3 \\
        --commands scan,index,train --max-time 90 --work /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]  # this checkout's seqae

PEAK = """
import resource, subprocess, sys, time
began = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE, text=True)
for line in p.stderr:
    sys.stderr.write(f"{time.perf_counter() - began:9.3f} {line}")
    sys.stderr.flush()
code = p.wait()
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, code,
      time.perf_counter() - began)
"""


def generate(folder: Path, shape: str, gb: float) -> dict:
    """Write the folder (unless it is there): ``gb`` GB of the ``shape``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = folder / "shape.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    if shape == "narrow":
        length, files = 500, 12
        n = int(204_000 * gb / 3.0) // files * files
        per = n // files
        for f in range(files):
            ids = np.repeat(np.arange(f * per, (f + 1) * per), length)
            v = rng.standard_normal((len(ids), 6), dtype=np.float32)
            v += np.sin(np.arange(len(ids)) / 17.0)[:, None].astype(np.float32)
            pq.write_table(pa.table({"id": ids, "t": np.tile(np.arange(length), per),
                                     **{f"f{j}": v[:, j] for j in range(6)}}),
                           folder / f"part-{f:02d}.parquet", row_group_size=500_000)
            del v, ids
    else:
        files, width = 8, 256
        rows_per_file = int(gb * 1e9 / (width * 4) / files)
        k = 0
        names = [f"c{j}" for j in range(width)]
        for f in range(files):
            lengths = rng.integers(30, 91, size=rows_per_file // 60)
            ids = np.repeat(np.arange(k, k + len(lengths)), lengths)
            k += len(lengths)
            v = rng.standard_normal((len(ids), width), dtype=np.float32)
            table = pa.table({"id": ids, "t": np.concatenate([np.arange(n) for n in lengths]),
                              **{c: v[:, j] for j, c in enumerate(names)}})
            del v
            pq.write_table(table, folder / f"part-{f:02d}.parquet", row_group_size=20_000,
                           compression="none")
            del table
        n = k
    info = {"shape": shape, "sequences": int(n),
            "bytes": sum(p.stat().st_size for p in folder.glob("*.parquet")),
            "generated_s": round(time.perf_counter() - began, 1)}
    marker.write_text(json.dumps(info))
    return info


def scan(folder: Path, columns: list[str]) -> tuple[float, int]:
    import pyarrow.parquet as pq

    began, rows = time.perf_counter(), 0
    for f in sorted(folder.glob("*.parquet")):
        pf = pq.ParquetFile(f)
        for g in range(pf.num_row_groups):
            rows += pf.read_row_group(g, columns=columns).num_rows
    return time.perf_counter() - began, rows


def index(folder: Path, cache: str) -> float:
    os.environ["SEQAE_CACHE_DIR"] = cache
    from seqae.stream import ParquetSource

    began = time.perf_counter()
    ParquetSource(folder, time_col="t").index(stats=True)
    return time.perf_counter() - began


def command(args: list[str], env: dict) -> dict:
    """Run ``seqae ARGS`` in a fresh process: wall time, peak RSS, and when each of its
    log lines arrived."""
    r = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "seqae", *args],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    peak, code, wall = r.stdout.split()
    lines = [(float(ln[:9]), ln[10:]) for ln in r.stderr.splitlines() if ln[:9].strip()]
    if int(code) != 0:
        raise SystemExit(f"seqae {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return {"wall_s": round(float(wall), 1), "peak_rss_mb": int(peak), "log": lines}


def phases(log: list[tuple[float, str]]) -> dict:
    """Seconds of a train run's phases, from when its log lines arrived."""
    def at(prefix: str) -> float | None:
        return next((t for t, text in log if text.startswith(prefix)), None)

    read, indexed = at("read "), at("seqae: index")
    first_epoch = at("epoch ")
    last_epoch = max((t for t, text in log if text.startswith("epoch ")), default=None)
    trained = at("trained ")
    out = {}
    if indexed is not None:
        out["to_index_s"] = round(indexed, 1)
    if last_epoch is not None and indexed is not None:
        out["epochs_s"] = round(last_epoch - indexed, 1)
    if trained is not None and last_epoch is not None:
        out["after_training_s"] = round(trained - last_epoch, 1)
    if first_epoch is not None and read is not None:
        out["to_first_epoch_s"] = round(first_epoch, 1)
    return out


HEAP = """
import resource, sys, time
import numpy as np
import seqae, seqae.heap
if sys.argv[1] == "off":
    seqae.heap.HEAP_FREE_LIMIT = 1 << 62  # never give the heap back
length, n = int(sys.argv[2]), int(sys.argv[3])
X = list(np.random.default_rng(0).standard_normal((n, length, 6)).astype(np.float32))
began = time.perf_counter()
seqae.SequenceAutoencoder(max_epochs=1, verbose=0, validation_fraction=0.0).fit(X)
print(time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def heap(length: int, n: int, repeats: int) -> dict:
    """`fit` (1 epoch, the default recipe, ``n`` sequences of ``length`` x 6 in memory)
    with the heap given back after steps (`seqae.heap.Heap`) and without, alternating,
    each in a fresh process: times and peak RSS."""
    out: dict = {"on": [], "off": []}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(repeats):
        for mode in ("off", "on"):
            r = subprocess.run([sys.executable, "-c", HEAP, mode, str(length), str(n)],
                               capture_output=True, text=True, env=env, check=True)
            t, rss = r.stdout.split()
            out[mode].append((round(float(t), 1), int(rss)))
    return {"length": length, "sequences": n, **out,
            "time_on_vs_off": round(float(np.median([t for t, _ in out["on"]]))
                                    / float(np.median([t for t, _ in out["off"]])), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=["narrow", "wide"], required=True)
    ap.add_argument("--gb", type=float, default=3.0)
    ap.add_argument("--commands", default="scan,index,train,encode,score")
    ap.add_argument("--max-time", type=float, default=90.0)
    ap.add_argument("--work", default=None, help="where folders go (default: a temp dir)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.commands == "heap":  # no folder: the C heap on long and on short sequences
        for length, n in ((500, 256), (40, 3000)):
            print(json.dumps({"what": "heap", **heap(length, n, 2)}), flush=True)
        return
    work = Path(a.work or tempfile.mkdtemp(prefix="seqae-scale-"))
    folder = work / f"{a.shape}-{a.gb:g}gb"
    info = generate(folder, a.shape, a.gb)
    base = {**info, "gb_on_disk": round(info["bytes"] / 1e9, 2), "machine": platform.node(),
            "cpus": os.cpu_count()}
    cache = str(work / "cache")
    env = {**os.environ, "SEQAE_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    todo = a.commands.split(",")
    model = work / f"model-{a.shape}-{a.gb:g}gb"

    def say(what: str, rec: dict) -> None:
        rec = {"what": what, **base, **rec}
        rec.pop("log", None)
        print(json.dumps(rec), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(rec) + "\n")

    feats = ["f0", "f1", "f2", "f3", "f4", "f5"] if a.shape == "narrow" else \
        [f"c{j}" for j in range(256)]
    if "scan" in todo or "index" in todo:
        t_scan, rows = min(scan(folder, ["id", "t", *feats]) for _ in range(2))
        t_ids, _ = scan(folder, ["id", "t"])
        say("scan", {"rows": rows, "scan_s": round(t_scan, 2), "scan_id_t_s": round(t_ids, 2),
                     "scan_rows_per_s": round(rows / t_scan)})
        if "index" in todo:
            t_index = min(index(folder, "off") for _ in range(2))
            for f in Path(cache).glob("index-*.parquet"):
                f.unlink()
            index(folder, cache)  # writes the cache
            t_cached = index(folder, cache)
            say("index", {"rows": rows, "index_s": round(t_index, 2),
                          "index_rows_per_s": round(rows / t_index),
                          "vs_scan": round(t_scan / t_index, 2),
                          "from_cache_s": round(t_cached, 2)})
    if "train" in todo:
        if model.exists():
            import shutil

            shutil.rmtree(model)
        r = command(["train", str(folder), "--out", str(model), "--time-col", "t",
                     "--max-time", f"{a.max_time:g}", "-v"], env)
        hist = (model / "metrics.csv").read_text().strip().splitlines()
        say("train", {"max_time": a.max_time, **r, **phases(r["log"]),
                      "over_budget_s": round(r["wall_s"] - a.max_time, 1),
                      "tolerance_s": round(0.1 * a.max_time + 5, 1), "epochs": len(hist) - 1,
                      "last_epoch": hist[-1]})
    for cmd in ("encode", "score", "reconstruct"):
        if cmd in todo:
            out = work / f"{a.shape}-{cmd}.parquet"
            r = command([cmd, str(model), str(folder), "--out", str(out), "--overwrite"], env)
            say(cmd, r)
            out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
