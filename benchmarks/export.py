"""Latency of an exported encoder: ONNX Runtime, TorchScript and the Python model, CPU.

One model (the recipe `SequenceAutoencoder`'s defaults pick for these lengths: a
bidirectional GRU, hidden 64, latent 32; --encoder conv for the convolutional one) is
fitted for one epoch (its weights do not change the cost) on data whose lengths are those
of benchmarks/throughput.py (log-normal, mean ~100, at most 10 x that), and its encoder
exported to ONNX and TorchScript. Then, in the same process and on the same sequences,
each way of running it embeds

  one sequence    a sequence drawn from the data, --repeats times (a new one each time)
  a batch of 64   64 sequences drawn from the data, padded to their longest

and reports the latency's median and 99th percentile. The ways:

  onnxruntime     an InferenceSession of the .onnx file (numpy in, numpy out)
  torchscript     torch.jit.load of the .pt file, under torch.inference_mode
  python graph    the same graph as a Python module (EncoderGraph), no export
  ae.encode       SequenceAutoencoder.encode on Sequences: what a Python user calls

All on --threads CPU threads (torch and onnxruntime alike). "load + first run" is the
time from reading the file to the first embedding of one sequence.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/export.py [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's seqae; benchmarks/ modules
from throughput import make_lengths  # noqa: E402


def _percentiles(times: list[float]) -> dict:
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "runs": len(times)}


def _pad(batch: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in batch], np.int64)
    x = np.zeros((len(batch), lengths.max(), batch[0].shape[1]), np.float32)
    for i, s in enumerate(batch):
        x[i, : len(s)] = s
    return x, lengths


def run(args) -> dict:
    import onnxruntime as ort
    import torch

    import seqae
    from seqae.export import graph_of

    torch.set_num_threads(args.threads)
    lengths = make_lengths(args.n, mean=args.mean_length)
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(k, args.features)).astype(np.float32) for k in lengths]
    ae = seqae.SequenceAutoencoder(encoder=args.encoder, max_epochs=1, verbose=0,
                                   threads=args.threads, device="cpu", seed=0)
    ae.fit(seqae.Sequences.from_list(seqs[: args.fit_n]))
    folder = Path(tempfile.mkdtemp(prefix="seqae-export-bench-"))
    onnx_path = ae.export(folder / "encoder.onnx")
    pt_path = ae.export(folder / "encoder.pt")

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = args.threads
    start = time.perf_counter()
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    x1, l1 = _pad([seqs[0]])
    session.run(None, {"x": x1, "lengths": l1})
    load = {"onnxruntime": time.perf_counter() - start}
    start = time.perf_counter()
    module = torch.jit.load(str(pt_path))
    with torch.inference_mode():
        module(torch.from_numpy(x1), torch.from_numpy(l1))
    load["torchscript"] = time.perf_counter() - start
    graph = graph_of(ae._fitted(), "encoder")

    def onnx_fn(x, lens):
        return session.run(None, {"x": x, "lengths": lens})[0]

    def ts_fn(x, lens):
        with torch.inference_mode():
            return module(torch.from_numpy(x), torch.from_numpy(lens)).numpy()

    def graph_fn(x, lens):
        with torch.inference_mode():
            return graph(torch.from_numpy(x), torch.from_numpy(lens)).numpy()

    def encode_fn(batch):
        return ae.encode(seqae.Sequences.from_list(batch))

    ways = {"onnxruntime": onnx_fn, "torchscript": ts_fn, "python graph": graph_fn}
    pick = np.random.default_rng(1)
    cases = {"one sequence": [[seqs[i]] for i in pick.integers(0, len(seqs), args.repeats)],
             "batch of 64": [[seqs[i] for i in pick.choice(len(seqs), 64, replace=False)]
                             for _ in range(args.batch_repeats)]}
    results: dict = {}
    for case, batches in cases.items():
        padded = [_pad(b) for b in batches]
        times: dict[str, list[float]] = {w: [] for w in [*ways, "ae.encode"]}
        for fn in ways.values():  # warm-up runs (TorchScript profiles its first ones)
            fn(*padded[0])
            fn(*padded[0])
        encode_fn(batches[0])
        check = {w: fn(*padded[0]) for w, fn in ways.items()}
        for (x, lens), batch in zip(padded, batches, strict=True):
            for w, fn in ways.items():  # interleaved: a slow moment hits every way alike
                start = time.perf_counter()
                fn(x, lens)
                times[w].append(time.perf_counter() - start)
            start = time.perf_counter()
            encode_fn(batch)
            times["ae.encode"].append(time.perf_counter() - start)
        want = encode_fn(batches[0])
        results[case] = {w: {**_percentiles(t), "max_abs_diff": (
            None if w == "ae.encode" else float(np.abs(check[w] - want).max()))}
            for w, t in times.items()}
    one = results["one sequence"]
    goals = {"onnx_one_sequence_x_python": one["ae.encode"]["p50_ms"]
             / one["onnxruntime"]["p50_ms"],
             "onnx_load_and_first_run_s": load["onnxruntime"],
             "torchscript_load_and_first_run_s": load["torchscript"]}
    return {
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "onnxruntime": ort.__version__, "machine": platform.machine(),
                        "cpu_count": os.cpu_count(), "threads": args.threads,
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                        "seqae": str(Path(seqae.__file__).parent)},
        "data": {"n": args.n, "features": args.features, "mean_length": float(lengths.mean()),
                 "median_length": float(np.median(lengths)), "max_length": int(lengths.max())},
        "model": {k: getattr(ae.model_config_, k) for k in ("encoder", "cell", "bidirectional",
                                                            "hidden_size", "latent_dim",
                                                            "patch")},
        "file_bytes": {"onnx": onnx_path.stat().st_size, "torchscript": pt_path.stat().st_size},
        "load_and_first_run_s": load,
        "latency": results,
        "goals": goals,
        "tiny": args.tiny,
    }


def table(result: dict) -> str:
    rows = ["| case | way | p50 ms | p99 ms | runs | max abs diff to ae.encode |",
            "|---|---|---:|---:|---:|---:|"]
    for case, ways in result["latency"].items():
        for w, r in ways.items():
            diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
            rows.append(f"| {case} | {w} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                        f"{r['runs']} | {diff} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="sequences drawn from")
    p.add_argument("--fit-n", type=int, default=256, help="sequences the model is fitted on")
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--mean-length", type=int, default=100)
    p.add_argument("--encoder", default="auto", help="auto (default), rnn or conv")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=500, help="single sequences timed")
    p.add_argument("--batch-repeats", type=int, default=100, help="batches of 64 timed")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument("--tiny", action="store_true", help="a few seconds' smoke run")
    args = p.parse_args(argv)
    if args.tiny:
        args.n, args.fit_n, args.mean_length = 80, 16, 20
        args.repeats, args.batch_repeats = 5, 2
    result = run(args)
    env, data = result["environment"], result["data"]
    print(f"# torch {env['torch']}, onnxruntime {env['onnxruntime']}, {env['threads']} "
          f"thread(s) of {env['cpu_count']}, OMP_WAIT_POLICY={env['omp_wait_policy']}; "
          f"model {result['model']}; lengths mean {data['mean_length']:.1f}, median "
          f"{data['median_length']:.0f}, max {data['max_length']}")
    print(table(result))
    load = result["load_and_first_run_s"]
    speedup = result["goals"]["onnx_one_sequence_x_python"]
    print(f"load + first run: onnxruntime {load['onnxruntime']:.3f} s, torchscript "
          f"{load['torchscript']:.3f} s; ONNX one sequence {speedup:.2f} x faster than "
          "ae.encode (median)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
