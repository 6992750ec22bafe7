"""Several processes under torchrun (gloo, CPU) train one model: the same weights as one
process accumulating the same batches; rank 0 alone writes; resume needs the same world
size; ranks that disagree get a clear error, not a hang (issue 13)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

import seqae

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which(
    "torchrun")
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
COMMON = ["--time-col", "t", "--batch-size", "4", "--hidden-size", "8", "--latent-dim", "4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    ids, ts, a, b = [], [], [], []
    for i in range(48):  # ragged: 3..39 steps
        n = int(rng.integers(3, 40))
        ids += [f"s{i}"] * n
        ts += list(range(n))
        a += list(np.sin(np.arange(n) / 3 + i) + 0.1 * rng.normal(size=n))
        b += list(rng.normal(size=n))
    path = tmp_path_factory.mktemp("ddp") / "d.parquet"
    pq.write_table(pa.table({"id": ids, "t": ts, "a": a, "b": b}), path)
    return path


def _run(args, nproc=None, cwd=None, timeout=300):
    cmd = ([TORCHRUN, f"--nproc-per-node={nproc}", "-m", "seqae"] if nproc
           else [sys.executable, "-m", "seqae"])
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)


def _weights(folder):
    return load_file(Path(folder) / "weights.safetensors")


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _readme_commands() -> list[list[str]]:
    """The command lines of the README's "More than one process" block."""
    import re
    import shlex

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("## More than one process"):]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
    return [shlex.split(line) for line in block.splitlines()
            if line.strip() and not line.startswith("#")]


def _as_run(cmd: list[str]) -> list[str]:
    """A README command as run here: the venv's executables."""
    if cmd[0] == "seqae":
        return [sys.executable, "-m", "seqae", *cmd[1:]]
    assert cmd[0] == "torchrun"
    return [TORCHRUN, *cmd[1:]]


