"""The golden cases: fixed-seed fits on the CPU whose weights and outputs must not move.

Each case fits a small model and returns a dict of named numpy arrays: the weights
(``w/<name>``), the embeddings, scores, reconstructions and decodings, the training
scores and the threshold. `tests/test_golden.py` compares them with the stored ones;
``python tests/golden/cases.py --write`` (from the repository root) stores them anew,
which a commit does only when it names a deliberate change of results and its reason.

Small on purpose (a few seconds each): what matters is that every code path the
redesign moves is on one of them: the GRU and convolutional recipes, texts, windows of
over-long sequences, a streamed Parquet folder and gradient accumulation.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

import seqae

HERE = Path(__file__).parent
STORE = HERE / "golden.safetensors"
META = HERE / "golden.json"
SMALL = dict(hidden_size=16, max_epochs=2, batch_size=8, threads=1, verbose=0, seed=3,
             device="cpu")


def _demo(n: int = 40, seed: int = 0) -> seqae.Sequences:
    seqs, _, _ = seqae.datasets.make_demo(n=n, seed=seed)
    return seqs


def _outputs(ae, seqs, tokens: bool = False) -> dict[str, np.ndarray]:
    out = {f"w/{k}": v.detach().cpu().numpy() for k, v in ae.module_.state_dict().items()}
    z = ae.encode(seqs)
    out["encode"] = z
    out["score"] = np.asarray(ae.score(seqs))
    rec = ae.reconstruct(seqs)
    if isinstance(rec, list):  # texts
        out["reconstruct"] = np.frombuffer("\n".join(rec).encode(), dtype=np.uint8)
    else:
        out["reconstruct"] = rec.values
        out["reconstruct_offsets"] = rec.offsets
    dec = ae.decode(z[:4], lengths=[5, 1, 9, 3])
    out["decode_fixed"] = dec.values
    free = ae.decode(z[:4])
    out["decode_free"] = free.values
    out["decode_free_offsets"] = free.offsets
    out["train_scores"] = np.asarray(ae.train_scores_)
    out["threshold"] = np.asarray([ae.threshold_])
    out["train_loss"] = np.asarray([r["train_loss"] for r in ae.history_])
    return out


def gru() -> dict[str, np.ndarray]:
    seqs = _demo()
    ae = seqae.SequenceAutoencoder(**SMALL).fit(seqs)
    assert ae.model_config_.encoder == "rnn"
    return _outputs(ae, seqs)


def conv() -> dict[str, np.ndarray]:
    seqs = _demo()
    ae = seqae.SequenceAutoencoder(encoder="conv", **SMALL).fit(seqs)
    return _outputs(ae, seqs)


WORDS = ["cat", "dog", "bird", "a", "zebra", "at", "tac", "god", "do", "go", "cab", "dab",
         "horse", "mouse", "owl", "eel", "yak", "gnu", "emu", "ant"]


def texts() -> dict[str, np.ndarray]:
    ae = seqae.SequenceAutoencoder(decoder="autoregressive", **SMALL).fit(WORDS)
    return _outputs(ae, WORDS, tokens=True)


def windows() -> dict[str, np.ndarray]:
    seqs = _demo(n=24)
    ae = seqae.SequenceAutoencoder(max_len=16, max_len_policy="window", **SMALL).fit(seqs)
    return _outputs(ae, seqs)


def stream(tmp: Path) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    seqs = _demo(n=60, seed=1)
    rows = {"id": [], "t": [], "a": [], "b": []}
    for i, s in enumerate(seqs):
        rows["id"] += [f"s{i:03d}"] * len(s)
        rows["t"] += list(range(len(s)))
        rows["a"] += s[:, 0].tolist()
        rows["b"] += s[:, 1 % s.shape[1]].tolist()
    table = pa.table({"id": rows["id"], "t": rows["t"],
                      "a": pa.array(rows["a"], pa.float32()),
                      "b": pa.array(rows["b"], pa.float32())})
    folder = tmp / "folder"
    folder.mkdir()
    half = int(seqs.offsets[len(seqs) // 2])  # a sequence lies in one file
    pq.write_table(table.slice(0, half), folder / "part-0.parquet", row_group_size=300)
    pq.write_table(table.slice(half), folder / "part-1.parquet", row_group_size=300)
    source = seqae.stream.ParquetSource(folder, id_col="id", time_col="t", window=2000)
    ae = seqae.SequenceAutoencoder(validation_fraction=0.2, **SMALL).fit(source)
    whole = seqae.Sequences.concat([s for s, _ in source.windows()])
    out = _outputs(ae, whole)
    out["encode_source"] = ae.encode(source)
    out["score_source"] = ae.score(source)
    return out


def accumulate() -> dict[str, np.ndarray]:
    seqs = _demo()
    ae = seqae.SequenceAutoencoder(accumulate=2, **SMALL).fit(seqs)
    return _outputs(ae, seqs)


CASES = {"gru": gru, "conv": conv, "texts": texts, "windows": windows, "stream": stream,
         "accumulate": accumulate}


def run(name: str, tmp: Path) -> dict[str, np.ndarray]:
    fn = CASES[name]
    return fn(tmp) if name == "stream" else fn()


def platform_key() -> dict[str, str]:
    """What bit-for-bit equality depends on besides the code: torch's version and the
    CPU kernels it picks."""
    return {"torch": torch.__version__.split("+")[0],
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine()}


def digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def write() -> None:
    import tempfile

    from safetensors.numpy import save_file

    tensors, digests = {}, {}
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            out = run(name, Path(tmp))
        for k, v in out.items():
            key = f"{name}:{k}"
            tensors[key] = np.ascontiguousarray(v)
            digests[key] = digest(v)
    save_file(tensors, str(STORE))
    META.write_text(json.dumps({"platform": platform_key(), "digests": digests}, indent=1,
                               sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/golden/cases.py --write")
    write()
