"""The training loop: length-bucketed batches, masked loss, clipping, early stopping.

Short on purpose: one function, `train`, that a reader can follow in one sitting.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .batching import LengthBucketSampler, collate, sorted_batches
from .data import Sequences

if TYPE_CHECKING:
    from .checkpoint import Checkpointer
    from .nn.model import AutoencoderNet

__all__ = ["TrainConfig", "Callback", "DeviceData", "train", "best_epoch", "resolve_device"]

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
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class DeviceData:
    """A `Sequences` held on a device as flat values (+ one zero row) and offsets
    (already standardised: see `seqae.scaling.Scaler`)."""

    def __init__(self, seqs: Sequences, device: torch.device):
        values = torch.as_tensor(np.ascontiguousarray(seqs.values))
        pad = torch.zeros((1,) + tuple(values.shape[1:]), dtype=values.dtype)
        self.values = torch.cat([values, pad]).to(device)
        self.offsets = torch.as_tensor(seqs.offsets).to(device)
        self.lengths = seqs.lengths
        self.device = device

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return collate(self.values, self.offsets, torch.as_tensor(idx, device=self.device))


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
    model: AutoencoderNet, data: DeviceData, loss_fn, batch_size: int, policy: str
) -> float:
    """Masked loss over every valid element of ``data`` (not a mean of batch means).

    Whatever the loss draws at random (the crops of the crop-agreement term) comes from
    a fixed seed, so the same weights always get the same figure."""
    model.eval()
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
        torch.manual_seed(0)
        for idx in sorted_batches(data.lengths, batch_size, policy):
            x, lens = data.batch(idx)
            loss, _, n = model.loss(x, lens, loss_fn, reduction="sum")
            total += float(loss)
            count += n
    return total / max(count, 1)


def _passes(sampler: LengthBucketSampler, epoch: int, passes: int):
    """The batches of ``passes`` passes over the data, each shuffled from its own seed."""
    for p in range(passes):
        sampler.set_epoch((epoch - 1) * passes + p + 1)
        yield from sampler


def train(
    model: AutoencoderNet,
    loss_fn,
    train_data: DeviceData,
    config: TrainConfig,
    val_data: DeviceData | None = None,
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
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=0.5, patience=max(1, config.patience // 3)
    )
    sampler = LengthBucketSampler(
        train_data.lengths, config.batch_size, policy=policy, seed=config.seed
    )
    passes = max(1, math.ceil(MIN_EPOCH_STEPS / max(1, len(sampler))))
    for cb in callbacks:
        cb.on_train_begin(model, config)
    history: list[dict[str, Any]] = []
    best, best_state, bad_epochs = math.inf, None, 0
    first, spent = 1, 0.0
    if checkpointer is not None and not resume:
        checkpointer.clear()
    if checkpointer is not None and resume:
        saved = checkpointer.load_latest(model, opt, sched)
        if saved is not None:
            history = saved["history"]
            best, bad_epochs = float(saved["best"]), int(saved["bad_epochs"])
            best_state = saved["best_state"]
            first = int(saved["epoch"]) + 1
            spent = float(history[-1]["time"]) if history else 0.0
            log.info("resumed from %s (epoch %d)", saved["folder"], first - 1)
            if saved.get("stopped"):  # the run had finished: nothing left to do
                first = config.max_epochs + 1
            if best_state is not None:  # callbacks see the restored best, as if run through
                best_epoch = min((r for r in history if math.isfinite(_monitored(r))),
                                 key=_monitored)["epoch"]
                for cb in callbacks:
                    cb.on_best(int(best_epoch), best_state)
    start = time.perf_counter() - spent
    for epoch in range(first, config.max_epochs + 1):
        model.train()
        total, count, steps = 0.0, 0, 0
        bad_step = None
        for step, idx in enumerate(_passes(sampler, epoch, passes), 1):
            x, lens = train_data.batch(idx)  # (B, T, F) or (B, T) tokens, (B,)
            loss, _, n = model.loss(x, lens, loss_fn)  # mean over the n valid elements
            value = float(loss.detach())
            if not math.isfinite(value):  # never step on it: the weights stay finite
                bad_step = step
                total, count = value, 1
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            total += value * n
            count += n
            steps += int(lens.sum())
            if config.max_time is not None and time.perf_counter() - start >= config.max_time:
                break  # the budget is spent: finish this epoch early
        record: dict[str, Any] = {"epoch": epoch, "train_loss": total / max(count, 1),
                                  "steps": steps, "passes": passes}
        if val_data is not None:  # (after a non-finite step the epoch counts as failed)
            record["val_loss"] = math.nan if bad_step else evaluate(
                model, val_data, loss_fn, 4 * config.batch_size, policy)
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
        if checkpointer is not None:
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
