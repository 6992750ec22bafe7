"""Where the data live: in memory, or in a folder of Parquet files.

A *source* knows its lengths, feature count, statistics and fingerprint, splits off a
validation share, and hands out *parts*; a part gives the view the training loop
iterates (`seqae.train.View`: `DeviceData` here, `seqae.stream.StreamData`) and
the chunks inference walks. `from_input` wraps what the user passed to `fit` (applying
the length policy once) and picks the task (`seqae.tasks`) with it, so that `fit` reads
the same for data in memory and streamed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch

from .batching import MIN_EPOCH_STEPS, LengthBucketSampler, collate, epoch_steps, sorted_batches
from .data import Sequences
from .errors import SequenceDataError
from .lengths import LengthPolicy
from .scaling import Scaler
from .stream import ParquetSource, StreamData
from .tasks import ContinuousTask, Task, for_data

__all__ = ["DeviceData", "Part", "Source", "MemorySource", "FolderSource",
           "from_input", "chunks_of", "STREAM_CHECKPOINT_EVERY"]

# fit on a folder: checkpoint every this many optimizer steps (with a checkpoint_dir)
STREAM_CHECKPOINT_EVERY = 200


class DeviceData:
    """A `Sequences` held on a device as flat values (+ one zero row) and offsets
    (already standardised: see `seqae.scaling.Scaler`).

    `seqae.train.train` reads it through `plan`, `eval_plan`, `owner`, `elements`, `steps`
    and `iterate`; `seqae.stream.StreamData` offers the same for data read from files."""

    def __init__(self, seqs: Sequences, device: torch.device):
        values = torch.as_tensor(np.ascontiguousarray(seqs.values))
        pad = torch.zeros((1,) + tuple(values.shape[1:]), dtype=values.dtype)
        self.values = torch.cat([values, pad]).to(device)
        self.offsets = torch.as_tensor(seqs.offsets).to(device)
        self.lengths = seqs.lengths
        self.device = device
        self._sampler: LengthBucketSampler | None = None
        # with missing values, the loss counts each sequence's observed elements
        self._observed = None if not seqs.has_missing() else np.add.reduceat(
            seqs.observed().sum(axis=1), seqs.offsets[:-1])  # (N,)

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        # the padded length from the lengths on the host: no read-back from a GPU
        return collate(self.values, self.offsets, torch.as_tensor(idx, device=self.device),
                       int(self.lengths[idx].max()))

    def plan(self, epoch: int, batch_size: int, policy: str, seed: int,
             group: int) -> tuple[list[list[Any]], int]:
        """``(steps, passes)``: the epoch's optimizer steps, each the next ``group``
        batches of `LengthBucketSampler` (see `epoch_steps`)."""
        s = self._sampler
        if s is None or (s.batch_size, s.policy, s.seed, s.group) != (batch_size, policy, seed,
                                                                     group):
            self._sampler = s = LengthBucketSampler(self.lengths, batch_size, policy=policy,
                                                    seed=seed, group=group)
        passes = max(1, math.ceil(MIN_EPOCH_STEPS * group / max(1, len(s))))
        return epoch_steps(s, epoch, passes, group), passes

    def eval_plan(self, batch_size: int, policy: str) -> list[Any]:
        return sorted_batches(self.lengths, batch_size, policy)

    def owner(self, batch: Any, pos: int, world: int) -> int:
        """The rank that evaluates the batch at ``pos`` of `eval_plan`."""
        return pos % world

    def elements(self, idx: Any) -> int:
        """Valid elements of the batch ``idx`` in the loss: values of continuous data
        (the observed ones, with missing values), tokens plus each row's end of
        sequence for tokens."""
        if idx is None:
            return 0
        if self._observed is not None:
            return int(self._observed[idx].sum())
        steps = int(self.lengths[idx].sum())
        if self.values.dim() == 1:
            return steps + len(idx)
        return steps * int(self.values.shape[-1])

    def steps(self, idx: Any) -> int:
        return 0 if idx is None else int(self.lengths[idx].sum())

    def iterate(self, batches: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches in order (None: skipped). Their indices reach the device in one
        copy, through pinned memory on a GPU, without waiting: a copy per batch from
        pageable memory would wait for the device each time."""
        kept = [np.asarray(idx, dtype=np.int64) for idx in batches if idx is not None]
        if not kept:
            return
        flat = torch.from_numpy(np.concatenate(kept))
        if self.device.type == "cuda":
            flat = flat.pin_memory()
        flat = flat.to(self.device, non_blocking=True)
        start = 0
        for idx in kept:
            # the padded length from the lengths on the host: no read-back from a GPU
            yield collate(self.values, self.offsets, flat[start : start + len(idx)],
                          int(self.lengths[idx].max()))
            start += len(idx)




