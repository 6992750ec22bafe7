"""Checkpoints after every epoch and exact resume (issue 12): in process, and with real
processes killed by SIGKILL at random moments, resumed until they finish."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.numpy import load_file

import seqae
from seqae.checkpoint import Checkpointer, CheckpointError

FAST = dict(latent_dim=3, hidden_size=8, batch_size=8, max_epochs=6, patience=100,
            verbose=0, seed=4)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return seqae.Sequences.from_list([rng.normal(size=(int(k), 2)).astype(np.float32)
                                      for k in rng.integers(1, 20, n)])


def _weights(ae):
    return {k: v.detach().clone() for k, v in ae.module_.state_dict().items()}


class _Crash(seqae.train.Callback):
    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, epoch, record):
        if epoch == self.at:
            raise KeyboardInterrupt  # before this epoch's checkpoint is written


@pytest.mark.parametrize("validation_fraction", [0, 0.25])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, validation_fraction):
    s = _data()
    params = {**FAST, "validation_fraction": validation_fraction}
    ref = seqae.SequenceAutoencoder(**params).fit(s)
    ae = seqae.SequenceAutoencoder(**params)
    with pytest.raises(KeyboardInterrupt):
        ae.fit(s, callbacks=[_Crash(4)], checkpoint_dir=tmp_path)
    kept = sorted(p.name for p in tmp_path.glob("epoch-*"))
    assert kept == ["epoch-000002", "epoch-000003"]  # the two newest valid ones
    partial = seqae.SequenceAutoencoder.load(tmp_path)  # a loadable model after each epoch
    assert partial.threshold_ is None and len(partial.history_) == 3
    assert partial.encode(s).shape == (len(s), 3)
    from safetensors.torch import load_file  # the partial model holds the best weights so far
    best = load_file(tmp_path / "epoch-000003" / "best.safetensors")
    assert best.keys() == _weights(partial).keys()
    for k, v in _weights(partial).items():
        torch.testing.assert_close(v, best[k], rtol=0, atol=0)
    again = seqae.SequenceAutoencoder(**params).fit(s, checkpoint_dir=tmp_path, resume=True)
    for k, v in _weights(ref).items():
        torch.testing.assert_close(_weights(again)[k], v, rtol=0, atol=1e-6)
    assert [r["epoch"] for r in again.history_] == list(range(1, 7))
    assert again.history_[-1]["train_loss"] == pytest.approx(ref.history_[-1]["train_loss"],
                                                              rel=1e-6)
    np.testing.assert_allclose(again.train_scores_, ref.train_scores_, rtol=1e-5)


def test_a_fresh_run_clears_an_older_runs_checkpoints(tmp_path):
    s = _data()
    seqae.SequenceAutoencoder(**FAST).fit(s, checkpoint_dir=tmp_path)  # epochs 5 and 6 kept
    params = {**FAST, "max_epochs": 2}
    seqae.SequenceAutoencoder(**params).fit(s, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == ["epoch-000001",
                                                                "epoch-000002"]


def test_resume_refuses_other_data_or_settings(tmp_path):
    s = _data()
    seqae.SequenceAutoencoder(**FAST).fit(s, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="data_sha256"):
        seqae.SequenceAutoencoder(**FAST).fit(_data(seed=1), checkpoint_dir=tmp_path,
                                              resume=True)
    with pytest.raises(CheckpointError, match=r"lr: 'auto' then, 0.01 now"):
        seqae.SequenceAutoencoder(**{**FAST, "lr": 0.01}).fit(s, checkpoint_dir=tmp_path,
                                                              resume=True)
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):
        seqae.SequenceAutoencoder(**FAST).fit(s, resume=True)


def test_a_torn_or_planted_checkpoint_is_skipped_and_never_unpickled(tmp_path):
    s = _data()
    ref = seqae.SequenceAutoencoder(**FAST).fit(s)
    ae = seqae.SequenceAutoencoder(**FAST)
    with pytest.raises(KeyboardInterrupt):
        ae.fit(s, callbacks=[_Crash(5)], checkpoint_dir=tmp_path)
    newest = tmp_path / "epoch-000004"
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (newest / "model.safetensors").write_bytes(pickle.dumps(Evil()))  # planted pickle
    ckpt = Checkpointer(tmp_path, {})
    assert ckpt.latest() == tmp_path / "epoch-000003"  # checksum mismatch: not valid
    (tmp_path / "epoch-000003" / "manifest.json").unlink()  # as if killed while writing
    assert ckpt.latest() is None
    again = seqae.SequenceAutoencoder(**FAST).fit(s, checkpoint_dir=tmp_path, resume=True)
    assert not marker.exists()  # nothing ran
    for k, v in _weights(ref).items():  # started afresh, same result
        torch.testing.assert_close(_weights(again)[k], v, rtol=0, atol=1e-6)
    # a planted file whose manifest was forged too: read as safetensors, refused by name
    d = sorted(tmp_path.glob("epoch-*"))[-1]
    (d / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    man = json.loads((d / "manifest.json").read_text())
    import hashlib

    man["sha256"]["model.safetensors"] = hashlib.sha256(
        (d / "model.safetensors").read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable"):
        seqae.SequenceAutoencoder(**FAST).fit(s, checkpoint_dir=tmp_path, resume=True)
    assert not marker.exists()


def test_sigkill_at_random_moments_then_resume_gives_the_same_weights(tmp_path):
    """`seqae train --resume` killed with SIGKILL again and again, at random moments and
    while a checkpoint is being written, resumed each time, ends with the weights of an
    uninterrupted run."""
    from seqae.datasets import demo_table

    pq.write_table(demo_table(n=160, seed=5), tmp_path / "d.parquet")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    args = ["--time-col", "t", "--epochs", "12", "--hidden-size", "64", "--latent-dim", "4",
            "--batch-size", "8", "--seed", "3", "--val-fraction", "0.2"]

    def train(out, resume):
        cmd = [sys.executable, "-m", "seqae", "-q", "train", str(tmp_path / "d.parquet"),
               "--out", str(out), *args] + (["--resume"] if resume else [])
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    def unfinished(out):
        return {(d.name, d.stat().st_ino) for d in out.glob("epoch-*")
                if not (d / "manifest.json").exists()}

    def writing(out, stale):
        """A checkpoint folder without its manifest yet, new since the process started
        (a killed write leaves one behind): a write in progress."""
        try:
            return bool(unfinished(out) - stale)
        except FileNotFoundError:  # a folder removed while we looked
            return False

    def finish(p):
        err = p.communicate(timeout=300)[1]  # closes the pipe
        assert p.returncode == 0, err

    finish(train(tmp_path / "ref", False))
    rnd = random.Random(0)
    out = tmp_path / "killed"
    kills = {"random": 0, "mid-training": 0, "during a write": 0}
    for attempt in range(40):
        mode = "random" if attempt % 2 == 0 else "write"
        stale = unfinished(out) if out.exists() else set()
        p = train(out, True)
        deadline = time.monotonic() + (rnd.uniform(1.5, 4.0) if mode == "random" else 30)
        hit = False
        while p.poll() is None and time.monotonic() < deadline:
            if mode == "write" and out.exists() and writing(out, stale):
                hit = True
                break
            time.sleep(0.001 if mode == "write" else 0.01)
        if p.poll() is not None:  # it finished
            finish(p)
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.close()
        if hit:
            kills["during a write"] += 1
        else:
            kills["random"] += 1
            kills["mid-training"] += bool(list(out.glob("epoch-*")))
        if sum(kills.values()) - kills["mid-training"] >= 8:
            break  # enough kills: let it finish
    else:
        pytest.fail(f"never finished: {kills}")
    if p.returncode != 0:  # the last one was killed: run to the end
        finish(train(out, True))
    print(f"kills survived: {kills}")
    assert kills["random"] + kills["during a write"] >= 4 and kills["mid-training"] >= 1
    assert kills["during a write"] >= 1
    a = load_file(tmp_path / "ref" / "weights.safetensors")
    b = load_file(out / "weights.safetensors")
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6)
    import csv

    def losses(folder):
        with open(folder / "metrics.csv", newline="") as f:
            return [(int(r["epoch"]), float(r["train_loss"]), float(r["val_loss"]))
                    for r in csv.DictReader(f)]

    got, want = losses(out), losses(tmp_path / "ref")
    assert [r[0] for r in got] == [r[0] for r in want]  # one row per epoch, none twice
    np.testing.assert_allclose([r[1:] for r in got], [r[1:] for r in want], rtol=1e-5)


def test_a_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint(tmp_path,
                                                                              caplog):
    """A NaN loss at epoch 3, step 5: no update is made from it, training stops naming
    both, the best weights are kept (finite), and the last checkpoint still loads."""
    s = _data()

    class Poison(seqae.train.Callback):
        def on_train_begin(self, model, config):
            orig, calls = model.loss, {"n": 0}

            def loss(x, lens, fn, reduction="mean"):
                out = orig(x, lens, fn, reduction)
                if model.training:
                    calls["n"] += 1
                    if calls["n"] == 2 * 32 + 5:  # epochs of 32 steps: epoch 3, step 5
                        return (out[0] * float("nan"),) + tuple(out[1:])
                return out

            model.loss = loss

    import logging

    with caplog.at_level(logging.WARNING, logger="seqae"):
        ae = seqae.SequenceAutoencoder(**{**FAST, "validation_fraction": 0.25}).fit(
            s, callbacks=[Poison()], checkpoint_dir=tmp_path)
    assert "epoch 3, step 5: the loss is nan" in caplog.text
    assert len(ae.history_) == 3 and ae.history_[-1]["stopped"].endswith("epoch 3, step 5")
    assert all(torch.isfinite(v).all() for v in ae.module_.state_dict().values())
    assert seqae.train.best_epoch(ae.history_)["epoch"] <= 2
    assert Checkpointer(tmp_path, {}).latest() == tmp_path / "epoch-000002"
    saved = load_file(tmp_path / "epoch-000002" / "model.safetensors")
    assert saved.keys() == ae.module_.state_dict().keys()
    assert all(np.isfinite(v).all() for v in saved.values())


def test_same_seed_same_weights():
    s = _data()
    a = seqae.SequenceAutoencoder(**FAST).fit(s)
    b = seqae.SequenceAutoencoder(**FAST).fit(s)
    for k, v in _weights(a).items():
        assert torch.equal(_weights(b)[k], v), k


def test_no_pickle_anywhere_in_the_library():
    """The package never unpickles: no torch.load, no pickle module, no numpy
    allow_pickle (checked on the source itself)."""
    import re
    from pathlib import Path

    root = Path(seqae.__file__).parent
    offenders = []
    for f in root.rglob("*.py"):
        text = f.read_text()
        for pattern in (r"torch\.load\(", r"^\s*import pickle", r"from pickle",
                        r"allow_pickle\s*=\s*True", r"import dill", r"joblib"):
            if re.search(pattern, text, flags=re.M):
                offenders.append((f.name, pattern))
    assert offenders == []


@pytest.mark.parametrize("name", ["weights.safetensors", "config.json"])
def test_a_planted_pickle_in_a_model_folder_is_refused_by_name(tmp_path, name):
    s = _data()
    out = seqae.SequenceAutoencoder(**FAST).fit(s).save(tmp_path / "m")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (out / name).write_bytes(pickle.dumps(Evil()))
    with pytest.raises(seqae.IncompatibleModelError, match=name.split(".")[0]):
        seqae.SequenceAutoencoder.load(out)
    assert not marker.exists()
    (tmp_path / "m2").mkdir()
    good = seqae.SequenceAutoencoder(**FAST).fit(s).save(tmp_path / "m2")
    blob = (good / "weights.safetensors").read_bytes()
    (good / "weights.safetensors").write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(seqae.IncompatibleModelError, match="weights.safetensors"):
        seqae.SequenceAutoencoder.load(good)


def test_the_partial_model_holds_the_best_epochs_weights_not_the_newest(tmp_path):
    s = _data()
    ae = seqae.SequenceAutoencoder(**{**FAST, "max_epochs": 1}).fit(s)
    best = {k: v.clone() for k, v in ae.module_.state_dict().items()}
    fitted = seqae.model_dir.Fitted(ae.module_, ae.model_config_, ae.task_, ae.max_length_, [])
    cb = seqae.model_dir.PartialWriter(fitted, ae.get_params(), "SequenceAutoencoder", tmp_path)
    cb.on_best(1, best)
    with torch.no_grad():  # epoch 2 makes things worse: the folder must keep epoch 1's
        for p in ae.module_.parameters():
            p.add_(1.0)
    cb.on_epoch_end(1, {"epoch": 1, "train_loss": 1.0})
    cb.on_epoch_end(2, {"epoch": 2, "train_loss": 2.0})
    partial = seqae.SequenceAutoencoder.load(tmp_path)
    for k, v in _weights(partial).items():
        torch.testing.assert_close(v, best[k], rtol=0, atol=0)
    assert [r["epoch"] for r in partial.history_] == [1, 2]


@pytest.mark.parametrize("name", ["manifest.json", "state.json"])
def test_a_checkpoint_of_another_format_is_refused_saying_which_it_reads(tmp_path, name):
    import hashlib

    s = _data()
    seqae.SequenceAutoencoder(**{**FAST, "max_epochs": 2}).fit(s, checkpoint_dir=tmp_path)
    d = tmp_path / "epoch-000002"
    doc = json.loads((d / name).read_text())
    doc["format"] = 7
    (d / name).write_text(json.dumps(doc))
    if name == "state.json":  # a consistent checkpoint from elsewhere: checksums match
        man = json.loads((d / "manifest.json").read_text())
        man["sha256"][name] = hashlib.sha256((d / name).read_bytes()).hexdigest()
        (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match=rf"{name}: checkpoint format 7 .*reads "
                                              rf"checkpoint format 1 only"):
        seqae.SequenceAutoencoder(**{**FAST, "max_epochs": 2}).fit(
            s, checkpoint_dir=tmp_path, resume=True)
    assert (d / name).exists()  # refused, nothing cleared


def test_a_checkpoint_with_other_weights_is_refused_naming_them(tmp_path):
    """A checkpoint of a seqae before the imputer (no imputer.* weights) is refused with
    the weights named, not a torch RuntimeError; nothing is cleared."""
    import hashlib

    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(0)
    gappy = [rng.normal(size=(int(n), 2)).astype(np.float32) for n in rng.integers(4, 9, 12)]
    gappy[0][1, 0] = np.nan
    params = {**FAST, "max_epochs": 2, "missing": "mask"}
    seqae.SequenceAutoencoder(**params).fit(gappy, checkpoint_dir=tmp_path)
    d = tmp_path / "epoch-000002"
    weights = {k: v for k, v in load_file(d / "model.safetensors").items()
               if not k.startswith("imputer.")}
    save_file(weights, d / "model.safetensors")
    man = json.loads((d / "manifest.json").read_text())
    man["sha256"]["model.safetensors"] = hashlib.sha256(
        (d / "model.safetensors").read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match=r"other weights than this run's \(missing: "
                                              r"\['imputer.bias', 'imputer.weight'\]"):
        seqae.SequenceAutoencoder(**params).fit(gappy, checkpoint_dir=tmp_path, resume=True)
    assert (d / "model.safetensors").exists()
