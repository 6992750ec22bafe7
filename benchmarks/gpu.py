"""Training and inference throughput on one GPU, side by side in one run (issue 27).

For each recipe (the GRU and the LSTM at hidden 256, batch 128, and the convolutional
recipe at its default width on long sequences), with throughput.py's functions:

  (a) limit         the same valid steps as fixed-length sequences (cuDNN's best case)
  (b) naive         every batch padded to the longest sequence of the data set
  (c) fit e2e       the wall time of a whole `SequenceAutoencoder.fit` call in float32
                    (``precision="32"``, which "auto" also is)
  (d) fit e2e bf16  the same under ``precision="bf16"``, when SequenceAutoencoder has
                    a ``precision`` parameter ("not available in this version" otherwise)
  (c1) fit e2e, read every step
                    (c) reading the losses from the GPU after every step, as before
                    issue 27 (`seqae.train.READ_EVERY` = 1), to show what the reads cost
  keras             the Keras 3 recipe of seed 000 (LSTM recipe only, torch backend,
                    padded to the longest), when keras is installed
  encode            `encode` of the whole data set, and padding to the longest

Each figure is valid steps/s with its ratio to (a), and the peak GPU memory allocated
(``torch.cuda.max_memory_allocated``) with its ratio to (a)'s. The epochs of (c) are
sized from (a)'s rate so that the call lasts about --fit-seconds at the limit's pace.
Every method runs once, in its own process (spawned: interpreter and CUDA start-ups
are outside the timings). Results are printed as they come and written to --json after
every recipe, so that a run cut short keeps what it measured.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/gpu.py --json gpu.json   (or benchmarks/gpu.sh)
    python benchmarks/gpu.py --tiny --json tiny.json   # CPU, seconds (the CI smoke test)
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import platform
import queue
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# this checkout's seqae (not another installed copy), and throughput.py beside this file;
# spawned processes inherit the path
sys.path[:0] = [str(HERE.parent), str(HERE)]

import throughput as tp  # noqa: E402

# the data and model of each recipe (throughput.py's argument names)
RECIPES: dict[str, dict] = {
    # first: the recipe the Keras figure is for
    "LSTM 256": {"encoder": "rnn", "cell": "lstm", "hidden": 256, "batch": 128, "n": 2000,
                 "features": 8, "mean_length": 100, "keras": True},
    # what encoder="auto" picks for long sequences, at the library's default width
    "conv 64": {"encoder": "conv", "cell": "gru", "hidden": 64, "batch": 128, "n": 2000,
                "features": 1, "mean_length": 300},
    "GRU 256": {"encoder": "rnn", "cell": "gru", "hidden": 256, "batch": 128, "n": 2000,
                "features": 8, "mean_length": 100},
}
# --tiny: the same recipes, small enough for a CPU in seconds
TINY = {"hidden": 16, "batch": 16, "n": 48, "features": 2, "mean_length": 20}
TINY_CONV = {**TINY, "n": 32, "features": 1, "mean_length": 12}

TRAIN = ("limit", "naive", "fit e2e", "fit e2e bf16", "fit e2e read 1", "keras")
ENCODE = ("seqae encode", "naive encode")
NOT_AVAILABLE = "not available in this version"


def has_precision() -> bool:
    """Whether this version's SequenceAutoencoder takes ``precision`` (bf16 training)."""
    from seqae import SequenceAutoencoder

    return "precision" in inspect.signature(SequenceAutoencoder).parameters


def has_read_every() -> bool:
    """Whether this version reads the losses from a GPU every `READ_EVERY` steps."""
    import seqae.train

    return hasattr(seqae.train, "READ_EVERY")


def run(target, method: str, args, inline: bool) -> dict:
    """throughput.py's ``target(method, args, queue)``: in a fresh process (throughput's
    `_run`), or in this one (--tiny: no start-up per method)."""
    if not inline:
        return tp._run(target, method, args)
    q: queue.SimpleQueue = queue.SimpleQueue()
    target(method, args, q)
    return q.get()


