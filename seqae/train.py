"""The training loop, and what it is made of.

`train` fits a model in place: AdamW over length-bucketed batches (`seqae.batching`),
the masked loss summed over every valid element of a step, gradient clipping, the
learning rate halved on plateaus or following a cosine over the budget (`budget_lr`),
early stopping on the monitored loss, checkpoints and exact resume
(`seqae.checkpoint`), and data parallelism under ``torchrun`` (`seqae.distributed`).
It runs a few named steps in turn (begin, run an epoch: its optimizer steps, each the
forward and backward passes of its batches; end the epoch: keep the best, decide to
stop, checkpoint; finish) over a `LoopState`, which is also what a checkpoint saves.

Also here: `TrainConfig` (the settings), `Callback` (the hooks), `View` (what the loop
reads data through: `seqae.sources.DeviceData`, `seqae.stream.StreamData`), `evaluate`
(the loss over a whole data set), `best_epoch` (which epoch's weights are kept),
`resolve_device` and `cpu_threads`.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from .batching import to_device
from .distributed import Context, batch_seed, context
from .heap import Heap

if TYPE_CHECKING:
    from .checkpoint import Checkpointer
    from .nn.model import AutoencoderNet

__all__ = ["TrainConfig", "Callback", "View", "LoopState", "train", "best_epoch",
           "budget_lr", "resolve_device", "cpu_threads", "PRECISIONS", "autocast"]

log = logging.getLogger("seqae")



@dataclass
class TrainConfig:
    """Training settings.

    Args:
        max_epochs: upper bound on epochs (default 100).
        max_time: wall-clock budget in seconds (default None), checked at every
            optimizer step: once it is spent, the epoch ends there and training stops.
            The epoch's validation pass counts in it: a step ends the epoch once the
            time spent plus the last validation pass's duration reaches the budget, so
            that the last validation ends within it.
        batch_size: typical sequences per batch (default 32).
        lr: AdamW learning rate (default 1e-3).
        weight_decay: AdamW weight decay (default 0).
        grad_clip: max gradient norm, 0 = off (default 1.0).
        patience: epochs without improvement of the monitored loss before stopping
            (default 10); the learning rate halves after ``patience // 3`` such epochs.
            An epoch makes as many passes over the data as it takes to reach
            `seqae.batching.MIN_EPOCH_STEPS` optimizer steps (one pass unless the data are tiny).
        batching: ``"count"``, ``"tokens"`` or ``"auto"`` (= count; see `seqae.batching`).
        seed: seeds init, shuffling and dropout (default 0).
        accumulate: batches whose gradients are summed before one optimizer step
            (default 1). The loss of a step is the sum over its batches divided by their
            valid elements; under ``torchrun`` a step takes ``world_size * accumulate``
            batches (see `seqae.distributed`).
        schedule: ``"plateau"`` (default): the learning rate halves after ``patience //
            3`` epochs without improvement; ``"budget"``: it follows a cosine from ``lr``
            down to 5 % of it over the budget (the share of ``max_time`` spent, or of
            ``max_epochs`` done, whichever is further), step by step (`budget_lr`).
        checkpoint_every: with a checkpointer, also write a checkpoint every this many
            optimizer steps inside an epoch (default 0: at the end of epochs only); a
            resume continues from the step reached, with the result of an uninterrupted
            run (data streamed from files make long epochs: `seqae.stream`).
        precision: ``"32"`` (default: float32), ``"bf16"`` or ``"16"``: the forward
            passes of training and validation run under ``torch.autocast`` in bfloat16 or
            float16 (`autocast`); the weights, optimizer and masked losses stay in float32
            (`seqae.losses.in_float32`). ``"16"`` scales the loss (``torch.amp.GradScaler``:
            a step whose gradients overflow is skipped and the scale lowered); the scale
            is not in checkpoints, so a resume under ``"16"`` starts it afresh.
        read_every: optimizer steps between reads of the losses from the device (default
            None: 1 on the CPU, `READ_EVERY` on an accelerator). Between reads a step
            never waits for the device: its losses add up there, and a step whose
            gradients are not finite is skipped there (AdamW's fused form, which takes
            a skip flag); at a read the sums, the time budget and any non-finite step
            are shared by every rank, so all decide alike. With ``read_every`` 1 (the
            CPU, where a read costs nothing) a non-finite loss stops the epoch before
            its update; with more, at the next read, after the finite steps in between.
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
    precision: str = "32"
    read_every: int | None = None


