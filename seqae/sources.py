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
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch

from .batching import (
    MIN_EPOCH_STEPS,
    LengthBucketSampler,
    collate,
    enough,
    epoch_steps,
    sorted_batches,
    to_device,
)
from .data import Sequences
from .errors import SequenceDataError
from .lengths import LengthPolicy
from .scaling import Scaler
from .stream import ParquetSource, StreamData
from .tasks import ContinuousTask, Task, for_data

__all__ = ["DeviceData", "EvalSample", "check_weights", "coefficients", "Part", "Source",
           "MemorySource", "FolderSource", "from_input", "chunks_of", "STREAM_CHECKPOINT_EVERY"]

# fit on a folder: checkpoint every this many optimizer steps (with a checkpoint_dir)
STREAM_CHECKPOINT_EVERY = 200


LOSS_NORMALIZE = ("element", "sequence")


def check_weights(sample_weight: Any, n: int) -> np.ndarray | None:
    """``sample_weight`` as float64 ``(n,)``, checked: finite, non-negative, not all
    zero, one per sequence; raises `ValueError` naming the first sequence that is off.
    Only their ratios count (the loss divides by their sum): they are scaled to a mean
    of 1, and weights all equal give None, so that they give the unweighted result
    exactly."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim != 1 or len(w) != n:
        raise ValueError(f"sample_weight must hold one weight per sequence ({n}), got "
                         f"shape {w.shape}")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"sample_weight of sequence {i} is {float(w[i])}: weights must be "
                         "finite and >= 0")
    if not (w > 0).any():
        raise ValueError("sample_weight is zero for every sequence: nothing to train on")
    return None if (w == w[0]).all() else w / w.mean()  # only their ratios count


def coefficients(per_sequence: np.ndarray, weights: np.ndarray | None,
                 normalize: str) -> np.ndarray | None:
    """What each sequence's own mean loss is multiplied by in a step whose loss is then
    divided by the sum of these (`seqae.nn.model.AutoencoderNet.loss` with weights):
    its weight times its elements ``per_sequence`` under ``"element"``, its weight under
    ``"sequence"``. None: ``"element"`` unweighted, the plain sum over elements."""
    if normalize not in LOSS_NORMALIZE:
        raise ValueError(f"loss_normalize must be one of {LOSS_NORMALIZE}, got {normalize!r}")
    if normalize == "element" and weights is None:
        return None
    w = np.ones(len(per_sequence)) if weights is None else weights
    return w * per_sequence if normalize == "element" else w.astype(np.float64)


class DeviceData:
    """A `Sequences` held on a device as flat values (+ one zero row) and offsets
    (already standardised: see `seqae.scaling.Scaler`).

    `seqae.train.train` reads it through `plan`, `eval_plan`, `owner`, `elements`,
    `weights`, `steps` and `iterate`; `seqae.stream.StreamData` offers the same for data
    read from files. ``normalize`` and ``weights``: `coefficients`."""

    def __init__(self, seqs: Sequences, device: torch.device, normalize: str = "element",
                 weights: np.ndarray | None = None):
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
        if self._observed is not None:
            per_sequence = self._observed
        elif self.values.dim() == 1:
            per_sequence = self.lengths + 1
        else:
            per_sequence = self.lengths * int(self.values.shape[-1])
        self._coef = coefficients(per_sequence, weights, normalize)

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

    def elements(self, idx: Any) -> float:
        """Valid elements of the batch ``idx`` in the loss: values of continuous data
        (the observed ones, with missing values), tokens plus each row's end of
        sequence for tokens."""
        if idx is None:
            return 0
        if self._coef is not None:  # the normaliser: the sum of the coefficients
            return float(self._coef[idx].sum())
        if self._observed is not None:
            return int(self._observed[idx].sum())
        steps = int(self.lengths[idx].sum())
        if self.values.dim() == 1:
            return steps + len(idx)
        return steps * int(self.values.shape[-1])

    def weights(self, idx: Any) -> np.ndarray | None:
        """The coefficients of the batch's sequences (`coefficients`; None: the plain
        sum over elements)."""
        return None if idx is None or self._coef is None else self._coef[idx]

    def steps(self, idx: Any) -> int:
        return 0 if idx is None else int(self.lengths[idx].sum())

    def eval_sample(self, steps: int, rng: np.random.Generator) -> EvalSample:
        """Sequences drawn at random until they hold ``steps`` valid steps (at least
        one), evaluated in index order (`seqae.train.View.eval_sample`)."""
        order = rng.permutation(len(self.lengths))
        k = enough(self.lengths[order], steps, 1)
        return EvalSample(self, np.sort(order[:k]))

    def iterate(self, batches: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches in order (None: skipped). Their indices reach the device in one
        copy, through pinned memory on a GPU, without waiting: a copy per batch from
        pageable memory would wait for the device each time."""
        kept = [np.asarray(idx, dtype=np.int64) for idx in batches if idx is not None]
        if not kept:
            return
        flat = to_device(torch.from_numpy(np.concatenate(kept)), self.device)
        start = 0
        for idx in kept:
            # the padded length from the lengths on the host: no read-back from a GPU
            yield collate(self.values, self.offsets, flat[start : start + len(idx)],
                          int(self.lengths[idx].max()))
            start += len(idx)




