"""The training loop (seqae.train): the budget cosine, the loop state a checkpoint saves,
a resume from the middle of an epoch (also from a checkpoint written before the loop
state existed), and what an epoch is."""

import inspect
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import seqae
from seqae.batching import MIN_EPOCH_STEPS, LengthBucketSampler
from seqae.checkpoint import Checkpointer
from seqae.losses import get_loss
from seqae.nn import AutoencoderNet, ModelConfig
from seqae.sources import DeviceData
from seqae.train import (
    Callback,
    LoopState,
    TrainConfig,
    best_epoch,
    budget_lr,
    cpu_threads,
    train,
)

HERE = Path(__file__).parent
# A mid-epoch checkpoint written by `_fit(..., crash_at=CRASH_AT)` at 14a999c, before
# `LoopState` (the loop of `LoopState` writes the same files, but for the times measured).
OLD_CHECKPOINT = HERE / "golden" / "checkpoint-14a999c"
CONFIG = dict(max_epochs=3, batch_size=8, patience=100, seed=4, checkpoint_every=5)
CRASH_AT = 35 + 13  # epochs of 35 steps: epoch 2, step 13 (its checkpoint: step 10)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return seqae.Sequences.from_list([rng.normal(size=(int(k), 2)).astype(np.float32)
                                      for k in rng.integers(1, 20, n)])


class _Crash(Callback):
    """Interrupts training at the ``at``-th training batch (in the middle of an epoch)."""

    def __init__(self, at):
        self.at = at

    def on_train_begin(self, model, config):
        orig, calls = model.loss, {"n": 0}

        def loss(*args, **kwargs):
            if model.training:
                calls["n"] += 1
                if calls["n"] == self.at:
                    raise KeyboardInterrupt
            return orig(*args, **kwargs)

        model.loss = loss


def _fit(checkpoint_dir=None, resume=False, crash_at=None, **config):
    """A small GRU trained by `train` on `_data`; returns ``(model, history)``."""
    torch.manual_seed(1)
    model = AutoencoderNet(ModelConfig(n_features=2, latent_dim=3, hidden_size=8,
                                       longest_predicted=19))
    checkpointer = None if checkpoint_dir is None else Checkpointer(checkpoint_dir, {})
    with cpu_threads(1):
        history = train(model, get_loss("mse"), DeviceData(_data(), torch.device("cpu")),
                        TrainConfig(**{**CONFIG, **config}),
                        callbacks=[] if crash_at is None else [_Crash(crash_at)],
                        checkpointer=checkpointer, resume=resume)
    return model, history


def _fit_config(model_config=None, **config):
    """`_fit` without checkpoints, for another `ModelConfig` (None: `_fit`'s GRU)."""
    if model_config is None:
        return _fit(**config)
    torch.manual_seed(1)
    model = AutoencoderNet(model_config)
    data = _data()
    if model_config.vocab_size:  # token ids 4.. (0-3: PAD, BOS, EOS, UNK)
        data = data.with_values((np.abs(data.values[:, 0]) * 3).astype(np.int64) % 8 + 4)
    with cpu_threads(1):
        history = train(model, get_loss("mse"), DeviceData(data, torch.device("cpu")),
                        TrainConfig(**{**CONFIG, **config}))
    return model, history


def _untimed(history):
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


def test_budget_lr_is_a_cosine_from_lr_to_five_percent():
    assert budget_lr(0.01, 0.0) == 0.01
    assert budget_lr(0.01, 1.0) == pytest.approx(0.0005, rel=1e-12)
    assert budget_lr(0.01, 0.5) == pytest.approx(0.00525, rel=1e-12)
    assert budget_lr(0.01, 0.25) == pytest.approx(
        0.01 * (0.05 + 0.95 * (1 + math.sqrt(0.5)) / 2), rel=1e-12)
    assert budget_lr(0.01, 3.0) == budget_lr(0.01, 1.0)  # past the budget: stays at 5 %
    lrs = [budget_lr(1.0, d / 10) for d in range(11)]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_the_budget_schedule_ends_epochs_on_the_cosine():
    """Without a time budget the share done is that of ``max_epochs``: each epoch ends
    on the cosine at epoch / max_epochs."""
    _, history = _fit(max_epochs=4, schedule="budget", lr=0.01, checkpoint_every=0)
    assert [r["lr"] for r in history] == pytest.approx(
        [budget_lr(0.01, e / 4) for e in range(1, 5)], rel=1e-12)
    with pytest.raises(ValueError, match="schedule must be"):
        _fit(schedule="cosine")