# Optimizer steps between two reads from a GPU (`TrainConfig.read_every`); chosen by
# measurement (benchmarks/gpu.py, RESULTS.md "GPU: host reads").
READ_EVERY = 32
# once max_time is spent, the epoch's validation looks at most at this share of the steps
# it trained (forward passes at about 3x a training step's pace: ~3 % of its time)
VAL_SHARE = 0.1


class Callback:
    """Base class for training callbacks; every hook does nothing by default.

    A hook may return True from `on_epoch_end` to stop training.
    """

    def on_train_begin(self, model: nn.Module, config: TrainConfig) -> None: ...

    def on_best(self, epoch: int, state: dict[str, torch.Tensor]) -> None:
        """Called when ``epoch`` is the best so far, with a copy of its weights."""

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> bool | None: ...

    def on_train_end(self, history: list[dict[str, Any]]) -> None: ...

    def on_phase(self, name: str, done: int, total: int) -> None:
        """A long phase between the steps (``"validation"``) has ``done`` of ``total``."""


PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The context the forward passes run in: nothing for ``"32"``, else
    ``torch.autocast`` on ``device``'s type in bfloat16 (``"bf16"``) or float16
    (``"16"``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None: CUDA when available (under ``torchrun`` the process's
    ``LOCAL_RANK`` GPU), else the CPU."""
    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device {device!r} is not a torch device: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here; use 'cpu' or 'auto'")
    return dev


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


class View(Protocol):
    """What `train` and `evaluate` read data through: `seqae.sources.DeviceData`
    (sequences held on the device) and `seqae.stream.StreamData` (read from files)."""

    lengths: np.ndarray
    device: torch.device

    def plan(self, epoch: int, batch_size: int, policy: str, seed: int,
             group: int) -> tuple[list[list[Any]], int]:
        """``(steps, passes)``: the epoch's optimizer steps, ``group`` batches each (the
        same on every rank), and how many passes over the data they make."""
        ...

    def eval_plan(self, batch_size: int, policy: str) -> list[Any]:
        """Every sequence once, in batches."""
        ...

    def eval_sample(self, steps: int, rng: np.random.Generator) -> View:
        """The same data, evaluated on a random share of about ``steps`` valid steps (at
        least one sequence; for files, only the chunks holding them are read):
        `evaluate` within the budget."""
        ...

    def owner(self, batch: Any, pos: int, world: int) -> int:
        """The rank that evaluates the batch at ``pos`` of `eval_plan`."""
        ...

    def elements(self, batch: Any) -> float:
        """What a batch's summed loss is divided by: its valid elements (0 for None, a
        lane that ran out), or with `weights` the sum of its weights."""
        ...

    def weights(self, batch: Any) -> np.ndarray | None:
        """Each sequence's weight on its own mean loss (``loss_normalize="sequence"``,
        ``sample_weight``: `seqae.sources.coefficients`); None: the plain sum over the
        valid elements."""
        ...

    def steps(self, batch: Any) -> int:
        """Valid steps of a batch."""
        ...

    def iterate(self, batches: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, lengths)`` of each batch in turn (None skipped)."""
        ...


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
    model: AutoencoderNet, data: View, loss_fn, batch_size: int, policy: str,
    ctx: Context | None = None, precision: str = "32",
    report: Callable[[int, int], None] | None = None,
) -> float:
    """Masked loss over every valid element of ``data`` (not a mean of batch means).

    Whatever the loss draws at random (the crops of the crop-agreement term) is seeded
    from the batch's position, so the same weights always get the same figure; under
    ``torchrun`` each rank evaluates its share of the batches and the sums are shared,
    so every rank gets the same figure. The forward passes run in ``precision``
    (`autocast`). ``report(done, total)``: this rank's valid steps evaluated so far."""
    ctx = ctx or Context()
    model.eval()
    # summed on the device, read once at the end (float64: the same sums as on the host)
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    count: float = 0
    batches = data.eval_plan(batch_size, policy)
    mine = [pos for pos, b in enumerate(batches) if data.owner(b, pos, ctx.world) == ctx.rank]
    done, todo = 0, sum(data.steps(batches[p]) for p in mine)
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
        for pos, (x, lens) in zip(mine, data.iterate([batches[p] for p in mine]), strict=True):
            torch.manual_seed(pos)
            with autocast(data.device, precision):
                loss = _batch_loss(model, x, lens, loss_fn,
                                   _weights(data, batches[pos], x.device))
            total += loss.detach().double()
            count += data.elements(batches[pos])  # from the lengths on the host
            if report is not None:
                done += data.steps(batches[pos])
                report(done, todo)
    sums = torch.tensor([float(total), count], dtype=torch.float64)
    ctx.sum_(sums)
    return float(sums[0]) / (float(sums[1]) or 1.0)