class EvalSample:
    """Some sequences of a `DeviceData` (``idx``), for `seqae.train.evaluate`: its
    batches are index arrays into the whole, so everything else is the whole's."""

    def __init__(self, data: DeviceData, idx: np.ndarray):
        self.data, self.idx = data, idx
        self.lengths, self.device = data.lengths[idx], data.device

    def eval_plan(self, batch_size: int, policy: str) -> list[Any]:
        return [self.idx[b] for b in sorted_batches(self.lengths, batch_size, policy)]

    def owner(self, batch: Any, pos: int, world: int) -> int:
        return self.data.owner(batch, pos, world)

    def elements(self, idx: Any) -> float:
        return self.data.elements(idx)

    def weights(self, idx: Any) -> np.ndarray | None:
        return self.data.weights(idx)

    def steps(self, idx: Any) -> int:
        return self.data.steps(idx)

    def iterate(self, batches: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.data.iterate(batches)


class Part(Protocol):
    """A share of a source: the training or the validation data."""

    lengths: np.ndarray

    def stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, std, sequence_std)`` for `seqae.scaling.Scaler.fit_stats`."""
        ...

    def view(self, task: Task, device: torch.device, normalize: str = "element") -> Any:
        """What `seqae.train.train` iterates, in model units on ``device``, its loss
        normalised by ``normalize`` (`coefficients`)."""
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

    def __init__(self, seqs: Sequences, given: bool = False,
                 weights: np.ndarray | None = None):
        self.seqs, self.lengths, self.given = seqs, seqs.lengths, given
        self.weights = weights

    def stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, std = self.seqs.feature_stats()
        return mean, std, self.seqs.sequence_stats()[1]

    def view(self, task: Task, device: torch.device, normalize: str = "element") -> DeviceData:
        return DeviceData(task.to_model(self.seqs)[0], device, normalize, self.weights)

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
        k = enough(self.lengths[order], steps, least)
        return MemoryPart(self.seqs.take(np.sort(order[:k])), self.given)


class MemorySource:
    """`Sequences` in memory, after the length policy."""

    checkpoint_every = 0

    def __init__(self, seqs: Sequences, validation: Sequences | None = None,
                 weights: np.ndarray | None = None):
        self.seqs = seqs
        self.weights = weights  # one per sequence of seqs (None: unweighted)
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
            return (MemoryPart(self.seqs, weights=self.weights),
                    MemoryPart(self.validation, given=True))
        if not n_val:
            return MemoryPart(self.seqs, weights=self.weights), None
        perm = rng.permutation(len(self.seqs))
        kept = perm[n_val:]
        return (MemoryPart(self.seqs.take(kept),
                           weights=None if self.weights is None else self.weights[kept]),
                MemoryPart(self.seqs.take(perm[:n_val])))

    def fingerprint(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for seqs in (self.seqs, self.validation):
            if seqs is not None:
                digest.update(np.ascontiguousarray(seqs.values).tobytes())
                digest.update(np.ascontiguousarray(seqs.offsets).tobytes())
        if self.weights is not None:
            digest.update(np.ascontiguousarray(self.weights).tobytes())
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

    def view(self, task: Task, device: torch.device, normalize: str = "element") -> StreamData:
        return StreamData(self.source, self.ids, task.scaler, device, normalize)

    def chunks(self) -> Iterator[Sequences]:
        return (seqs for seqs, _ in self.source.windows(self.ids))

    def check(self, task: Task) -> None:  # the index checked the columns
        pass

    def sample(self, steps: int, least: int, rng: np.random.Generator) -> ChunkPart:
        chunks = self.source.index()
        order = [self.ids[i] for i in rng.permutation(len(self.ids))]
        # a chunk counts as its sequences' steps and, for `least`, as that many sequences
        per_seq = np.concatenate([chunks[c].lengths for c in order])
        k = enough(per_seq, steps, least)
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

    def check_lengths(self, policy: LengthPolicy,
                      report: Callable[[int, int], None] | None = None) -> None:
        """Index the training folder (with its statistics; ``report``: the pass's
        progress) and check its lengths against ``policy``."""
        for chunk in self.source.index(stats=True, report=report):
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


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for a clean repr in messages)."""
    return value.item() if hasattr(value, "item") else value


