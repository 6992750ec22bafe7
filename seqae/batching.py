"""Length-aware batching and vectorised collate.

Padding is per batch, never per data set: sequences are sorted by length (ties broken
at random), cut into batches of similar length, and the batch order is shuffled every
epoch. Two policies:

* ``"tokens"``: each batch holds as many sequences as fit in a budget of padded steps
  (``batch_size x mean length`` by default), but never fewer than ``batch_size // 2``:
  short sequences travel in large batches, long ones in smaller ones. On a CPU the cost
  of an RNN follows the padded steps plus a fixed cost per sequential step, so this
  keeps the work per batch level without starving the long batches.
* ``"count"`` (the default): ``batch_size`` sequences per batch. An RNN's time follows
  the number of sequential steps; sorted equal-count batches keep that lowest for the
  same padding, and measured faster than the token budget on a 2-core CPU in 5 of 6
  side-by-side runs (benchmarks/RESULTS.md). On a GPU it is the natural choice too.

The collate is one gather from the flat values (no Python loop over sequences).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["LengthBucketSampler", "collate", "sorted_batches", "epoch_steps", "enough",
           "MIN_EPOCH_STEPS"]

# An epoch (one history record, one early-stopping and learning-rate decision) is at
# least this many optimizer steps: on 36 sequences a single pass is 2 steps, and patience
# counted in such passes stopped training after a few dozen steps.
MIN_EPOCH_STEPS = 32


def _sorted_order(lengths: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Indices sorted by length; ties in random order when ``rng`` is given."""
    if rng is None:
        return np.argsort(lengths, kind="stable")
    perm = rng.permutation(len(lengths))
    return perm[np.argsort(lengths[perm], kind="stable")]


def _token_cuts(
    sorted_lengths: np.ndarray, max_tokens: int, max_batch: int, min_batch: int = 1
) -> np.ndarray:
    """Batch boundaries over ascending lengths so that ``count x longest <= max_tokens``,
    with at least ``min_batch`` and at most ``max_batch`` sequences per batch.

    One binary search per batch (not per sequence).
    """
    n = len(sorted_lengths)
    cuts = [0]
    i = 0
    while i < n:
        # Largest j with (j - i) * L[j - 1] <= max_tokens; cost is monotone in j.
        lo, hi = min(n, i + max(1, min_batch)), min(n, i + max_batch)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if (mid - i) * int(sorted_lengths[mid - 1]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        i = lo
        cuts.append(i)
    return np.asarray(cuts)


def sorted_batches(
    lengths: np.ndarray,
    batch_size: int,
    policy: str = "count",
    max_tokens: int | None = None,
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """Length-sorted batches of indices covering every sequence exactly once.

    Args:
        lengths: ``(N,)`` sequence lengths.
        batch_size: sequences per batch (``"count"``), or the typical batch size that
            sets the default budget (``"tokens"``).
        policy: ``"count"`` (default) or ``"tokens"``.
        max_tokens: padded-step budget per batch for ``"tokens"``; default
            ``batch_size x mean length``.
        rng: breaks length ties at random when given (training); None = deterministic.
    """
    lengths = np.asarray(lengths)
    order = _sorted_order(lengths, rng)
    if policy == "count":
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if policy != "tokens":
        raise ValueError(f"policy must be 'tokens' or 'count', got {policy!r}")
    if max_tokens is None:
        max_tokens = int(np.ceil(batch_size * lengths.mean()))
    # At least half a batch_size per batch: on a CPU a tiny batch of very long sequences
    # costs many sequential steps for little work (measured in benchmarks/RESULTS.md).
    cuts = _token_cuts(lengths[order], max_tokens, max_batch=8 * batch_size,
                       min_batch=max(1, batch_size // 2))
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


class LengthBucketSampler:
    """Yields length-sorted batches of indices, reshuffled each epoch.

    Args:
        lengths: ``(N,)`` sequence lengths.
        batch_size: see `sorted_batches`.
        policy: ``"count"`` (default) or ``"tokens"``.
        max_tokens: padded-step budget for ``"tokens"``.
        shuffle: shuffle ties and the batch order each epoch (default True).
        seed: base seed; epoch e uses ``seed + e`` (call `set_epoch`).
        group: shuffle runs of this many neighbouring batches (similar lengths) as one
            unit (default 1): the batches of one optimizer step under ``torchrun`` or
            gradient accumulation, so that the processes sharing a step get batches of
            similar cost.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        policy: str = "count",
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        group: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.policy = policy
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.group = max(1, group)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed + self.epoch) if self.shuffle else None
        batches = sorted_batches(self.lengths, self.batch_size, self.policy, self.max_tokens, rng)
        if rng is not None:
            g = self.group
            full = len(batches) // g * g  # a shorter last run stays last: runs stay aligned
            runs = [batches[i:i + g] for i in range(0, full, g)]
            batches = [b for i in rng.permutation(len(runs)) for b in runs[i]] + batches[full:]
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def enough(lengths: np.ndarray, steps: int, least: int) -> int:
    """How many of the first ``lengths`` hold ``steps`` valid steps, at least ``least``
    (at most all of them)."""
    k = int(np.searchsorted(np.cumsum(lengths), steps)) + 1
    return min(len(lengths), max(k, least))


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; to a GPU through pinned memory without waiting for the copy
    (later work on the device's stream runs after it): a copy from pageable memory
    would wait for the device each time."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def collate(
    values: torch.Tensor,
    offsets: torch.Tensor,
    idx: torch.Tensor,
    padded_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded batch of the sequences ``idx`` from flat values, in one gather.

    Args:
        values: flat values with ONE extra zero row appended at the end,
            ``(total + 1, F)`` (or ``(total + 1,)`` tokens); padding reads that row.
        offsets: ``(N + 1,)`` int64 offsets into ``values``.
        idx: ``(B,)`` sequence indices (int64, same device).
        padded_length: the padded length ``T`` when the caller knows it (from the lengths
            on the host: on a GPU, collate then never reads the batch's lengths back);
            default the batch's longest, computed on the device.

    Returns:
        ``x`` ``(B, T, F)`` (or ``(B, T)``) with zeros at padding, ``lengths`` ``(B,)``.
    """
    starts = offsets[idx]  # (B,)
    lens = offsets[idx + 1] - starts  # (B,)
    t = int(lens.max()) if padded_length is None else padded_length
    steps = torch.arange(t, device=values.device)  # (T,)
    pad_row = values.shape[0] - 1
    flat = torch.where(
        steps[None, :] < lens[:, None], starts[:, None] + steps[None, :], pad_row
    )  # (B, T)
    return values[flat], lens


def epoch_steps(sampler: LengthBucketSampler, epoch: int, passes: int,
                group: int) -> list[list[np.ndarray]]:
    """The optimizer steps of an epoch: ``passes`` passes over the data, each shuffled
    from its own seed, cut into runs of ``group`` batches (fewer at a pass's end)."""
    steps: list[list[np.ndarray]] = []
    for p in range(passes):
        sampler.set_epoch((epoch - 1) * passes + p + 1)
        batches = sampler.batches()
        steps += [batches[i:i + group] for i in range(0, len(batches), group)]
    return steps