def _weights(data: View, batch: Any, device: torch.device) -> torch.Tensor | None:
    """The batch's weights (`View.weights`) on ``device`` (through pinned memory to a
    GPU, without waiting for it), or None."""
    w = data.weights(batch)
    if w is None:
        return None
    return to_device(torch.as_tensor(np.asarray(w, dtype=np.float32)), device)


def _batch_loss(model: AutoencoderNet, x: torch.Tensor, lens: torch.Tensor, loss_fn,
                weights: torch.Tensor | None) -> torch.Tensor:
    """The summed loss of a batch (`AutoencoderNet.loss`), given its weights only when
    it has some: the call without weights is the one made before they existed (a
    callback that wraps ``model.loss`` keeps working)."""
    if weights is None:
        return model.loss(x, lens, loss_fn, reduction="sum")[0]
    return model.loss(x, lens, loss_fn, reduction="sum", weights=weights)[0]


@dataclass
class LoopState:
    """What `train` carries from step to step and from epoch to epoch: exactly what a
    checkpoint saves besides the weights, optimizer, scheduler and random generators
    (`seqae.checkpoint`), so that a resume continues where the run stood.

    Args:
        history: one record per finished epoch.
        best: the best monitored loss so far (inf before any).
        bad_epochs: epochs since the monitored loss last improved.
        best_state: a copy of the weights of the best epoch (None before any).
        epoch: epochs finished.
        step: optimizer steps of the next epoch's plan done (0 between epochs; more
            after a checkpoint written in the middle of an epoch).
        total: the sum of the training losses of those steps.
        count: the valid elements of those steps (with weights: the sum of theirs).
        steps: the sequence steps of those steps.
        optimizer_steps: the updates made in those steps.
        time: seconds of training spent when last measured (at the end of the last
            epoch, or at the mid-epoch checkpoint); a resumed run counts them against
            ``max_time``.
        stopped: training is over: a resumed run has nothing left to do.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = math.inf
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    epoch: int = 0
    step: int = 0
    total: float = 0.0
    count: float = 0
    steps: int = 0
    optimizer_steps: int = 0
    time: float = 0.0
    stopped: bool = False

    def to_checkpoint(self) -> dict[str, Any]:
        """The ``state`` that `Checkpointer.save` writes into ``state.json`` (the epoch,
        step and best weights are its other arguments): the history, the early-stopping
        counters and whether training stopped, plus the ``position`` inside the epoch
        when ``step`` is not 0."""
        doc: dict[str, Any] = {"history": self.history, "best": self.best,
                               "bad_epochs": self.bad_epochs, "stopped": self.stopped}
        if self.step:
            doc["position"] = {"step": self.step, "total": self.total, "count": self.count,
                               "steps": self.steps, "optimizer_steps": self.optimizer_steps,
                               "time": self.time}
        return doc

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> LoopState:
        """The state that `Checkpointer.load_latest` returned as ``saved`` (its
        ``state.json`` plus ``best_state``): what `to_checkpoint` wrote, with the epoch."""
        history = saved["history"]
        state = cls(history=history, best=float(saved["best"]),
                    bad_epochs=int(saved["bad_epochs"]), best_state=saved.get("best_state"),
                    epoch=int(saved["epoch"]), stopped=bool(saved.get("stopped")))
        position = saved.get("position")  # written in the middle of epoch `epoch + 1`
        if position:
            state.step, state.total = int(position["step"]), float(position["total"])
            state.count, state.steps = position["count"], int(position["steps"])
            state.optimizer_steps = int(position["optimizer_steps"])
            state.time = float(position["time"])
        elif history:
            state.time = float(history[-1]["time"])
        return state

    def finish_epoch(self, record: dict[str, Any]) -> None:
        """Append the record of the epoch just run and start counting the next one."""
        self.history.append(record)
        self.time = record["time"]
        self.epoch += 1
        self.step = self.count = self.steps = self.optimizer_steps = 0
        self.total = 0.0


def budget_lr(lr: float, done: float) -> float:
    """The learning rate of ``schedule="budget"`` once the share ``done`` of the budget
    is spent: a cosine from ``lr`` (``done`` = 0) down to 5 % of it (``done`` >= 1)."""
    return lr * (0.05 + 0.475 * (1 + math.cos(math.pi * min(done, 1))))


def train(
    model: AutoencoderNet,
    loss_fn,
    train_data: View,
    config: TrainConfig,
    val_data: View | None = None,
    callbacks: list[Callback] | None = None,
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Train ``model`` in place with AdamW; returns the history, one dict per epoch.

    ``loss_fn(pred, target, lengths, reduction)`` is a masked regression loss from
    `seqae.losses`, used by ``model.loss`` for continuous data (tokens use cross-entropy).
    The monitored loss is ``val_loss`` when validation data are given, else
    ``train_loss``; the weights of the best epoch are restored at the end.

    With a ``checkpointer`` (`seqae.checkpoint.Checkpointer`) a checkpoint is written
    after every epoch (and every ``config.checkpoint_every`` optimizer steps inside one);
    with ``resume`` training continues from the newest valid one (weights, optimizer,
    scheduler, early-stopping state, history, random generators, the step reached; the
    data order follows from the epoch), so that the result equals an uninterrupted
    run's. The time budget counts from the call (setting up included) and the time spent
    before the interruption.
    """
    loop = _Loop(model, loss_fn, train_data, config, val_data, callbacks or [], checkpointer)
    state = loop.begin(resume)
    while not state.stopped and state.epoch < config.max_epochs:
        record, bad_step = loop.run_epoch(state)
        loop.end_epoch(state, record, bad_step)
    loop.finish(state)
    return state.history


