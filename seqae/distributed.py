"""Data parallelism over processes started by ``torchrun`` (gloo on CPU, NCCL on GPU).

Nothing here changes a single-process run. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the
environment) `train` joins the process group and:

- every rank computes the same global batch plan from (seed, epoch, lengths): an
  optimizer step takes the next ``world_size * accumulate`` batches of the plan, and rank
  r computes batches r, r + world_size, ... of them. Every rank takes the same number of
  optimizer steps whatever the lengths, so nothing waits for a rank that ran out (a rank
  with no batch in the last, shorter step contributes zero gradients);
- the loss of a step is the sum over its batches divided by the number of valid
  elements in all of them (known from the lengths, on every rank without communication);
- gradients are summed across ranks in one flat all-reduce per optimizer step, so the
  step equals one process accumulating the same batches (`TrainConfig.accumulate`);
- whatever a batch draws at random (crops, hidden steps, dropout) is seeded from (seed,
  epoch, batch position in the plan), not from a per-process stream, so the same batch
  draws the same whichever rank computes it;
- validation sums, the stop decisions (time budget, callbacks, non-finite loss) and
  the plan itself are agreed through all-reduces; a rank whose data or settings differ
  is a clear error on every rank, not a hang.

This is what `torch.nn.parallel.DistributedDataParallel` computes, done by hand because
a step here may run several forward passes per batch (the crops) outside ``forward``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import torch

from .errors import SeqaeError

__all__ = ["Context", "DistributedError", "context"]


class DistributedError(SeqaeError, RuntimeError):
    """Ranks that disagree: other data, settings or versions on some rank."""


class Context:
    """This process's place: ``rank``, ``world`` (1 = a single process) and the
    collective operations `train` needs (no-ops on one process)."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @property
    def main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce ``t`` in place by sum (a float64 CPU tensor is moved as needed)."""
        if self.world > 1:
            import torch.distributed as dist

            dev = _comm_device()
            moved = t.to(dev)
            dist.all_reduce(moved)
            t.copy_(moved)
        return t

    def agree(self, what: str, fingerprint: dict[str, Any]) -> None:
        """Raise `DistributedError` on every rank unless all ranks hold the same
        ``fingerprint`` (a JSON-able dict describing the data and settings)."""
        if self.world == 1:
            return
        import json

        import torch.distributed as dist

        keys = sorted(fingerprint)
        hashes = [int.from_bytes(hashlib.sha256(json.dumps(
            fingerprint[k], sort_keys=True, default=str).encode()).digest()[:7], "little")
            for k in keys]  # < 2**56: exact in int64
        t = torch.tensor(hashes + [-h for h in hashes], dtype=torch.int64,
                         device=_comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        n = len(keys)
        differ = [k for i, k in enumerate(keys)
                  if int(t[i]) != hashes[i] or int(t[n + i]) != -hashes[i]]
        if differ:
            raise DistributedError(
                f"rank {self.rank} of {self.world}: its {what} differ from another rank's "
                f"in {', '.join(differ)}; every rank must be given the same data and "
                "settings")

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``params`` across ranks in one flat all-reduce. A
        parameter no rank gave a gradient keeps ``grad = None`` (as on one process)."""
        if self.world == 1:
            return
        ref = params[0]
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                 for p in params]
        has = torch.tensor([p.grad is not None for p in params], dtype=ref.dtype,
                           device=ref.device)
        flat = torch.cat([*parts, has])
        self.sum_(flat)
        given = (flat[-len(params):] > 0).tolist()
        n = 0
        for p, g in zip(params, given, strict=True):
            k = p.numel()
            if g:
                p.grad = flat[n:n + k].view_as(p).clone()
            n += k

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def _comm_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def context() -> Context:
    """The running process's `Context`: joins the process group when started by
    ``torchrun`` (``WORLD_SIZE`` > 1) and it is not joined yet (NCCL when CUDA is
    available, else gloo); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return Context(dist.get_rank(), dist.get_world_size())


def batch_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the batch at ``position`` of epoch ``epoch``'s plan."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, np.uint64)[0]
               % (2**63 - 1))
