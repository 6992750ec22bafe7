"""The training loop: length-bucketed batches, masked loss, clipping, early stopping.

Short on purpose: one function, `train`, that a reader can follow in one sitting.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .batching import LengthBucketSampler, collate, sorted_batches
from .data import Sequences
from .distributed import Context, batch_seed, context

if TYPE_CHECKING:
    from .checkpoint import Checkpointer
    from .nn.model import AutoencoderNet
    from .stream import StreamData

__all__ = ["TrainConfig", "Callback", "DeviceData", "train", "best_epoch", "resolve_device",
           "cpu_threads"]

log = logging.getLogger("seqae")

# An epoch (one history record, one early-stopping and learning-rate decision) is at
# least this many optimizer steps: on 36 sequences a single pass is 2 steps, and patience
# counted in such passes stopped training after a few dozen steps.
MIN_EPOCH_STEPS = 32


@dataclass
class TrainConfig:
    """Training settings.

    Args:
        max_epochs: upper bound on epochs (default 100).
        max_time: wall-clock budget in seconds, checked after each epoch (default None).
        batch_size: typical sequences per batch (default 32).
        lr: Adam learning rate (default 1e-3).
        weight_decay: AdamW weight decay (default 0).
        grad_clip: max gradient norm, 0 = off (default 1.0).
        patience: epochs without improvement of the monitored loss before stopping
            (default 10); the learning rate halves after ``patience // 3`` such epochs.
            An epoch makes as many passes over the data as it takes to reach
            `MIN_EPOCH_STEPS` optimizer steps (one pass unless the data are tiny).
        batching: ``"count"``, ``"tokens"`` or ``"auto"`` (= count; see `seqae.batching`).
        seed: seeds init, shuffling and dropout (default 0).
        accumulate: batches whose gradients are summed before one optimizer step
            (default 1). The loss of a step is the sum over its batches divided by their
            valid elements; under ``torchrun`` a step takes ``world_size * accumulate``
            batches (see `seqae.distributed`).
        schedule: ``"plateau"`` (default): the learning rate halves after ``patience //
            3`` epochs without improvement; ``"budget"``: it follows a cosine from ``lr``
            down to 5 % of it over the budget (the share of ``max_time`` spent, or of
            ``max_epochs`` done, whichever is further), step by step.
        checkpoint_every: with a checkpointer, also write a checkpoint every this many
            optimizer steps inside an epoch (default 0: at the end of epochs only); a
            resume continues from the step reached, with the result of an uninterrupted
            run (data streamed from files make long epochs: `seqae.stream`).
    """

    max_epochs: int = 100
    max_time: float | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    patience: int = 10
    batching: str = "auto"
    seed: int = 0
    accumulate: int = 1
    schedule: str = "plateau"
    checkpoint_every: int = 0


class Callback:
    """Base class for training callbacks; every hook does nothing by default.

    A hook may return True from `on_epoch_end` to stop training.
    """

    def on_train_begin(self, model: nn.Module, config: TrainConfig) -> None: ...

    def on_best(self, epoch: int, state: dict[str, torch.Tensor]) -> None:
        """Called when ``epoch`` is the best so far, with a copy of its weights."""

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> bool | None: ...

    def on_train_end(self, history: list[dict[str, Any]]) -> None: ...


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None: CUDA when available (under ``torchrun`` the process's
    ``LOCAL_RANK`` GPU), else the CPU."""
    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(device)


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Inside the block torch computes on ``n`` CPU threads (``torch.set_num_threads``);
    the count before is put back after it. None leaves torch's setting alone.

    The setting is the process's: another thread running torch meanwhile shares it."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class DeviceData:
    """A `Sequences` held on a device as flat values (+ one zero row) and offsets
    (already standardised: see `seqae.scaling.Scaler`).

    `train` reads its data through `plan`, `eval_plan`, `owner`, `elements`, `steps`
    and `iterate`; `seqae.stream.StreamData` offers the same for data read from files."""

    def __init__(self, seqs: Sequences, device: torch.device):
        values = torch.as_tensor(np.ascontiguousarray(seqs.values))
        pad = torch.zeros((1,) + tuple(values.shape[1:]), dtype=values.dtype)
        self.values = torch.cat([values, pad]).to(device)
        self.offsets = torch.as_tensor(seqs.offsets).to(device)
        self.lengths = seqs.lengths
        self.device = device
        self._sampler: LengthBucketSampler | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return collate(self.values, self.offsets, torch.as_tensor(idx, device=self.device))

    def plan(self, epoch: int, batch_size: int, policy: str, seed: int,
             group: int) -> tuple[list[list[Any]], int]:
        """``(steps, passes)``: the epoch's optimizer steps, each the next ``group``
        batches of `LengthBucketSampler` (see `_plan`)."""
        s = self._sampler
        if s is None or (s.batch_size, s.policy, s.seed, s.group) != (batch_size, policy, seed,
                                                                     group):
            self._sampler = s = LengthBucketSampler(self.lengths, batch_size, policy=policy,
                                                    seed=seed, group=group)
        passes = max(1, math.ceil(MIN_EPOCH_STEPS * group / max(1, len(s))))
        return _plan(s, epoch, passes, group), passes

    def eval_plan(self, batch_size: int, policy: str) -> list[Any]:
        return sorted_batches(self.lengths, batch_size, policy)

    def owner(self, batch: Any, pos: int, world: int) -> int:
        """The rank that evaluates the batch at ``pos`` of `eval_plan`."""
        return pos % world

    def elements(self, idx: Any) -> int:
        """Valid elements of the batch ``idx`` in the loss: values of continuous data,
        tokens plus each row's end of sequence for tokens."""
        if idx is None:
            return 0
        steps = int(self.lengths[idx].sum())
        if self.values.dim() == 1:
            return steps + len(idx)
        return steps * int(self.values.shape[-1])

    def steps(self, idx: Any) -> int:
        return 0 if idx is None else int(self.lengths[idx].sum())

    def iterate(self, batches: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return (self.batch(idx) for idx in batches if idx is not None)


def _policy(batching: str) -> str:
    """Equal-count batches of length-sorted sequences, unless asked otherwise.

    Measured on a 2-core CPU (benchmarks/RESULTS.md): in 5 of 6 side-by-side runs
    equal-count sorted batches beat the token budget (fewer sequential RNN steps per
    epoch for the same padding); on a GPU an RNN's time follows the step count too.
    """
    if batching == "auto":
        return "count"
    if batching not in ("count", "tokens"):
        raise ValueError(f"batching must be 'auto', 'count' or 'tokens', got {batching!r}")
    return batching


def _monitored(record: dict[str, Any]) -> float:
    return record.get("val_loss", record["train_loss"])


def _improves(loss: float, best: float) -> bool:
    return math.isinf(best) or loss < best - 1e-6 * abs(best)


def best_epoch(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The record of the epoch whose weights `train` kept (by the same rule: the
    monitored loss, a relative improvement of 1e-6, nothing after a non-finite loss);
    None if no epoch had a finite loss."""
    best, kept = math.inf, None
    for record in history:
        loss = _monitored(record)
        if not math.isfinite(loss):
            break
        if _improves(loss, best):
            best, kept = loss, record
    return kept


@torch.no_grad()
def evaluate(
    model: AutoencoderNet, data: DeviceData | StreamData, loss_fn, batch_size: int, policy: str,
    ctx: Context | None = None,
) -> float:
    """Masked loss over every valid element of ``data`` (not a mean of batch means).

    Whatever the loss draws at random (the crops of the crop-agreement term) is seeded
    from the batch's position, so the same weights always get the same figure; under
    ``torchrun`` each rank evaluates its share of the batches and the sums are shared,
    so every rank gets the same figure."""
    ctx = ctx or Context()
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64)
    batches = data.eval_plan(batch_size, policy)
    mine = [pos for pos, b in enumerate(batches) if data.owner(b, pos, ctx.world) == ctx.rank]
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
        for pos, (x, lens) in zip(mine, data.iterate([batches[p] for p in mine]), strict=True):
            torch.manual_seed(pos)
            loss, _, n = model.loss(x, lens, loss_fn, reduction="sum")
            sums[0] += float(loss)
            sums[1] += n
    ctx.sum_(sums)
    return float(sums[0]) / max(float(sums[1]), 1.0)


def _plan(sampler: LengthBucketSampler, epoch: int, passes: int, group: int):
    """The optimizer steps of an epoch: ``passes`` passes over the data, each shuffled
    from its own seed, cut into runs of ``group`` batches (fewer at a pass's end)."""
    steps = []
    for p in range(passes):
        sampler.set_epoch((epoch - 1) * passes + p + 1)
        batches = sampler.batches()
        steps += [batches[i:i + group] for i in range(0, len(batches), group)]
    return steps


def train(
    model: AutoencoderNet,
    loss_fn,
    train_data: DeviceData | StreamData,
    config: TrainConfig,
    val_data: DeviceData | StreamData | None = None,
    callbacks: list[Callback] | None = None,
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Train ``model`` in place; returns the history, one dict per epoch.

    ``loss_fn(pred, target, lengths, reduction)`` is a masked regression loss from
    `seqae.losses`, used by ``model.loss`` for continuous data (tokens use cross-entropy).
    The monitored loss is ``val_loss`` when validation data are given, else
    ``train_loss``; the weights of the best epoch are restored at the end.

    With a ``checkpointer`` (`seqae.checkpoint.Checkpointer`) a checkpoint is written
    after every epoch; with ``resume`` training continues from the newest valid one
    (weights, optimizer, scheduler, early-stopping state, history, random generators;
    the data order follows from the epoch), so that the result equals an uninterrupted
    run's. The time budget counts the time spent before the interruption.
    """
    callbacks = callbacks or []
    policy = _policy(config.batching)
    if config.accumulate < 1:
        raise ValueError(f"accumulate must be >= 1, got {config.accumulate}")
    if config.schedule not in ("plateau", "budget"):
        raise ValueError(f"schedule must be 'plateau' or 'budget', got {config.schedule!r}")
    ctx = context()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=0.5, patience=max(1, config.patience // 3)
    )
    group = ctx.world * config.accumulate  # batches of the plan per optimizer step
    ctx.agree("data or settings", {
        "lengths": hashlib.sha256(np.ascontiguousarray(train_data.lengths).tobytes()).hexdigest(),
        "validation": None if val_data is None else hashlib.sha256(
            np.ascontiguousarray(val_data.lengths).tobytes()).hexdigest(),
        "config": {k: v for k, v in vars(config).items() if k != "max_time"},
        "parameters": [list(p.shape) for p in params]})
    for cb in callbacks:
        cb.on_train_begin(model, config)
    history: list[dict[str, Any]] = []
    best, best_state, bad_epochs = math.inf, None, 0
    first, spent, position = 1, 0.0, None
    if checkpointer is not None:
        checkpointer.world_size = ctx.world
    if checkpointer is not None and not resume and ctx.main:
        checkpointer.clear()
    ctx.barrier()
    if checkpointer is not None and resume:
        saved = checkpointer.load_latest(model, opt, sched)
        if saved is not None:
            history = saved["history"]
            best, bad_epochs = float(saved["best"]), int(saved["bad_epochs"])
            best_state = saved["best_state"]
            first = int(saved["epoch"]) + 1
            position = saved.get("position")  # written in the middle of epoch `first`
            spent = float(position["time"] if position else
                          history[-1]["time"] if history else 0.0)
            log.info("resumed from %s (epoch %d%s)", saved["folder"], first - 1,
                     f" and {position['step']} steps" if position else "")
            if saved.get("stopped"):  # the run had finished: nothing left to do
                first = config.max_epochs + 1
            kept = best_epoch(history)
            if best_state is not None and kept is not None:  # callbacks see the restored
                for cb in callbacks:                          # best, as if run through
                    cb.on_best(int(kept["epoch"]), best_state)
    start = time.perf_counter() - spent
    every = config.checkpoint_every if checkpointer is not None else 0
    for epoch in range(first, config.max_epochs + 1):
        model.train()
        total, count, steps, optimizer_steps = 0.0, 0, 0, 0
        bad_step = None
        # the same plan on every rank
        plan, passes = train_data.plan(epoch, config.batch_size, policy, config.seed, group)
        skip = 0
        if position is not None:  # resume in the middle of this epoch
            skip = int(position["step"])
            total, count = float(position["total"]), int(position["count"])
            steps, optimizer_steps = int(position["steps"]), int(position["optimizer_steps"])
            position = None
        mine = [batches[j] for batches in plan[skip:]
                for j in range(ctx.rank, len(batches), ctx.world)]
        data = train_data.iterate(mine)  # reads (streams) in the order used
        for step, batches in enumerate(plan[skip:], skip + 1):
            n_all = sum(train_data.elements(idx) for idx in batches)
            opt.zero_grad(set_to_none=True)
            local = 0.0
            for j in range(ctx.rank, len(batches), ctx.world):
                if batches[j] is None:  # a streamed lane that has run out
                    continue
                torch.manual_seed(batch_seed(config.seed, epoch, step * group + j))
                x, lens = next(data)  # (B, T, F) or (B, T) tokens, (B,)
                loss, _, _ = model.loss(x, lens, loss_fn, reduction="sum")
                local += float(loss.detach())
                if math.isfinite(local):
                    (loss / n_all).backward()
            over = config.max_time is not None and time.perf_counter() - start >= config.max_time
            shared = ctx.sum_(torch.tensor([local, float(over)], dtype=torch.float64))
            value = float(shared[0]) / n_all
            if not math.isfinite(value):  # never step on it: the weights stay finite
                bad_step = step
                total, count = value, 1
                break
            ctx.sum_gradients(params)
            if config.grad_clip:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            if config.schedule == "budget":
                done = (epoch - 1 + step / len(plan)) / config.max_epochs
                if config.max_time:
                    done = max(done, (time.perf_counter() - start) / config.max_time)
                for g in opt.param_groups:
                    g["lr"] = config.lr * (0.05 + 0.475 * (1 + math.cos(math.pi * min(done, 1))))
            opt.step()
            optimizer_steps += 1
            total += float(shared[0])
            count += n_all
            steps += sum(train_data.steps(idx) for idx in batches)
            if shared[1] > 0:
                break  # the budget is spent (on some rank): finish this epoch early
            if every and step % every == 0 and step < len(plan) and ctx.main:
                assert checkpointer is not None
                checkpointer.save(epoch - 1, model, opt, sched, best_state, {
                    "history": history, "best": best, "bad_epochs": bad_epochs,
                    "stopped": False, "position": {
                        "step": step, "total": total, "count": count, "steps": steps,
                        "optimizer_steps": optimizer_steps,
                        "time": time.perf_counter() - start}}, step=step)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": total / max(count, 1),
                                  "steps": steps, "passes": passes,
                                  "optimizer_steps": optimizer_steps}
        if val_data is not None:  # (after a non-finite step the epoch counts as failed)
            record["val_loss"] = math.nan if bad_step else evaluate(
                model, val_data, loss_fn, 4 * config.batch_size, policy, ctx)
        record["lr"] = opt.param_groups[0]["lr"]
        record["time"] = time.perf_counter() - start
        history.append(record)
        monitored = _monitored(record)
        if not math.isfinite(monitored):
            where = f"epoch {epoch}" + (f", step {bad_step}" if bad_step else "")
            record["stopped"] = f"non-finite loss ({monitored}) at {where}"
            log.warning("%s: the loss is %s; training stops and keeps the best epoch's "
                        "weights (the last checkpoint stays loadable)", where, monitored)
            break
        if config.schedule == "plateau":
            sched.step(monitored)
        if _improves(monitored, best):
            best, bad_epochs = monitored, 0
            best_state = copy.deepcopy(model.state_dict())
            for cb in callbacks:
                cb.on_best(epoch, best_state)
        else:
            bad_epochs += 1
        log.info(
            "epoch %d  train_loss %.5f%s  lr %.2g  %.1fs",
            epoch,
            record["train_loss"],
            f"  val_loss {record['val_loss']:.5f}" if "val_loss" in record else "",
            record["lr"],
            record["time"],
        )
        stop = any([bool(cb.on_epoch_end(epoch, record)) for cb in callbacks])  # call them all
        stop = stop or bad_epochs >= config.patience or epoch == config.max_epochs or (
            config.max_time is not None and record["time"] >= config.max_time)
        stop = bool(ctx.sum_(torch.tensor([float(stop)], dtype=torch.float64))[0] > 0)
        if checkpointer is not None and ctx.main:
            checkpointer.save(epoch, model, opt, sched, best_state,
                              {"history": history, "best": best, "bad_epochs": bad_epochs,
                               "stopped": stop})
        if stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    for cb in callbacks:
        cb.on_train_end(history)
    return history