def _state(step):
    history = [{"epoch": 1, "train_loss": 0.5, "steps": 70, "passes": 7,
                "optimizer_steps": 35, "val_loss": 0.25, "lr": 0.001, "time": 1.5}]
    return LoopState(history=history, best=0.25, bad_epochs=1,
                     best_state={"w": torch.arange(6.0).reshape(2, 3)}, epoch=1, step=step,
                     total=3.25 if step else 0.0, count=12 * step, steps=6 * step,
                     optimizer_steps=step, time=2.75 if step else 1.5)


def _same(a: LoopState, b: LoopState):
    assert a.best_state is not None and b.best_state is not None
    assert a.best_state.keys() == b.best_state.keys()
    for k in a.best_state:
        assert torch.equal(a.best_state[k], b.best_state[k])
    fields = [f for f in vars(a) if f != "best_state"]
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
    for f in fields:
        assert type(getattr(a, f)) is type(getattr(b, f)), f


@pytest.mark.parametrize("step", [0, 10])
def test_loop_state_round_trip_through_a_checkpoint(tmp_path, step):
    """`to_checkpoint` writes what `Checkpointer.save` always wrote (the keys a folder of
    an earlier run holds), and `from_checkpoint` reads back the same state."""
    state = _state(step)
    doc = state.to_checkpoint()
    want = {"history", "best", "bad_epochs", "stopped"} | ({"position"} if step else set())
    assert set(doc) == want
    if step:
        assert set(doc["position"]) == {"step", "total", "count", "steps", "optimizer_steps",
                                        "time"}
    # as JSON, the way load_latest hands it back
    saved = {**json.loads(json.dumps(doc)), "epoch": state.epoch,
             "best_state": state.best_state}
    _same(LoopState.from_checkpoint(saved), state)
    # through a real checkpoint folder
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    ckpt = Checkpointer(tmp_path, {})
    folder = ckpt.save(state.epoch, model, opt, sched, state.best_state, doc, step=state.step)
    assert folder.name == "epoch-000001" + (f"-{step:08d}" if step else "")
    _same(LoopState.from_checkpoint(ckpt.load_latest(model, opt, sched)), state)


def test_a_fresh_loop_state_is_a_run_that_has_not_started():
    state = LoopState()
    assert (state.epoch, state.step, state.history, state.best_state) == (0, 0, [], None)
    assert math.isinf(state.best) and not state.stopped
    assert state.to_checkpoint() == {"history": [], "best": math.inf, "bad_epochs": 0,
                                     "stopped": False}


def test_resume_in_the_middle_of_an_epoch_equals_an_uninterrupted_run(tmp_path):
    model, history = _fit()
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, crash_at=CRASH_AT)
    latest = Checkpointer(tmp_path, {}).latest()
    assert latest is not None and latest.name == "epoch-000001-00000010"
    again, resumed = _fit(tmp_path, resume=True)
    assert _untimed(resumed) == _untimed(history)
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    # a finished run resumed: nothing left to do, the same best weights
    done, same = _fit(tmp_path, resume=True)
    assert _untimed(same) == _untimed(history)
    for k, v in model.state_dict().items():
        assert torch.equal(done.state_dict()[k], v), k