@pytest.mark.parametrize("settings", [
    ["--val-fraction", "0", "--epochs", "3"],  # GRU, training loss monitored
    ["--val-fraction", "0.25", "--epochs", "2", "--config", "conv.yaml"],  # crops, hidden
])                                                              # steps, validation split
def test_two_ranks_equal_one_process_accumulating_two_batches(data, tmp_path, settings):
    """The README's first two commands (plus flags that make them short)."""
    shutil.copy(data, tmp_path / "data.parquet")
    (tmp_path / "conv.yaml").write_text("encoder: conv\nlatent_dim: 8\n")
    readme = _readme_commands()
    small = ["-q", *COMMON[2:], *settings]
    for cmd in readme[:2]:
        at = cmd.index("train")
        r = subprocess.run(_as_run(cmd[:at]) + cmd[at:] + small, capture_output=True,
                           text=True, env=ENV, cwd=tmp_path, timeout=300)
        assert r.returncode == 0, r.stderr
    one = _run(["-q", "train", "data.parquet", "--out", "one", *COMMON, *settings],
               cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two, acc = tmp_path / "model", tmp_path / "model-1"
    assert _max_diff(_weights(two), _weights(acc)) <= 1e-5
    assert _max_diff(_weights(two), _weights(tmp_path / "one")) > 1e-3
    h_two = (two / "metrics.csv").read_text().splitlines()
    h_acc = (acc / "metrics.csv").read_text().splitlines()
    strip = [",".join(line.split(",")[:-1]) for line in h_two]  # all but the time column
    assert strip == [",".join(line.split(",")[:-1]) for line in h_acc]
    assert "optimizer_steps" in h_two[0]
    assert json.loads((two / "config.json").read_text())["params"]["accumulate"] == 1


def test_the_readme_two_machine_command_on_one_machine(data, tmp_path):
    """Two torchrun agents (two "nodes" of 2 processes each) meet at a c10d rendezvous
    on localhost: 4 processes train the weights of one process with --accumulate 4."""
    import socket

    shutil.copy(data, tmp_path / "data.parquet")
    cmd = next(c for c in _readme_commands() if "--nnodes=2" in c and c[0] == "torchrun")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [a.replace("HOST0:29400", f"127.0.0.1:{port}") for a in cmd]
    small = ["-q", *COMMON[2:], "--val-fraction", "0", "--epochs", "2"]
    at = cmd.index("train")
    nodes = [subprocess.Popen(_as_run(cmd[:at]) + cmd[at:] + small, cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err
    acc = _run(["-q", "train", "data.parquet", "--out", "acc", *COMMON, "--val-fraction", "0",
                "--epochs", "2", "--accumulate", "4"], cwd=tmp_path)
    assert acc.returncode == 0, acc.stderr
    assert _max_diff(_weights(tmp_path / "model"), _weights(tmp_path / "acc")) <= 1e-5
    manifest = sorted((tmp_path / "model").glob("epoch-*/manifest.json"))[-1]
    assert json.loads(manifest.read_text())["world_size"] == 4


def test_resume_under_torchrun_and_a_changed_world_size_is_refused(data, tmp_path):
    import signal
    import time

    args = ["train", data, "--out", tmp_path / "m", *COMMON, "--val-fraction", "0",
            "--epochs", "8"]
    ref = _run(["-q", *args], nproc=2)
    assert ref.returncode == 0, ref.stderr
    want = _weights(tmp_path / "m")
    shutil.rmtree(tmp_path / "m")
    proc = subprocess.Popen([TORCHRUN, "--nproc-per-node=2", "-m", "seqae", "-q",
                             *map(str, args)], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "m").glob("epoch-*/manifest.json")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, mid-training
    proc.wait()
    manifests = sorted((tmp_path / "m").glob("epoch-*/manifest.json"))
    assert json.loads(manifests[-1].read_text())["world_size"] == 2
    assert json.loads(manifests[-1].read_text())["epoch"] < 8
    alone = _run(["-q", *args, "--resume"])
    assert alone.returncode == 2
    assert "written by 2 process(es), this run has 1" in alone.stderr, alone.stderr
    again = _run(["-q", *args, "--resume"], nproc=2)
    assert again.returncode == 0, again.stderr
    assert _max_diff(_weights(tmp_path / "m"), want) <= 1e-6
    # other commands under torchrun: rank 0 alone does the work and writes once
    emb = _run(["-q", "encode", tmp_path / "m", data, "--time-col", "t", "--out",
                tmp_path / "e2.parquet"], nproc=2)
    assert emb.returncode == 0, emb.stderr
    one = _run(["-q", "encode", tmp_path / "m", data, "--time-col", "t", "--out",
                tmp_path / "e1.parquet"])
    assert one.returncode == 0, one.stderr
    assert pq.read_table(tmp_path / "e2.parquet").equals(pq.read_table(tmp_path / "e1.parquet"))


SCRIPT = """
import sys, numpy as np, seqae, torch.distributed as dist
rank = int(__import__("os").environ["RANK"])
n = 20 if rank == 0 or sys.argv[1] == "same" else 21  # rank 1 may get other data
rng = np.random.default_rng(0)
seqs = seqae.Sequences.from_list([rng.normal(size=(5 + i % 7, 2)) for i in range(n)])
try:
    ae = seqae.SequenceAutoencoder(hidden_size=8, latent_dim=4, max_epochs=2, verbose=0,
                                   batch_size=4).fit(seqs)
except seqae.distributed.DistributedError as e:
    print("refused:", e, flush=True)
    sys.exit(3)
if dist.get_rank() == 0:
    ae.save(sys.argv[2])
print("steps", [r["optimizer_steps"] for r in ae.history_], "rank", dist.get_rank())
"""


def test_fit_in_a_torchrun_script_and_ranks_with_other_data_fail_clearly(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent(SCRIPT))
    ok = subprocess.run([TORCHRUN, "--nproc-per-node=2", script, "same", tmp_path / "m"],
                        capture_output=True, text=True, env=ENV, timeout=300)
    assert ok.returncode == 0, ok.stderr
    lines = sorted(line for line in ok.stdout.splitlines() if line.startswith("steps"))
    assert len(lines) == 2 and lines[0].split(" rank")[0] == lines[1].split(" rank")[0]
    assert (tmp_path / "m" / "weights.safetensors").exists()
    bad = subprocess.run([TORCHRUN, "--nproc-per-node=2", script, "other", tmp_path / "x"],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert bad.returncode != 0
    for rank in (0, 1):  # both ranks stop with the reason, neither waits for the other
        assert f"rank {rank} of 2: its data or settings differ from another rank's in " \
               "lengths" in bad.stdout, bad.stdout + bad.stderr


def test_accumulating_a_whole_pass_is_full_batch_gradient_descent():
    """Independent reference: with ``accumulate`` = the batches of a pass, every step is
    one step on the masked mean over all the data, computed here on one padded batch."""
    rng = np.random.default_rng(1)
    seqs = seqae.Sequences.from_list([rng.normal(size=(n, 2)).astype(np.float32)
                                      for n in (3, 9, 5, 7, 4, 8, 6, 2)])
    params = dict(hidden_size=6, latent_dim=3, max_epochs=1, batch_size=2, verbose=0,
                  normalize="none", validation_fraction=0, grad_clip=0, encoder="rnn")
    ae = seqae.SequenceAutoencoder(**params, accumulate=4).fit(seqs)
    assert ae.history_[0]["optimizer_steps"] == 32  # MIN_EPOCH_STEPS passes of one step

    from seqae.nn.model import AutoencoderNet

    torch.manual_seed(0)  # the estimator's seed: the same initial weights
    net = AutoencoderNet(ae.model_config_)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3,  # 'auto' for the RNN
                            weight_decay=0.0)
    x, lengths = seqs.pad()
    x = torch.as_tensor(x)
    lengths = torch.as_tensor(lengths)
    mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]
    for _ in range(32):
        out, _ = net(x, lengths)
        loss = ((out - x) ** 2 * mask).sum() / (mask.sum() * x.shape[-1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = [k for k in net.state_dict() if not k.startswith("length_head.")]
    assert len(trained) > 8  # (the length head is fitted after training, by least squares)
    for k in trained:
        torch.testing.assert_close(ae.module_.state_dict()[k], net.state_dict()[k],
                                   rtol=1e-4, atol=1e-5)