class Part(Protocol):
    """A share of a source: the training or the validation data."""

    lengths: np.ndarray

    def stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, std, sequence_std)`` for `seqae.scaling.Scaler.fit_stats`."""
        ...

    def view(self, task: Task, device: torch.device) -> Any:
        """What `seqae.train.train` iterates, in model units on ``device``."""
        ...

    def chunks(self) -> Iterator[Sequences]:
        """The part's sequences, a chunk at a time, in order (inference)."""
        ...

    def check(self, task: Task) -> None:
        """Raise unless the part fits the fitted ``task`` (token ids in its vocabulary)."""
        ...

    def sample(self, steps: int, least: int, rng: np.random.Generator) -> Part:
        """A part of about ``steps`` valid steps and at least ``least`` sequences (or
        all), drawn at random, kept in the part's order (whole chunks for a folder): what
        the pass after training scores when the time budget leaves no time for all."""
        ...


class Source(Protocol):
    """What `fit` needs of its data, wherever they live."""

    n_features: int
    checkpoint_every: int

    def __len__(self) -> int: ...

    @property
    def lengths(self) -> np.ndarray: ...

    def data_max(self) -> int:
        """The largest value (token data: the largest id)."""
        ...

    def split(self, n_val: int, rng: np.random.Generator) -> tuple[Part, Part | None]:
        """``(training part, validation part or None)``: the validation data given to
        `fit`, else ``n_val`` sequences held out at random."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed fit must find again (the settings are added by the caller)."""
        ...


class MemoryPart:
    """Sequences held in memory (``given``: the validation data passed to `fit`, which
    errors name as such)."""

    def __init__(self, seqs: Sequences, given: bool = False):
        self.seqs, self.lengths, self.given = seqs, seqs.lengths, given

    def stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, std = self.seqs.feature_stats()
        return mean, std, self.seqs.sequence_stats()[1]

    def view(self, task: Task, device: torch.device) -> DeviceData:
        return DeviceData(task.to_model(self.seqs)[0], device)

    def chunks(self) -> Iterator[Sequences]:
        yield self.seqs

    def check(self, task: Task) -> None:
        try:
            task.check(self.seqs)
        except SequenceDataError as e:
            if not self.given:
                raise
            raise SequenceDataError(f"validation data: {e}", e.index, e.seq_id) from None

    def sample(self, steps: int, least: int, rng: np.random.Generator) -> MemoryPart:
        order = rng.permutation(len(self.lengths))
        k = _enough(self.lengths[order], steps, least)
        return MemoryPart(self.seqs.take(np.sort(order[:k])), self.given)