def test_a_checkpoint_written_before_the_loop_state_still_resumes(tmp_path):
    """The folder was written by the loop as it was before `LoopState` (14a999c); it
    resumes 10 steps into epoch 2 and ends where an uninterrupted run does (bit for bit
    on the same CPU kernels; the stored weights came from another machine's, maybe)."""
    shutil.copytree(OLD_CHECKPOINT, tmp_path / "ckpt")
    saved = json.loads((OLD_CHECKPOINT / "epoch-000001-00000010" / "state.json").read_text())
    assert saved["epoch"] == 1 and saved["position"]["step"] == 10
    model, history = _fit()
    again, resumed = _fit(tmp_path / "ckpt", resume=True)
    assert len(resumed) == 3 and resumed[0] == saved["history"][0]
    np.testing.assert_allclose([r["train_loss"] for r in resumed],
                               [r["train_loss"] for r in history], rtol=1e-5)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_tiny_data_epochs_make_several_passes():
    """An epoch is at least MIN_EPOCH_STEPS optimizer steps: 16 sequences in batches of 4
    are 4 steps a pass, so an epoch makes 8 passes and trains every valid step 8 times;
    each pass is its own shuffle."""
    seqs = _data(16)
    model = AutoencoderNet(ModelConfig(n_features=2, latent_dim=3, hidden_size=8,
                                       longest_predicted=19))
    data = DeviceData(seqs, torch.device("cpu"))
    history = train(model, get_loss("mse"), data,
                    TrainConfig(max_epochs=2, batch_size=4, seed=1))
    passes = -(-MIN_EPOCH_STEPS // 4)
    assert [(r["passes"], r["steps"], r["optimizer_steps"]) for r in history] == [
        (passes, passes * int(seqs.lengths.sum()), passes * 4)] * 2
    one, p1 = data.plan(1, 4, "count", seed=1, group=1)
    two, p2 = data.plan(2, 4, "count", seed=1, group=1)
    assert p1 == p2 == passes and len(one) == passes * 4
    one_batches = [tuple(b) for step in one for b in step]
    assert one_batches != [tuple(b) for step in two for b in step]
    assert sorted(i for b in one_batches for i in b) == sorted(list(range(16)) * passes)
    sampler = LengthBucketSampler(seqs.lengths, 4, seed=1)
    sampler.set_epoch(2)  # the second pass of epoch 1 is the sampler's epoch 2
    assert [tuple(b) for b in sampler.batches()] == one_batches[4:8]


def test_best_epoch_follows_the_rule_train_keeps_weights_by():
    def hist(losses, key="val_loss"):
        return [{"epoch": i + 1, "train_loss": 9.0, key: v} for i, v in enumerate(losses)]

    # epoch 3 improves by less than 1e-6 (not kept); nothing after a NaN counts
    h = hist([1.0, 0.5, 0.5 * (1 - 1e-7), 0.4, float("nan"), 0.1])
    assert best_epoch(h)["epoch"] == 4
    assert best_epoch([{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0}])[
        "epoch"] == 2  # no validation: the training loss is monitored
    assert best_epoch(hist([float("inf"), 1.0])) is None


def test_cpu_threads_puts_torchs_setting_back():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        with pytest.raises(RuntimeError), cpu_threads(2):
            assert torch.get_num_threads() == 2
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 3  # put back after an error too
        with cpu_threads(None):
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_bf16_training_follows_float32_within_its_rounding():
    """``precision="bf16"`` on the CPU (autocast works there): the weights stay float32,
    they differ from the float32 run's (autocast was on), and each epoch's training loss
    is within 1 % of float32's (bf16 rounds each product to 2^-9; over three epochs of
    35 steps the two runs' losses differ by 2e-4 relative here)."""
    ref, ref_history = _fit(checkpoint_every=0)
    model, history = _fit(checkpoint_every=0, precision="bf16")
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())
    assert any(not torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())
    for got, want in zip(history, ref_history, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-2)


def test_float16_training_with_a_loss_scale_follows_float32():
    """``precision="16"``: float16 autocast and a loss scale (`torch.amp.GradScaler`), on
    the CPU here: the weights stay finite and differ from float32's, the losses agree
    within 1 % (float16 keeps 11 bits: 1e-5 relative here)."""
    ref, ref_history = _fit(checkpoint_every=0, max_epochs=2)
    model, history = _fit(checkpoint_every=0, max_epochs=2, precision="16")
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert any(not torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())
    for got, want in zip(history, ref_history, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-2)


def test_resume_under_bf16_equals_an_uninterrupted_bf16_run(tmp_path):
    """Exact resume holds under bf16 too: autocast draws nothing at random and keeps no
    state, so the weights after a mid-epoch crash and resume are bit for bit those of an
    uninterrupted run."""
    model, history = _fit(precision="bf16")
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, crash_at=CRASH_AT, precision="bf16")
    again, resumed = _fit(tmp_path, resume=True, precision="bf16")
    assert _untimed(resumed) == _untimed(history)
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        _fit(precision="8")


def test_evaluate_sums_on_the_device_to_the_host_sum_bit_for_bit():
    """`evaluate` adds the batch losses on the device (read once at the end): the figure
    is exactly the float64 sum over batches read one by one, over the valid elements."""
    from seqae.train import evaluate

    torch.manual_seed(0)
    model = AutoencoderNet(ModelConfig(n_features=2, latent_dim=3, hidden_size=8,
                                       longest_predicted=19)).eval()
    data = DeviceData(_data(), torch.device("cpu"))
    loss_fn = get_loss("mse")
    got = evaluate(model, data, loss_fn, 8, "count")
    total, count = 0.0, 0
    batches = data.eval_plan(8, "count")
    with torch.no_grad():
        for pos, (x, lens) in enumerate(data.iterate(batches)):
            torch.manual_seed(pos)
            loss, _, n = model.loss(x, lens, loss_fn, reduction="sum")
            total, count = total + float(loss), count + int(n)
    assert count == int(data.lengths.sum()) * 2
    assert got == total / count


