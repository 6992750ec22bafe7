"""Training throughput: valid time steps per second, and ratios to the limit.

The same LSTM autoencoder (seqae's AutoencoderNet: 1 layer, unidirectional encoder,
repeat decoder) is trained on the same ragged data (log-normal lengths, mean ~100,
max 1000) fed in different ways, each in its own process, side by side in one run:

  limit         the same number of valid steps as fixed-length sequences (no padding)
  seqae fit     SequenceAutoencoder.fit: length-sorted buckets + gather (the library),
                training time only (the epochs' own clock)
  seqae fit e2e the wall time of a whole `fit` call of --epochs epochs (default 3): data
                preparation, training and the post-training pass (length head, scores)
  sorted count  equal-count batches of length-sorted sequences + gather
  naive         every batch padded to the longest sequence of the data set (seed 000)
  packed        pack_padded_sequence on random batches
  batch 1       one sequence per step
  --peers       the Keras 3 recipe of seed 000 and sequitur's LSTM_AE, if installed

Each method trains for --seconds (after one warm-up step) and reports valid steps/s,
its ratio to the limit, the peak resident memory of its process and, on a GPU, the peak
GPU memory allocated (``torch.cuda.max_memory_allocated``, from after the warm-up);
methods run interleaved --repeats times and the median run is reported. Inference
(`encode`) is measured the same way against padding to the longest.
benchmarks/gpu.py runs these functions for the GRU, LSTM and conv recipes on a GPU.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/throughput.py [--device cuda] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time

import numpy as np


def make_lengths(n: int, seed: int = 0, mean: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sigma = 0.8
    mu = np.log(mean) - sigma**2 / 2  # mean ~mean
    return np.clip(rng.lognormal(mu, sigma, n).astype(int), 2, 10 * mean)


def make_data(n: int, features: int, seed: int = 0, mean: int = 100):
    from seqae import Sequences

    lengths = make_lengths(n, seed, mean)
    rng = np.random.default_rng(seed + 1)
    values = rng.normal(size=(int(lengths.sum()), features)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return Sequences(values, offsets)


def _recipe(encoder: str, hidden: int) -> dict:
    """What SequenceAutoencoder's "auto" settings resolve to with this encoder and width
    (the conv embedding is ``hidden`` wide)."""
    from seqae import SequenceAutoencoder
    from seqae.recipe import resolve

    p = SequenceAutoencoder(encoder=encoder, hidden_size=hidden).get_params()
    m = resolve(p, np.array([1]), 1, 1, {"vocab_size": 0}).model
    return {k: getattr(m, k) for k in ("encoder", "pooling", "contrastive", "contrast",
                                       "latent_dim", "patch")}


def _gpu_reset(device) -> None:
    """Wait for the GPU's queued work and restart its peak-memory count (no-op on a CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _memory(device) -> dict:
    """The process's peak RSS, and on a GPU the peak memory allocated since `_gpu_reset`
    (None on a CPU). Waits for the GPU's queued work first."""
    import torch

    gpu = None
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        gpu = torch.cuda.max_memory_allocated(device) / 2**20
    return {"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "gpu_peak_mb": gpu}


def _precision(args) -> dict:
    """``precision=`` for SequenceAutoencoder when --precision is given (later versions);
    ``args.read_every`` (benchmarks/gpu.py) sets the steps between reads of the losses
    from a GPU (`seqae.train.READ_EVERY`) in this process."""
    every = getattr(args, "read_every", None)
    if every is not None:
        import seqae.train

        seqae.train.READ_EVERY = every
    p = getattr(args, "precision", None)
    return {} if p is None else {"precision": p}


def _model(features: int, hidden: int, device, cell: str, encoder: str, max_len: int):
    # The architecture SequenceAutoencoder(bidirectional=False) builds, so that every
    # way of feeding the data trains the same model as `seqae fit`.
    from seqae import SequenceAutoencoder
    from seqae.nn import AutoencoderNet
    from seqae.recipe import resolve

    est = SequenceAutoencoder(hidden_size=hidden, cell=cell, bidirectional=False,
                              encoder=encoder)
    cfg = resolve(est.get_params(), np.array([1]), max_len, features, {"vocab_size": 0}).model
    return AutoencoderNet(cfg).to(device)


class PackedAE:
    """The same architecture run through pack_padded_sequence (encoder and decoder)."""

    def __init__(self, net):
        self.net = net

    def __call__(self, x, lengths):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        net = self.net
        enc = net.encoder.body.rnn
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = enc(packed)
        h = h[0] if isinstance(h, tuple) else h  # an LSTM's (h, c), a GRU's h
        z = net.encoder.to_latent(h[-1])
        dec = net.decoder
        inp = dec.step_inputs(z, lengths, x.shape[1])
        packed_in = pack_padded_sequence(inp, lengths.cpu(), batch_first=True,
                                         enforce_sorted=False)
        out, _ = dec.rnn(packed_in, dec.initial_state(z))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return dec.head(out), z


def _train_rate(method: str, args, q) -> None:
    import torch

    from seqae.batching import LengthBucketSampler, collate, sorted_batches
    from seqae.losses import masked_mse
    from seqae.sources import DeviceData

    torch.manual_seed(0)
    device = torch.device(args.device)
    seqs = make_data(args.n, args.features, mean=args.mean_length)
    if method == "limit":
        from seqae import Sequences

        t = int(round(seqs.lengths.mean()))
        n = seqs.n_steps // t
        rng = np.random.default_rng(2)
        seqs = Sequences(rng.normal(size=(n * t, args.features)).astype(np.float32),
                         np.arange(n + 1) * t)
    if method == "seqae fit e2e":  # what the user waits for: the whole call
        from seqae import SequenceAutoencoder

        ae = SequenceAutoencoder(hidden_size=args.hidden, cell=args.cell,
                                 bidirectional=False, **_recipe(args.encoder, args.hidden),
                                 batch_size=args.batch, max_epochs=args.epochs,
                                 patience=10_000, validation_fraction=0, device=args.device,
                                 verbose=0, **_precision(args))
        ae.set_params(max_epochs=1).fit(seqs.take(np.arange(min(64, len(seqs)))))  # warm-up
        ae.set_params(max_epochs=args.epochs)
        _gpu_reset(device)
        start = time.perf_counter()
        ae.fit(seqs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        steps = sum(r["steps"] for r in ae.history_)
        q.put({"method": method, "steps_per_s": steps / elapsed, "elapsed": elapsed,
               "train_s": ae.history_[-1]["time"], "epochs": len(ae.history_),
               **_memory(device)})
        return
    if method == "seqae fit":
        from seqae import SequenceAutoencoder

        ae = SequenceAutoencoder(hidden_size=args.hidden, cell=args.cell,
                                 bidirectional=False, **_recipe(args.encoder, args.hidden),
                                 batch_size=args.batch, max_time=args.seconds,
                                 max_epochs=10_000, patience=10_000, validation_fraction=0,
                                 device=args.device, verbose=0, **_precision(args))
        ae.set_params(max_epochs=1).fit(seqs.take(np.arange(min(64, len(seqs)))))  # warm-up
        _gpu_reset(device)
        ae.set_params(max_epochs=10_000).fit(seqs)
        steps = sum(r["steps"] for r in ae.history_)  # valid steps trained, partial epoch too
        elapsed = ae.history_[-1]["time"]  # training time only (no validation, no scoring)
        q.put({"method": method, "steps_per_s": steps / elapsed, "elapsed": elapsed,
               **_memory(device)})
        return
    net = _model(args.features, args.hidden, device, args.cell, args.encoder,
                 int(make_lengths(args.n, mean=args.mean_length).max()))
    fwd = PackedAE(net) if method == "packed" else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    data = DeviceData(seqs, device)
    rng = np.random.default_rng(0)
    global_max = int(seqs.lengths.max())

    def batches():
        while True:
            if method in ("naive", "packed", "batch 1"):
                perm = rng.permutation(len(seqs))
                size = 1 if method == "batch 1" else args.batch
                yield from (perm[i : i + size] for i in range(0, len(perm), size))
            elif method == "sorted count":
                bs = sorted_batches(seqs.lengths, args.batch, "count", rng=rng)
                yield from (bs[i] for i in rng.permutation(len(bs)))
            else:  # limit: fixed length, equal counts
                sampler = LengthBucketSampler(seqs.lengths, args.batch, "count",
                                              seed=int(rng.integers(1 << 30)))
                yield from sampler

    def step(idx):
        # the padded length and the step count come from the lengths on the host, so
        # that on a GPU the loop itself never waits for the device (collate's default,
        # the longest in the batch, would read it back)
        lengths = seqs.lengths[idx]
        idx_t = torch.as_tensor(idx, device=device)
        x, lens = collate(data.values, data.offsets, idx_t,
                          global_max if method == "naive" else int(lengths.max()))
        if method == "packed":
            recon, z = fwd(x, lens)
            loss = masked_mse(recon, x, lens)
        else:  # the model's own training loss (the crop term too, when it has one)
            loss, _, _ = net.loss(x, lens, masked_mse)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return int(lengths.sum())

    it = batches()
    step(next(it))  # warm-up
    _gpu_reset(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        steps += step(next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    q.put({"method": method, "steps_per_s": steps / elapsed, "elapsed": elapsed,
           **_memory(device)})


def _peer_rate(method: str, args, q) -> None:
    """Optional peers, same data and model size: the Keras 3 recipe of seed 000
    (Masking + LSTM + RepeatVector + LSTM, padded to the longest, KERAS_BACKEND=torch)
    and the `sequitur` package's LSTM_AE (one sequence per step, its own recipe)."""
    import os

    os.environ["KERAS_BACKEND"] = "torch"
    seqs = make_data(args.n, args.features, mean=args.mean_length)
    steps = 0
    if method == "keras (seed 000)":
        import keras

        x, lens = seqs.pad(value=0.0)
        t_max = x.shape[1]
        inp = keras.Input(shape=(t_max, args.features))
        h = keras.layers.Masking(mask_value=0.0)(inp)
        h = keras.layers.LSTM(args.hidden)(h)
        h = keras.layers.Dense(32)(h)
        h = keras.layers.RepeatVector(t_max)(h)
        h = keras.layers.LSTM(args.hidden, return_sequences=True)(h)
        out = keras.layers.TimeDistributed(keras.layers.Dense(args.features))(h)
        model = keras.Model(inp, out)
        model.compile(optimizer="adam", loss="mse")
        rng = np.random.default_rng(0)
        model.train_on_batch(x[:args.batch], x[:args.batch])  # warm-up
        start = time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            idx = rng.choice(len(x), args.batch, replace=False)
            model.train_on_batch(x[idx], x[idx])
            steps += int(lens[idx].sum())
    else:  # sequitur
        import torch
        from sequitur.models import LSTM_AE

        model = LSTM_AE(args.features, 32, h_dims=[args.hidden])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.MSELoss(reduction="sum")  # sequitur's quick_train loss
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            s = torch.from_numpy(seqs[int(rng.integers(len(seqs)))])
            opt.zero_grad()
            loss = loss_fn(model(s), s)
            loss.backward()
            opt.step()
            steps += len(s)
    elapsed = time.perf_counter() - start
    q.put({"method": method, "steps_per_s": steps / elapsed, "elapsed": elapsed,
           "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _encode_rate(method: str, args, q) -> None:
    import torch

    from seqae import SequenceAutoencoder

    seqs = make_data(args.n, args.features, mean=args.mean_length)
    ae = SequenceAutoencoder(hidden_size=args.hidden, cell=args.cell,
                             bidirectional=False, max_epochs=1, validation_fraction=0,
                             device=args.device, verbose=0, **_recipe(args.encoder, args.hidden),
                             **_precision(args))
    ae.fit(seqs.take(np.arange(min(64, len(seqs)))))
    device = next(ae.module_.parameters()).device
    if method == "seqae encode":
        ae.encode(seqs.take(np.arange(min(64, len(seqs)))))
        _gpu_reset(device)
        start = time.perf_counter()
        ae.encode(seqs)
    else:  # pad everything to the longest, batches of 256
        x, lens = seqs.pad()
        xt, lt = torch.from_numpy(x), torch.from_numpy(lens)
        with torch.no_grad():
            ae.module_.encode(xt[:256].to(device), lt[:256])  # warm-up
            _gpu_reset(device)
            start = time.perf_counter()
            for i in range(0, len(seqs), 256):
                ae.module_.encode(xt[i : i + 256].to(device), lt[i : i + 256])
    mem = _memory(device)  # waits for the GPU's queued work
    elapsed = time.perf_counter() - start
    q.put({"method": method, "steps_per_s": seqs.n_steps / elapsed, "elapsed": elapsed,
           **mem})


PEERS = ("keras (seed 000)", "sequitur")


def _run(target, method, args):
    """``target(method, args, queue)`` in a fresh process; its result. A process that
    ends without one (an exception, killed for memory) raises instead of waiting forever."""
    import queue

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(method, args, q))
    p.start()
    while True:
        try:
            out = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive():
                try:  # it may have put its result just before ending
                    out = q.get(timeout=1.0)
                    break
                except queue.Empty:
                    raise RuntimeError(f"{method!r} ended without a result (exit code "
                                       f"{p.exitcode}); its error is printed above") from None
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--n", type=int, default=2000, help="sequences")
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--mean-length", type=int, default=100,
                    help="mean of the log-normal lengths (capped at 10x)")
    ap.add_argument("--cell", default="gru", help="seqae's RNN cell (default: the library's)")
    ap.add_argument("--encoder", choices=["rnn", "conv"], default="rnn",
                    help="rnn: the GRU recipe; conv: dilated convolutions, max pooling and "
                    "the crop term (what encoder='auto' picks for long sequences)")
    ap.add_argument("--hidden", type=int, default=None, help="default 64 on CPU, 256 on GPU")
    ap.add_argument("--batch", type=int, default=None, help="default 32 on CPU, 128 on GPU")
    ap.add_argument("--methods",
                    default="limit,seqae fit,seqae fit e2e,sorted count,naive,packed,batch 1")
    ap.add_argument("--epochs", type=int, default=3,
                    help="epochs of the end-to-end `fit` call (seqae fit e2e)")
    ap.add_argument("--peers", action="store_true",
                    help="also run the Keras 3 recipe and sequitur's LSTM_AE if installed")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method (median kept)")
    ap.add_argument("--precision", default=None,
                    help="passed to SequenceAutoencoder as precision= (versions that have it)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    args.hidden = args.hidden or (256 if gpu else 64)
    args.batch = args.batch or (128 if gpu else 32)
    lengths = make_lengths(args.n, mean=args.mean_length)
    import torch

    print(f"# seqae throughput  device={args.device}  torch={torch.__version__}  "
          f"threads={torch.get_num_threads()}  python={platform.python_version()}  "
          f"cpu={platform.processor() or platform.machine()}")
    print(f"# data: {args.n} sequences x {args.features} features, lengths mean "
          f"{lengths.mean():.1f}, median {np.median(lengths):.0f}, max {lengths.max()}, "
          f"{lengths.sum()} valid steps; encoder {args.encoder} "
          f"({args.cell.upper() if args.encoder == 'rnn' else 'dilated conv'}) hidden "
          f"{args.hidden}, "
          f"batch {args.batch}, "
          f"{args.seconds:.0f}s per method")
    methods = [s.strip() for s in args.methods.split(",")]
    if args.peers:
        import importlib.util

        methods += [p for p, mod in zip(PEERS, ("keras", "sequitur"), strict=True)
                    if importlib.util.find_spec(mod) is not None]
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for rep in range(args.repeats):  # interleaved, so machine load hits every method alike
        for m in methods:
            r = _run(_peer_rate if m in PEERS else _train_rate, m, args)
            runs[m].append(r)
            gpu_mem = (f", GPU {r['gpu_peak_mb']:.0f} MB" if r.get("gpu_peak_mb") is not None
                       else "")
            print(f"  [{rep + 1}/{args.repeats}] {m:<14} {r['steps_per_s']:>10.0f} valid "
                  f"steps/s   peak mem {r['maxrss_mb']:.0f} MB{gpu_mem}", flush=True)
    results = []
    for m in methods:  # the median run of each method
        ordered = sorted(runs[m], key=lambda r: r["steps_per_s"])
        results.append(ordered[len(ordered) // 2])
    limit = next((r["steps_per_s"] for r in results if r["method"] == "limit"), None)
    naive = next((r["steps_per_s"] for r in results if r["method"] == "naive"), None)
    print("\n| way of feeding the data | valid steps/s | x limit | x naive | peak memory MB |"
          + (" peak GPU MB |" if gpu else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|" if gpu else ""))
    for r in results:
        xl = f"{r['steps_per_s'] / limit:.2f}" if limit else "-"
        xn = f"{r['steps_per_s'] / naive:.2f}" if naive else "-"
        g = r.get("gpu_peak_mb")
        print(f"| {r['method']} | {r['steps_per_s']:.0f} | {xl} | {xn} | {r['maxrss_mb']:.0f} |"
              + (f" {g:.0f} |" if gpu and g is not None else " - |" if gpu else ""))
        if r["method"] == "seqae fit e2e":
            print(f"|  (the {args.epochs}-epoch call took {r['elapsed']:.1f} s wall, "
                  f"{r['train_s']:.1f} s of it training) | | | | |")
    enc = [_run(_encode_rate, m, args) for m in ("seqae encode", "naive encode")]
    print("\n| inference | valid steps/s | x naive |")
    print("|---|---:|---:|")
    for r in enc:
        print(f"| {r['method']} | {r['steps_per_s']:.0f} | "
              f"{r['steps_per_s'] / enc[1]['steps_per_s']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"train": results, "runs": runs, "encode": enc, "args": vars(args)}, f,
                      indent=2)


if __name__ == "__main__":
    sys.exit(main())