def epoch_steps(lengths: np.ndarray, batch: int) -> int:
    """Valid steps `fit` trains per epoch: whole passes, at least MIN_EPOCH_STEPS batches."""
    from seqae.batching import MIN_EPOCH_STEPS

    batches = -(-len(lengths) // batch)
    return int(lengths.sum()) * max(1, math.ceil(MIN_EPOCH_STEPS / batches))


def peak(r: dict) -> float:
    """The memory figure of a result: the GPU's peak allocation, else the process's RSS."""
    return r["gpu_peak_mb"] if r.get("gpu_peak_mb") is not None else r["maxrss_mb"]


def measure(name: str, settings: dict, opts, t0: float) -> dict:
    """Every method of one recipe; ``{"settings", "data", "train", "encode"}``."""
    args = argparse.Namespace(device=opts.device, seconds=opts.seconds, epochs=1,
                              precision=None, **settings)
    lengths = tp.make_lengths(args.n, mean=args.mean_length)
    out: dict = {"settings": settings, "data": {
        "sequences": int(args.n), "valid_steps": int(lengths.sum()),
        "mean_length": float(lengths.mean()), "max_length": int(lengths.max())},
        "train": {}, "encode": {}}
    print(f"\n## {name}: {args.n} sequences x {args.features} features, lengths mean "
          f"{lengths.mean():.1f}, max {lengths.max()}, {lengths.sum()} valid steps; "
          f"{args.encoder} ({args.cell.upper() if args.encoder == 'rnn' else 'dilated conv'}) "
          f"hidden {args.hidden}, batch {args.batch}", flush=True)

    def one(target, method: str, label: str, **changes) -> dict | None:
        if time.perf_counter() - t0 > opts.budget:
            print(f"  {label:<14} skipped: the run's --budget of {opts.budget:.0f} s is spent",
                  flush=True)
            return {"skipped": f"--budget of {opts.budget:.0f} s spent"}
        started = time.perf_counter()
        r = run(target, method, argparse.Namespace(**{**vars(args), **changes}), opts.inline)
        r["method"] = label
        if "precision" in changes:
            r["precision"] = changes["precision"]
        r["process_s"] = time.perf_counter() - started
        gpu = f", GPU peak {r['gpu_peak_mb']:.0f} MB" if r.get("gpu_peak_mb") is not None else ""
        print(f"  {label:<14} {r['steps_per_s']:>12,.0f} valid steps/s  ({r['elapsed']:.1f} s "
              f"timed, {r['process_s']:.1f} s with start-up{gpu})", flush=True)
        return r

    train = out["train"]
    train["limit"] = one(tp._train_rate, "limit", "limit")
    limit = train["limit"]
    epochs = opts.epochs
    if epochs is None:  # about --fit-seconds at the limit's pace
        rate = limit.get("steps_per_s", 0.0)
        per_epoch = epoch_steps(lengths, args.batch)
        epochs = int(min(1000, max(1, round(opts.fit_seconds * rate / per_epoch))))
    # float32 explicitly where the parameter exists (versions before issue 27's end
    # resolved "auto" to bf16 on a GPU)
    fp32 = {"precision": "32"} if opts.bf16 else {}
    train["fit e2e"] = one(tp._train_rate, "seqae fit e2e", "fit e2e", epochs=epochs, **fp32)
    if opts.bf16:
        train["fit e2e bf16"] = one(tp._train_rate, "seqae fit e2e", "fit e2e bf16",
                                    epochs=epochs, precision="bf16")
    else:
        train["fit e2e bf16"] = {"available": False, "note": NOT_AVAILABLE}
        print(f"  {'fit e2e bf16':<14} {NOT_AVAILABLE} (SequenceAutoencoder has no "
              "precision parameter)", flush=True)
    if has_read_every():
        train["fit e2e read 1"] = one(tp._train_rate, "seqae fit e2e", "fit e2e read 1",
                                      epochs=epochs, read_every=1, **fp32)
    train["naive"] = one(tp._train_rate, "naive", "naive")
    if settings.get("keras"):
        try:
            import keras  # noqa: F401
        except ImportError:
            train["keras"] = {"available": False, "note": "keras is not installed"}
        else:
            train["keras"] = one(tp._peer_rate, "keras (seed 000)", "keras")
    for m in ENCODE:
        out["encode"][m] = one(tp._encode_rate, m, m)
    ratios(out)
    return out


def ratios(out: dict) -> None:
    """Add x_limit (valid steps/s over (a)'s) and mem_x_limit (peak memory over (a)'s) to
    every measured result; x_fp32 to bf16, x_padded to encode."""
    limit = out["train"]["limit"]
    if "steps_per_s" not in limit:
        return
    results = [*out["train"].values(), *out["encode"].values()]
    for r in results:
        if "steps_per_s" in r:
            r["x_limit"] = r["steps_per_s"] / limit["steps_per_s"]
            r["peak_mb"] = peak(r)
            r["peak_kind"] = "gpu allocated" if r.get("gpu_peak_mb") is not None else "rss"
            r["mem_x_limit"] = r["peak_mb"] / peak(limit)
    fp32 = out["train"]["fit e2e"]
    for other in ("fit e2e bf16", "fit e2e read 1"):
        r = out["train"].get(other) or {}
        if "steps_per_s" in fp32 and "steps_per_s" in r:
            r["x_fp32"] = r["steps_per_s"] / fp32["steps_per_s"]
    keras = out["train"].get("keras") or {}
    if "steps_per_s" in fp32 and "steps_per_s" in keras:
        fp32["x_keras"] = fp32["steps_per_s"] / keras["steps_per_s"]
    padded = out["encode"]["naive encode"]
    if "steps_per_s" in padded:
        for r in out["encode"].values():
            if "steps_per_s" in r:
                r["x_padded"] = r["steps_per_s"] / padded["steps_per_s"]


def table(results: dict) -> list[str]:
    """The Markdown table of every recipe's figures."""
    rows = ["| recipe | method | valid steps/s | x limit | peak memory MB | x limit | notes |",
            "|---|---|---:|---:|---:|---:|---|"]
    for name, out in results.items():
        for label, r in [*out["train"].items(), *out["encode"].items()]:
            if "steps_per_s" not in r:
                rows.append(f"| {name} | {label} | - | - | - | - | "
                            f"{r.get('note') or r.get('skipped', '')} |")
                continue
            notes = []
            if label.startswith("fit e2e"):
                notes.append(f"{r['epochs']} epochs, {r['elapsed']:.1f} s wall "
                             f"({r['train_s']:.1f} s training)")
            if label.startswith("fit e2e "):
                label = label.replace("fit e2e ", "fit e2e, ")
            if "x_fp32" in r:
                notes.append(f"{r['x_fp32']:.2f} x fit e2e")
            if "x_keras" in r:
                notes.append(f"{r['x_keras']:.0f} x keras")
            if "x_padded" in r and label != "naive encode":
                notes.append(f"{r['x_padded']:.2f} x padded encode")
            mem = f"{r['peak_mb']:,.0f}" + ("" if r["peak_kind"] == "gpu allocated" else " (RSS)")
            rows.append(f"| {name} | {label} | {r['steps_per_s']:,.0f} | {r['x_limit']:.2f} | "
                        f"{mem} | {r['mem_x_limit']:.2f} | {'; '.join(notes)} |")
    return rows


def goals(results: dict, bf16: bool) -> dict:
    """Issue 27's goals: fit end to end >= 0.9 x the limit; bf16 >= 1.5 x fp32."""
    out = {}
    for name, r in results.items():
        fit, half = r["train"]["fit e2e"], r["train"]["fit e2e bf16"]
        e2e = fit.get("x_limit")
        out[name] = {
            "fit_e2e_x_limit": e2e,
            "fit_e2e_ge_0.9": None if e2e is None else bool(e2e >= 0.9),
            "bf16_x_fp32": half.get("x_fp32"),
            "bf16_ge_1.5": (None if "x_fp32" not in half else bool(half["x_fp32"] >= 1.5)),
            "fit_e2e_x_keras": fit.get("x_keras"),
            "fit_e2e_ge_100x_keras": (None if "x_keras" not in fit
                                      else bool(fit["x_keras"] >= 100)),
        }
        if not bf16:
            out[name]["bf16_ge_1.5"] = NOT_AVAILABLE
    return out


def environment(device: str) -> dict:
    import torch

    import seqae

    env = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
           "cpu": platform.processor() or platform.machine(), "seqae": seqae.__file__,
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.startswith("cuda"):
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="timed seconds of (a) and (b) (default 10)")
    ap.add_argument("--fit-seconds", type=float, default=10.0,
                    help="size (c) and (d) to last about this long at the limit's pace")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs of (c) and (d) (default: from --fit-seconds)")
    ap.add_argument("--recipes", default=",".join(RECIPES),
                    help=f"comma-separated, of: {', '.join(RECIPES)}")
    ap.add_argument("--budget", type=float, default=420.0,
                    help="methods that would start after this many seconds are skipped "
                    "(default 420: the run stays under 8 minutes)")
    ap.add_argument("--inline", action="store_true",
                    help="run every method in this process (no start-up per method)")
    ap.add_argument("--tiny", action="store_true",
                    help="a tiny version on the CPU, in seconds (CI)")
    ap.add_argument("--json", default=None, help="write the results here (after each recipe)")
    opts = ap.parse_args(argv)
    t0 = time.perf_counter()
    names = [s.strip() for s in opts.recipes.split(",") if s.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        ap.error(f"unknown recipes {unknown}; choose from {list(RECIPES)}")
    recipes = {n: dict(RECIPES[n]) for n in names}
    if opts.tiny:
        import torch

        opts.device, opts.inline = "cpu", True
        torch.set_num_threads(1)  # small ops: a second thread only adds wake-ups
        opts.seconds = min(opts.seconds, 0.3)
        opts.epochs = opts.epochs or 1
        for s in recipes.values():
            s.update(TINY_CONV if s["encoder"] == "conv" else TINY)
    elif opts.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            ap.error(f"torch {torch.__version__} sees no GPU (use --tiny or --device cpu)")
    opts.bf16 = has_precision()
    env = environment(opts.device)
    print(f"# seqae GPU throughput  device={opts.device}"
          + (f" ({env['gpu']}, CUDA {env['cuda']}, cuDNN {env['cudnn']})" if "gpu" in env
             else "")
          + f"  torch={env['torch']}  python={env['python']}  seqae={env['seqae']}")
    print(f"# (a) and (b) {opts.seconds:g} s timed each; (c) sized to "
          + (f"{opts.epochs} epochs" if opts.epochs else f"~{opts.fit_seconds:g} s at the limit")
          + f"; bf16: {'yes' if opts.bf16 else NOT_AVAILABLE}", flush=True)
    record: dict = {"environment": env, "tiny": opts.tiny, "seconds": opts.seconds,
                    "fit_seconds": opts.fit_seconds, "precision_parameter": opts.bf16,
                    "command": " ".join(sys.argv), "recipes": {}}

    def save() -> None:
        record["wall_s"] = time.perf_counter() - t0
        if opts.json:
            with open(opts.json, "w") as f:
                json.dump(record, f, indent=2)

    for name, settings in recipes.items():
        record["recipes"][name] = measure(name, settings, opts, t0)
        save()
    record["goals"] = goals(record["recipes"], opts.bf16)
    save()
    print()
    print("\n".join(table(record["recipes"])))
    print("\n# issue 27's goals: `fit` end to end >= 0.9 x the limit; bf16 >= 1.5 x fp32")
    for name, g in record["goals"].items():
        e2e = g["fit_e2e_x_limit"]
        half = (f"{g['bf16_x_fp32']:.2f} x fp32" if g["bf16_x_fp32"] is not None
                else "bf16 " + (NOT_AVAILABLE if not opts.bf16 else "not measured"))
        print(f"#   {name}: fit e2e "
              + ("not measured" if e2e is None else
                 f"{e2e:.2f} x limit ({'met' if e2e >= 0.9 else 'not met'})")
              + f"; {half}")
    print(f"# whole run {record['wall_s']:.0f} s" + (f"; written to {opts.json}"
                                                    if opts.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