def from_input(X: Any, validation: Any, normalize: Any, unknown: str,
               policy: LengthPolicy, missing: str = "error", sample_weight: Any = None,
               report: Callable[[int, int], None] | None = None,
               ) -> tuple[MemorySource | FolderSource, Task]:
    """The source and the task for what the user passed to `fit` (and its validation
    data), under the length ``policy``; ``missing``: what a NaN is (`seqae.tasks`);
    ``sample_weight``: one weight per sequence of ``X``, checked (`check_weights`) before
    the length policy (a sequence cut into windows gives each its weight); ``report``:
    the progress of indexing a folder."""
    if isinstance(X, ParquetSource) and missing != "error":
        raise ValueError("missing='mask' applies to data in memory; a ParquetSource is "
                         "streamed with missing='error' (to fit with missing values, read the "
                         "data into memory)")
    if isinstance(X, ParquetSource):
        if sample_weight is not None:
            raise ValueError("sample_weight applies to data in memory; a ParquetSource is "
                             "streamed unweighted (to weigh sequences, read the data into "
                             "memory)")
        folder = FolderSource(X, validation)
        folder.check_lengths(policy, report)
        return folder, ContinuousTask(Scaler(normalize), X.n_features, list(X.features))
    if isinstance(validation, ParquetSource):
        raise TypeError("validation is a ParquetSource and the training data are in memory: "
                        "give both in memory, or both as folders")
    task, seqs = for_data(X, normalize, unknown, missing)
    weights = check_weights(sample_weight, len(seqs))
    val = None if validation is None else policy.apply(task.sequences(validation, unknown)).seqs
    limited = policy.apply(seqs)
    if weights is not None and limited.owner is not None:
        weights = weights[limited.owner]
    return MemorySource(limited.seqs, val, weights), task


def chunks_of(X: Any) -> Iterator[Sequences] | None:
    """For a folder, its sequences a window at a time (index order); None for data in
    memory (a task's ``sequences`` converts those)."""
    if isinstance(X, ParquetSource):
        return (seqs for seqs, _ in X.windows())
    return None