class MemorySource:
    """`Sequences` in memory, after the length policy."""

    checkpoint_every = 0

    def __init__(self, seqs: Sequences, validation: Sequences | None = None):
        self.seqs = seqs
        self.n_features = seqs.n_features
        self.validation = validation
        if validation is not None and (validation.is_tokens != seqs.is_tokens
                                       or validation.n_features != seqs.n_features):
            raise SequenceDataError(
                f"validation data ({validation!r}) do not match the training data ({seqs!r})")

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def lengths(self) -> np.ndarray:
        return self.seqs.lengths

    def data_max(self) -> int:
        return int(self.seqs.values.max())

    def split(self, n_val: int, rng: np.random.Generator) -> tuple[MemoryPart, MemoryPart | None]:
        """A validation set given to `fit`, else ``n_val`` sequences at random."""
        if self.validation is not None:
            return MemoryPart(self.seqs), MemoryPart(self.validation, given=True)
        if not n_val:
            return MemoryPart(self.seqs), None
        perm = rng.permutation(len(self.seqs))
        return MemoryPart(self.seqs.take(perm[n_val:])), MemoryPart(self.seqs.take(perm[:n_val]))

    def fingerprint(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for seqs in (self.seqs, self.validation):
            if seqs is not None:
                digest.update(np.ascontiguousarray(seqs.values).tobytes())
                digest.update(np.ascontiguousarray(seqs.offsets).tobytes())
        return {"data_sha256": digest.hexdigest(), "sequences": len(self.seqs),
                "validation": None if self.validation is None else len(self.validation)}


class ChunkPart:
    """Some chunks of a `seqae.stream.ParquetSource`."""

    def __init__(self, source: ParquetSource, ids: list[int]):
        self.source, self.ids = source, ids
        chunks = source.index()
        self.lengths = np.concatenate([chunks[c].lengths for c in ids])

    def stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.source.stats(self.ids)

    def view(self, task: Task, device: torch.device) -> StreamData:
        return StreamData(self.source, self.ids, task.scaler, device)

    def chunks(self) -> Iterator[Sequences]:
        return (seqs for seqs, _ in self.source.windows(self.ids))

    def check(self, task: Task) -> None:  # the index checked the columns
        pass

    def sample(self, steps: int, least: int, rng: np.random.Generator) -> ChunkPart:
        chunks = self.source.index()
        order = [self.ids[i] for i in rng.permutation(len(self.ids))]
        # a chunk counts as its sequences' steps and, for `least`, as that many sequences
        per_seq = np.concatenate([chunks[c].lengths for c in order])
        k = _enough(per_seq, steps, least)
        ends = np.cumsum([len(chunks[c].lengths) for c in order])
        n_chunks = int(np.searchsorted(ends, k)) + 1
        return ChunkPart(self.source, sorted(order[:n_chunks]))


class FolderSource:
    """A folder of Parquet files, streamed (`seqae.stream`); the validation share is
    made of whole chunks. Sequences are read as they are: only the "refuse" length
    policy applies, and it is checked on the index before any training."""

    checkpoint_every = STREAM_CHECKPOINT_EVERY

    def __init__(self, source: ParquetSource, validation: Any = None):
        if validation is not None and not isinstance(validation, ParquetSource):
            raise TypeError("with a ParquetSource, validation must be a ParquetSource too, "
                            f"not {type(validation).__name__}")
        self.source, self.validation = source, validation
        self.n_features = source.n_features
        self.held_out: list[int] = []

    def check_lengths(self, policy: LengthPolicy) -> None:
        for chunk in self.source.index():
            policy.check_lengths(chunk.lengths, lambda i, c=chunk: (
                f"{self.source.where(c)}: sequence {_plain(c.ids[i])!r}", c.ids[i]))

    def __len__(self) -> int:
        return len(self.source)

    @property
    def lengths(self) -> np.ndarray:
        return self.source.lengths

    def data_max(self) -> int:  # a folder holds continuous values: no vocabulary
        raise TypeError("token ids are not read from folders")

    def split(self, n_val: int, rng: np.random.Generator) -> tuple[ChunkPart, ChunkPart | None]:
        """A validation folder given to `fit`, else whole chunks at random until they hold
        ``n_val`` sequences (never every chunk)."""
        chunks = self.source.index()
        train_ids, val_ids = list(range(len(chunks))), []
        if self.validation is not None:
            self.validation.index()
            if self.validation.n_features != self.source.n_features:
                raise SequenceDataError(f"validation data ({self.validation!r}) do not match "
                                        f"the training data ({self.source!r})")
            val_ids = list(range(len(self.validation.index())))
            return ChunkPart(self.source, train_ids), ChunkPart(self.validation, val_ids)
        if n_val and len(chunks) >= 2:
            held = 0
            for c in rng.permutation(len(chunks))[:-1].tolist():
                val_ids.append(c)
                held += len(chunks[c].lengths)
                if held >= n_val:
                    break
            train_ids = [c for c in train_ids if c not in set(val_ids)]
        self.held_out = val_ids
        return (ChunkPart(self.source, train_ids),
                ChunkPart(self.source, val_ids) if val_ids else None)

    def fingerprint(self) -> dict[str, Any]:
        return {"data": self.source.signature(),
                "validation": None if self.validation is None else self.validation.signature(),
                "held_out_chunks": self.held_out}


def _enough(lengths: np.ndarray, steps: int, least: int) -> int:
    """How many of the first ``lengths`` hold ``steps`` valid steps, at least ``least``
    (at most all of them)."""
    k = int(np.searchsorted(np.cumsum(lengths), steps)) + 1
    return min(len(lengths), max(k, least))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for a clean repr in messages)."""
    return value.item() if hasattr(value, "item") else value


def from_input(X: Any, validation: Any, normalize: Any, unknown: str,
               policy: LengthPolicy, missing: str = "error"
               ) -> tuple[MemorySource | FolderSource, Task]:
    """The source and the task for what the user passed to `fit` (and its validation
    data), under the length ``policy``; ``missing``: what a NaN is (`seqae.tasks`)."""
    if isinstance(X, ParquetSource) and missing != "error":
        raise ValueError("missing='mask' applies to data in memory; a ParquetSource is "
                         "streamed with missing='error' (to fit with missing values, read the "
                         "data into memory)")
    if isinstance(X, ParquetSource):
        folder = FolderSource(X, validation)
        folder.check_lengths(policy)
        return folder, ContinuousTask(Scaler(normalize), X.n_features, list(X.features))
    if isinstance(validation, ParquetSource):
        raise TypeError("validation is a ParquetSource and the training data are in memory: "
                        "give both in memory, or both as folders")
    task, seqs = for_data(X, normalize, unknown, missing)
    val = None if validation is None else policy.apply(task.sequences(validation, unknown)).seqs
    return MemorySource(policy.apply(seqs).seqs, val), task


def chunks_of(X: Any) -> Iterator[Sequences] | None:
    """For a folder, its sequences a window at a time (index order); None for data in
    memory (a task's ``sequences`` converts those)."""
    if isinstance(X, ParquetSource):
        return (seqs for seqs, _ in X.windows())
    return None