# Calls that read a tensor's values into Python: each waits for a GPU to finish the work
# queued before it (on the CPU they cost nothing, so they are counted, not timed).
_READS = {"item", "__float__", "__int__", "__bool__", "__index__", "tolist", "numpy", "cpu",
          "nonzero", "masked_select", "unique", "equal", "allclose", "is_nonzero"}


def _cpu_only(frame) -> bool:
    """Whether the call comes from a read seqae makes on CPU tensors only
    (`seqae.masking.host_max`, `seqae.masking.check_lengths`,
    `seqae.losses.check_targets`: see their tests with tensors on no device)."""
    while frame is not None:
        if frame.f_code.co_name in ("host_max", "check_lengths", "check_targets") and \
                frame.f_code.co_filename.endswith(("masking.py", "losses.py")):
            return True
        frame = frame.f_back
    return False


class _HostReads(torch.overrides.TorchFunctionMode):
    """Counts the calls that would wait for a GPU: the reads above, indexing with a
    boolean tensor, `repeat_interleave` without its output size (copies to the device
    are the GPU test's to catch)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        read = name in _READS
        if name in ("__getitem__", "__setitem__") and len(args) > 1:
            idx = args[1] if isinstance(args[1], tuple) else (args[1],)
            read = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in idx)
        if name == "repeat_interleave" and kwargs.get("output_size") is None:
            read = True
        if read and not _cpu_only(inspect.currentframe()):
            self.calls.append(name)
        return func(*args, **kwargs)


def _count_reads(monkeypatch):
    """Wrap `_Loop.optimizer_step`: ``{(epoch, step): reads in that step}`` and the
    steps whose losses were read (`_Loop.flush`)."""
    from seqae import train as train_module

    per_step, flushed = {}, []
    step_fn, flush_fn = train_module._Loop.optimizer_step, train_module._Loop.flush

    def optimizer_step(self, state, step, *args, **kwargs):
        with _HostReads() as mode:
            out = step_fn(self, state, step, *args, **kwargs)
        per_step[(state.epoch + 1, step)] = len(mode.calls)
        return out

    def flush(self, state, over):
        flushed.append((state.epoch + 1, state.step))
        return flush_fn(self, state, over)

    monkeypatch.setattr(train_module._Loop, "optimizer_step", optimizer_step)
    monkeypatch.setattr(train_module._Loop, "flush", flush)
    return per_step, flushed


@pytest.mark.parametrize("encoder", ["rnn", "conv", "tokens"])
def test_steps_between_reads_never_read_the_device(monkeypatch, encoder):
    """The code-level check of issue 27 (a GPU's own check is the next test): with
    ``read_every=4`` (a GPU's way, here on the CPU) no step reads a tensor's value into
    Python except where the losses are read: every 4th step and the epoch's last; the
    model and loss code on the step (masks, crops, the contrastive terms of the conv
    recipe) read nothing either. The training losses are those of reading every step
    (the same sums; the fused AdamW rounds like the plain one within 1e-5 here)."""
    per_step, flushed = _count_reads(monkeypatch)
    kw = dict(checkpoint_every=0, max_epochs=2)
    if encoder == "conv":
        config = ModelConfig(n_features=2, latent_dim=3, hidden_size=8, encoder="conv",
                             contrastive=0.5, contrast="hierarchical", patch=2,
                             longest_predicted=19)
    elif encoder == "tokens":  # ids, cross-entropy, the copies term on random crops
        config = ModelConfig(n_features=1, vocab_size=12, latent_dim=3, hidden_size=8,
                             copies=0.5, longest_predicted=19)
    else:
        config = None
    _, history = _fit_config(config, read_every=4, **kw)
    steps = sorted(per_step)
    assert len(steps) == 2 * 35
    assert flushed == [(e, s) for e, s in steps if s % 4 == 0 or s == 35]
    for key in steps:
        assert (per_step[key] > 0) == (key in flushed), (key, per_step[key])
    monkeypatch.undo()
    _, ref = _fit_config(config, **kw)
    for got, want in zip(history, ref, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        assert got["val_loss" if "val_loss" in got else "epoch"] == pytest.approx(
            want["val_loss" if "val_loss" in want else "epoch"], rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU has the "
                    "code-level check above)")
@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype")
def test_a_gpu_step_never_synchronises(monkeypatch):
    """On a GPU: `torch.cuda.set_sync_debug_mode("error")` around every training step
    that is not a read of the losses, for an RNN and a conv recipe: any synchronising
    call (a read, a copy from pageable memory) raises."""
    from seqae import train as train_module

    step_fn, flush_fn = train_module._Loop.optimizer_step, train_module._Loop.flush

    def optimizer_step(self, *args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return step_fn(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    def flush(self, *args, **kwargs):
        torch.cuda.set_sync_debug_mode("default")
        try:
            return flush_fn(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(train_module._Loop, "optimizer_step", optimizer_step)
    monkeypatch.setattr(train_module._Loop, "flush", flush)
    for encoder in ("rnn", "conv"):
        ae = seqae.SequenceAutoencoder(encoder=encoder, hidden_size=16, max_epochs=2,
                                       max_time=None, device="cuda", precision="bf16",
                                       validation_fraction=0.2)
        ae.fit(_data(80))
        assert len(ae.history_) == 2 and math.isfinite(ae.history_[-1]["val_loss"])


def test_a_non_finite_step_between_reads_is_skipped_on_the_device(monkeypatch):
    """With ``read_every=4``: a NaN loss at epoch 2, step 6 makes no update (the fused
    AdamW skips it on the device: the weights stay finite), is found at the next read
    (step 8), and training stops naming step 6, keeping epoch 1's weights."""
    poisoned = 35 + 6

    class Poison(Callback):
        def on_train_begin(self, model, config):
            orig, calls = model.loss, {"n": 0}

            def loss(*args, **kwargs):
                out = orig(*args, **kwargs)
                if model.training:
                    calls["n"] += 1
                    if calls["n"] == poisoned:
                        return (out[0] * float("nan"),) + tuple(out[1:])
                return out

            model.loss = loss

    torch.manual_seed(1)
    model = AutoencoderNet(ModelConfig(n_features=2, latent_dim=3, hidden_size=8,
                                       longest_predicted=19))
    with cpu_threads(1):
        history = train(model, get_loss("mse"), DeviceData(_data(), torch.device("cpu")),
                        TrainConfig(**{**CONFIG, "checkpoint_every": 0, "read_every": 4}),
                        callbacks=[Poison()])
    assert len(history) == 2 and history[-1]["stopped"].endswith("epoch 2, step 6")
    assert math.isnan(history[-1]["train_loss"])
    assert history[-1]["optimizer_steps"] == 8  # it went on to the read
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_resume_between_reads_equals_an_uninterrupted_run(tmp_path):
    """With ``read_every=4`` (the fused AdamW, losses read every 4 steps and before each
    checkpoint): a crash in the middle of an epoch and a resume end bit for bit where an
    uninterrupted run does; a checkpoint of one AdamW form resumes in the other (the
    CPU's plain form here, as when a GPU's checkpoint resumes on a CPU)."""
    model, history = _fit(read_every=4)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, crash_at=CRASH_AT, read_every=4)
    again, resumed = _fit(tmp_path, resume=True, read_every=4)
    assert _untimed(resumed) == _untimed(history)
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    shutil.rmtree(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, crash_at=CRASH_AT, read_every=4)
    _, other = _fit(tmp_path, resume=True, read_every=1)
    for got, want in zip(other, history, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)


def test_a_validation_sample_is_evaluated_as_those_sequences_alone():
    """Issue 29: once the budget is spent, an epoch validates on a random share
    (`View.eval_sample`): its loss is that of a view holding those sequences alone."""
    from seqae.train import evaluate

    torch.manual_seed(0)
    model = AutoencoderNet(ModelConfig(n_features=2, latent_dim=3, hidden_size=8,
                                       longest_predicted=19)).eval()
    seqs = _data(60)
    data = DeviceData(seqs, torch.device("cpu"))
    sample = data.eval_sample(100, np.random.default_rng(3))
    held = int(sample.lengths.sum())
    assert 100 <= held < int(seqs.lengths.sum()) and held - int(sample.lengths.max()) < 100
    assert np.all(np.diff(sample.idx) > 0)  # in index order, no repeats
    alone = DeviceData(seqs.take(sample.idx), torch.device("cpu"))
    loss_fn = get_loss("mse")
    np.testing.assert_allclose(evaluate(model, sample, loss_fn, 8, "count"),
                               evaluate(model, alone, loss_fn, 8, "count"), rtol=1e-12)
    # a budget smaller than any sequence: still one sequence
    assert len(data.eval_sample(1, np.random.default_rng(0)).lengths) == 1


def test_the_heap_is_given_back_only_when_it_holds_much_free(monkeypatch):
    from seqae import heap as heap_mod

    heap = heap_mod.Heap()
    if heap.libc is None:
        pytest.skip("no glibc malloc_trim here")
    monkeypatch.setattr(heap_mod, "HEAP_FREE_LIMIT", 1 << 62)
    heap.release()
    assert heap.trims == 0
    monkeypatch.setattr(heap_mod, "HEAP_FREE_LIMIT", -1)
    heap.release()
    assert heap.trims == 1