class _Loop:
    """One call of `train`: what stays fixed while it runs (the model, its optimizer and
    scheduler, the data, the settings, this process's place, the clock) and the named
    steps that move a `LoopState` on."""

    def __init__(self, model: AutoencoderNet, loss_fn, train_data: View,
                 config: TrainConfig, val_data: View | None,
                 callbacks: list[Callback], checkpointer: Checkpointer | None):
        # the budget counts from here: building the optimizer may import much of torch
        # the first time (seconds)
        self.created = time.perf_counter()
        self.policy = _policy(config.batching)
        if config.accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {config.accumulate}")
        if config.schedule not in ("plateau", "budget"):
            raise ValueError(f"schedule must be 'plateau' or 'budget', got {config.schedule!r}")
        self.model, self.loss_fn, self.config = model, loss_fn, config
        self.train_data, self.val_data = train_data, val_data
        self.callbacks, self.checkpointer = callbacks, checkpointer
        self.ctx = context()
        self.params = [p for p in model.parameters() if p.requires_grad]
        device = train_data.device
        self.read_every = config.read_every or (1 if device.type == "cpu" else READ_EVERY)
        if self.read_every < 1:
            raise ValueError(f"read_every must be >= 1, got {config.read_every}")
        # steps between reads skip non-finite updates on the device: the fused AdamW
        # takes the flag (on the CPU, reading each step, the plain one as always)
        self.fused = self.read_every > 1
        self.opt = torch.optim.AdamW(self.params, lr=config.lr,
                                     weight_decay=config.weight_decay,
                                     fused=True if self.fused else None)
        # read at the next flush: the step losses summed on the device since the last
        # read, and the first step whose update was skipped as not finite (0: none)
        self.pending = torch.zeros((), dtype=torch.float64, device=device)
        self.first_bad = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_step: int | None = None
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, factor=0.5, patience=max(1, config.patience // 3))
        self.group = self.ctx.world * config.accumulate  # batches of the plan per step
        self.every = config.checkpoint_every if checkpointer is not None else 0
        self.start = 0.0  # the clock's reading at time 0 of the run (set by `begin`)
        # seconds the last validation pass took (kept free at the end of the budget), and
        # whether an epoch ended early on the budget (on every rank alike)
        self.val_seconds = 0.0
        self.out_of_time = False
        self.heap = Heap() if train_data.device.type == "cpu" else None
        autocast(train_data.device, config.precision)  # checks the setting
        # float16 scales the loss so that small gradients do not underflow
        self.scaler = (torch.amp.GradScaler(train_data.device.type)
                       if config.precision == "16" else None)

    def elapsed(self) -> float:
        """Seconds of training spent, those before a resume included."""
        return time.perf_counter() - self.start

    # ------------------------------------------------------------------ setup
    def begin(self, resume: bool) -> LoopState:
        """Check that every rank has the same data and settings, tell the callbacks, then
        start afresh (clearing an older run's checkpoints) or from the newest checkpoint
        (`resume_from`); the clock starts."""
        ctx, config = self.ctx, self.config
        ctx.agree("data or settings", {
            "lengths": _sha256(self.train_data.lengths),
            "validation": None if self.val_data is None else _sha256(self.val_data.lengths),
            "config": {k: v for k, v in vars(config).items() if k != "max_time"},
            "parameters": [list(p.shape) for p in self.params]})
        for cb in self.callbacks:
            cb.on_train_begin(self.model, config)
        state = LoopState()
        if self.checkpointer is not None:
            self.checkpointer.world_size = ctx.world
            if not resume and ctx.main:
                self.checkpointer.clear()
        ctx.barrier()
        if self.checkpointer is not None and resume:
            state = self.resume_from(self.checkpointer)
        # time 0 of the run: this call's start, less the time spent before a resume
        self.start = self.created - state.time
        return state

    def resume_from(self, checkpointer: Checkpointer) -> LoopState:
        """The state of the newest valid checkpoint, restored with the weights, optimizer,
        scheduler and generators (a fresh state when there is none); the callbacks see
        the best epoch restored, as if run through."""
        saved = checkpointer.load_latest(self.model, self.opt, self.sched)
        if saved is None:
            return LoopState()
        self._optimizer_form()
        state = LoopState.from_checkpoint(saved)
        log.info("resumed from %s (epoch %d%s)", saved["folder"], state.epoch,
                 f" and {state.step} steps" if state.step else "")
        kept = best_epoch(state.history)
        if state.best_state is not None and kept is not None:
            for cb in self.callbacks:
                cb.on_best(int(kept["epoch"]), state.best_state)
        return state

    def _optimizer_form(self) -> None:
        """Make a loaded optimizer state take this run's AdamW form (a checkpoint keeps
        the form it was written with: fused on a GPU, plain on the CPU): the same
        numbers, kept where that form keeps them."""
        for g in self.opt.param_groups:
            g["fused"], g["foreach"] = (True if self.fused else None), None
        for p, st in self.opt.state.items():
            if "step" in st:
                st["step"] = st["step"].to(p.device if self.fused else "cpu", torch.float32)

    # ------------------------------------------------------------------ an epoch
    def run_epoch(self, state: LoopState) -> tuple[dict[str, Any], int | None]:
        """Epoch ``state.epoch + 1`` (from the step reached, after a mid-epoch resume):
        its record, and the step whose loss was not finite (None: none was)."""
        config = self.config
        epoch = state.epoch + 1
        self.model.train()
        # the same plan on every rank
        plan, passes = self.train_data.plan(epoch, config.batch_size, self.policy,
                                            config.seed, self.group)
        bad_step = self.run_steps(state, plan)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": state.total / (state.count or 1),
                                  "steps": state.steps, "passes": passes,
                                  "optimizer_steps": state.optimizer_steps}
        if self.val_data is not None:  # (after a non-finite step the epoch counts as failed)
            began = time.perf_counter()
            val = self.val_data
            if self.out_of_time:  # the budget is spent: validate within it
                val, record["val_sequences"] = self.within_budget(epoch, state.steps)
            record["val_loss"] = math.nan if bad_step else evaluate(
                self.model, val, self.loss_fn, 4 * config.batch_size, self.policy,
                self.ctx, config.precision, self.report_validation)
            self.val_seconds = time.perf_counter() - began
        record["lr"] = self.opt.param_groups[0]["lr"]
        record["time"] = self.elapsed()
        return record, bad_step

    def report_validation(self, done: int, total: int) -> None:
        for cb in self.callbacks:
            cb.on_phase("validation", done, total)

    def within_budget(self, epoch: int, trained: int) -> tuple[View, int]:
        """``(view, sequences)``: the validation data, or when they hold more than
        `VAL_SHARE` of the ``trained`` steps of an epoch the budget ended, a random
        share of that size (drawn from the seed and epoch, alike on every rank), so that
        validating costs a few percent of the budget at any data size (forward passes
        only: about a third of a training step's time each)."""
        data = self.val_data
        assert data is not None
        want = max(1, int(VAL_SHARE * trained))
        if int(data.lengths.sum()) <= want:
            return data, len(data.lengths)
        sample = data.eval_sample(want, np.random.default_rng([self.config.seed, epoch, 30]))
        log.info("max_time: validation on a random %d of the %d validation sequences "
                 "(the budget is spent)", len(sample.lengths), len(data.lengths))
        return sample, len(sample.lengths)

    def run_steps(self, state: LoopState, plan: list[list[Any]]) -> int | None:
        """The optimizer steps of ``plan`` after the ``state.step`` already done, with
        the mid-epoch checkpoints; the epoch ends early once the time budget is spent.
        Returns the step whose loss was not finite (None: none was)."""
        ctx, skip = self.ctx, state.step
        mine = [batches[j] for batches in plan[skip:]
                for j in range(ctx.rank, len(batches), ctx.world)]
        data = self.train_data.iterate(mine)  # reads (streams) in the order used
        for step, batches in enumerate(plan[skip:], skip + 1):
            save = bool(self.every) and step % self.every == 0 and step < len(plan)
            outcome = self.optimizer_step(state, step, batches, data, len(plan), save)
            if self.heap is not None:
                self.heap.release()
            if outcome == "non-finite":
                return self.bad_step
            if outcome == "over":
                self.out_of_time = True
                break  # the budget is spent (on some rank): finish this epoch early
            if save and ctx.main:
                state.time = self.elapsed()
                self.checkpoint(state)
        return None

    def optimizer_step(self, state: LoopState, step: int, batches: list[Any],
                       data: Iterator[tuple[torch.Tensor, torch.Tensor]],
                       n_steps: int, save: bool = False,
                       ) -> Literal["done", "over", "non-finite"]:
        """Step ``step`` (of the ``n_steps`` of the epoch's plan) over ``batches``: the
        gradients of this rank's share, summed over the ranks, clipped, then one AdamW
        update, counted in ``state``. Returns ``"done"``; ``"over"``: done, and the time
        budget is spent; ``"non-finite"``: a loss since the last read was not finite
        (``self.bad_step``: the first such step), its update was not made, and the loss
        of the epoch becomes it. The losses are read every ``self.read_every`` steps
        (`flush`), at the plan's last step, before a checkpoint (``save``), and on one
        process once the budget is spent."""
        config = self.config
        n_all = sum(self.train_data.elements(idx) for idx in batches)
        # (0 when every sequence of the step weighs 0: their losses, 0 too, are kept)
        n_div = n_all or 1
        self.opt.zero_grad(set_to_none=True)
        local = self.backward(state.epoch + 1, step, batches, data, n_div)
        over = config.max_time is not None and (
            self.elapsed() + self.val_seconds >= config.max_time)
        if self.read_every == 1:  # read now, and never step on a non-finite loss
            shared = self.ctx.sum_(torch.tensor([float(local), float(over)],
                                                dtype=torch.float64))
            value = float(shared[0]) / n_div
            if not math.isfinite(value):  # the weights stay finite
                state.total, state.count, self.bad_step = value, 1, step
                return "non-finite"
            state.total += float(shared[0])
            over = bool(shared[1] > 0)
        else:
            self.pending += local
        self.ctx.sum_gradients(self.params)
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        norm = (nn.utils.clip_grad_norm_(self.params, config.grad_clip) if config.grad_clip
                else None)
        if config.schedule == "budget":
            lr = budget_lr(config.lr, self.budget_done(state.epoch + 1, step, n_steps))
            for g in self.opt.param_groups:
                g["lr"] = lr
        if self.fused:
            self.skip_non_finite(step, local, norm)
        if self.scaler is None:
            self.opt.step()
        else:  # skips the update when the gradients overflowed
            self.scaler.step(self.opt)
            self.scaler.update()
        state.step = step
        state.optimizer_steps += 1
        state.count += n_all
        state.steps += sum(self.train_data.steps(idx) for idx in batches)
        if self.read_every > 1 and (step % self.read_every == 0 or step == n_steps or save
                                    or (over and self.ctx.world == 1)):
            over, bad_step = self.flush(state, over)
            if bad_step is not None:
                state.total, state.count, self.bad_step = math.nan, 1, bad_step
                return "non-finite"
        return "over" if over else "done"

    def skip_non_finite(self, step: int, local: torch.Tensor,
                        norm: torch.Tensor | None) -> None:
        """Between reads: have the fused AdamW skip this step on the device when its
        gradients (the same on every rank) or, on one process, its loss are not finite,
        and keep the first such step for the next read. Under ``"16"`` the grad scaler
        skips overflowed steps itself (an overflow is not a failure there), and only a
        non-finite loss counts."""
        loss_bad = ~torch.isfinite(local)
        if self.scaler is None:
            if norm is None:
                norm = nn.utils.get_total_norm(
                    [p.grad for p in self.params if p.grad is not None])
            bad = ~torch.isfinite(norm)
            if self.ctx.world == 1:
                bad = bad | loss_bad
            self.opt.found_inf = bad.float()  # type: ignore[attr-defined]
        else:
            bad = loss_bad
        self.first_bad = torch.where(bad & (self.first_bad == 0), step, self.first_bad)

    def flush(self, state: LoopState, over: bool) -> tuple[bool, int | None]:
        """Read what the steps since the last read left on the device (the one wait on
        it), shared by every rank: the sum of their losses (added to ``state.total``),
        whether the time budget is spent on any rank, and the first step whose update
        was skipped as not finite on any (None: none)."""
        ctx, dev = self.ctx, self.pending.device
        slots = torch.zeros(ctx.world, dtype=torch.float64, device=dev)
        slots[ctx.rank] = self.first_bad.double()  # rank r's first bad step in slot r
        flag = torch.tensor([float(over)], dtype=torch.float64, device=dev)
        read = torch.cat([self.pending[None], flag, slots]).cpu()
        ctx.sum_(read)
        self.pending.zero_()
        self.first_bad.zero_()
        bad = [int(b) for b in read[2:].tolist() if b > 0]
        state.total += float(read[0])
        return bool(read[1] > 0), (min(bad) if bad else None)

    def backward(self, epoch: int, step: int, batches: list[Any],
                 data: Iterator[tuple[torch.Tensor, torch.Tensor]],
                 n_all: float) -> torch.Tensor:
        """Forward and backward passes over this rank's batches of a step (rank r takes
        batches r, r + world, ...), each seeded from its place in the plan; the gradients
        add up scaled by the step's ``n_all`` valid elements (under ``"16"`` scaled by the
        grad scaler). Returns the sum of this rank's batch losses, added on the device in
        float64 (the same sum as reading each batch's loss), not read."""
        ctx = self.ctx
        local = torch.zeros((), dtype=torch.float64, device=self.train_data.device)
        for j in range(ctx.rank, len(batches), ctx.world):
            if batches[j] is None:  # a streamed lane that has run out
                continue
            torch.manual_seed(batch_seed(self.config.seed, epoch, step * self.group + j))
            x, lens = next(data)  # (B, T, F) or (B, T) tokens, (B,)
            with autocast(x.device, self.config.precision):
                loss = _batch_loss(self.model, x, lens, self.loss_fn,
                                   _weights(self.train_data, batches[j], x.device))
            local += loss.detach().double()
            scaled = loss / n_all
            (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()
        return local

    def budget_done(self, epoch: int, step: int, n_steps: int) -> float:
        """The share of the budget spent at ``step`` of ``n_steps`` of ``epoch``: of
        ``max_epochs``, or of ``max_time`` when that is further."""
        config = self.config
        done = (epoch - 1 + step / n_steps) / config.max_epochs
        if config.max_time:
            done = max(done, self.elapsed() / config.max_time)
        return done

    # ------------------------------------------------------------------ between epochs
    def end_epoch(self, state: LoopState, record: dict[str, Any], bad_step: int | None) -> None:
        """Count the epoch of ``record`` in ``state``, then: stop at once on a non-finite
        monitored loss; else step the plateau scheduler, keep the weights if they are the
        best, ask the callbacks, decide (on every rank alike) whether to stop, and write
        the checkpoint."""
        state.finish_epoch(record)
        monitored = _monitored(record)
        if not math.isfinite(monitored):
            where = f"epoch {state.epoch}" + (f", step {bad_step}" if bad_step else "")
            record["stopped"] = f"non-finite loss ({monitored}) at {where}"
            log.warning("%s: the loss is %s; training stops and keeps the best epoch's "
                        "weights (the last checkpoint stays loadable)", where, monitored)
            state.stopped = True
            return
        if self.config.schedule == "plateau":
            self.sched.step(monitored)
        if _improves(monitored, state.best):
            state.best, state.bad_epochs = monitored, 0
            state.best_state = copy.deepcopy(self.model.state_dict())
            for cb in self.callbacks:
                cb.on_best(state.epoch, state.best_state)
        else:
            state.bad_epochs += 1
        log.info("epoch %d  train_loss %.5f%s  lr %.2g  %.1fs", state.epoch,
                 record["train_loss"],
                 f"  val_loss {record['val_loss']:.5f}" if "val_loss" in record else "",
                 record["lr"], record["time"])
        state.stopped = self.should_stop(state, record)
        if self.checkpointer is not None and self.ctx.main:
            self.checkpoint(state)

    def should_stop(self, state: LoopState, record: dict[str, Any]) -> bool:
        """Whether training stops after the epoch just counted: a callback asks to (all
        are called), patience runs out, the last epoch or the time budget is reached (or
        an epoch ended early on it); on any rank, so on all."""
        config = self.config
        stop = any([bool(cb.on_epoch_end(state.epoch, record)) for cb in self.callbacks])
        stop = stop or self.out_of_time or state.bad_epochs >= config.patience or (
            state.epoch == config.max_epochs) or (
            config.max_time is not None and record["time"] >= config.max_time)
        return bool(self.ctx.sum_(torch.tensor([float(stop)], dtype=torch.float64))[0] > 0)

    def checkpoint(self, state: LoopState) -> None:
        """Write ``state`` (at the end of an epoch, or ``state.step`` steps into the next)
        with the weights, optimizer, scheduler and generators."""
        assert self.checkpointer is not None
        self.checkpointer.save(state.epoch, self.model, self.opt, self.sched,
                               state.best_state, state.to_checkpoint(), step=state.step)

    def finish(self, state: LoopState) -> None:
        """Restore the best epoch's weights, leave the model in eval mode, tell the
        callbacks."""
        if state.best_state is not None:
            self.model.load_state_dict(state.best_state)
        self.model.eval()
        for cb in self.callbacks:
            cb.on_train_end(state.history)


def _sha256(lengths: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(lengths).tobytes()).hexdigest()
