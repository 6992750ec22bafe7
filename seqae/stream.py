"""Data larger than memory: a folder of Parquet files read a few row groups at a time.

`ParquetSource` names the files and how to read them (long tables, one row per step, or
one row per sequence with list columns). Nothing is read when it is made; the first use
makes one streaming pass (`ParquetSource.index`) that keeps, per *chunk* (the row groups
of one file that no sequence crosses), the sequences' ids and lengths, plus the
normalisation statistics: every feature's mean and std over all valid steps (exact,
combined chunk by chunk in float64) and every sequence's std (for ``normalize="auto"``).
That pass is columnar and cached (`seqae.indexing`).

Training on it (`StreamData`, used by `seqae.SequenceAutoencoder.fit`):

- each epoch the chunks are shuffled from (seed, epoch) and packed, in that order, into
  *windows* of at most ``window`` values (a chunk larger than that is a window alone;
  with several lanes, at most a quarter of the data per lane, so that each lane gets
  about four windows and the lanes end close together); a window is the most the
  process holds at once, per lane (below);
- within a window the sequences are sorted by length (ties at random) and cut into
  batches, whose order is shuffled: bucketing by length inside a bounded window;
- an optimizer step takes ``world_size x accumulate`` batches, one from each *lane*;
  the windows are dealt to the lanes (each to the lane with the fewest batches so far),
  and rank r computes lanes r, r + world_size, ... So every rank reads only its own
  windows' row groups, the plan is the same on every rank (it follows from the index:
  no communication), and one process with ``accumulate=K`` computes exactly the steps
  of K processes. A lane that has run out contributes nothing to the last steps;
- windows are read in the order they are first needed, by ``workers`` data-loader
  processes (window k by worker k mod workers, so the order never depends on timing) or,
  with ``workers=0``, by the training process itself;
- a checkpoint written in the middle of an epoch records the step reached; ``resume``
  recomputes the epoch's plan and reads only the windows still needed.

`write_outputs` streams `encode`, `score` or `reconstruct` results to a Parquet file, one
row group per window.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .batching import MIN_EPOCH_STEPS, collate, enough, sorted_batches, to_device
from .data import Sequences, as_float32_stats, list_columns
from .errors import DataFileError, SequenceDataError, require_columns
from .indexing import Chunk, build, read_rows
from .io import atomic_output
from .tables import (
    DataSpec,
    convert,
    embeddings_table,
    reconstructions_table,
    resolve_columns,
    scores_table,
)

__all__ = ["ParquetSource", "StreamData", "DEFAULT_WINDOW", "write_outputs", "parquet_files"]

DEFAULT_WINDOW = 1 << 24  # values per window: 64 MiB of float32


class ParquetSource:
    """A folder of Parquet files (or one file), read row group by row group.

    Args:
        path: a folder (every ``*.parquet``/``*.pq`` file in it, sorted by name) or a file.
        id_col: the sequence id column (default ``"id"``).
        time_col: optional column ordering the rows of each sequence (long tables).
        features: feature columns; default every numeric column other than the id, time
            and label columns and ``exclude`` (long tables) or every list column.
        exclude: columns that are not features.
        label_col: optional column carried to `write_outputs` (a sequence's first row).
        window: most values a training window holds (default `DEFAULT_WINDOW`).
        workers: data-loader processes reading windows (default 0: the training process
            reads them itself).

    A long table's sequence must sit in consecutive rows of one file (it may cross row
    groups: those are read together); the same id in two places is an error naming both.
    """

    def __init__(self, path: str | os.PathLike, id_col: str = "id", time_col: str | None = None,
                 features: Sequence[str] | None = None, exclude: Sequence[str] = (),
                 label_col: str | None = None, window: int = DEFAULT_WINDOW, workers: int = 0):
        import pyarrow.parquet as pq

        self.path = Path(path)
        if self.path.is_dir():
            self.files = parquet_files(self.path)
            if not self.files:
                raise DataFileError(f"{self.path}: no .parquet files in this folder")
        elif self.path.is_file():
            self.files = [self.path]
        else:
            raise DataFileError(f"{self.path}: no such file or folder")
        if window < 1 or workers < 0:
            raise ValueError(f"window must be >= 1 and workers >= 0, got {window}, {workers}")
        self.window, self.workers = int(window), int(workers)
        schemas = []
        for f in self.files:
            try:
                schemas.append(pq.ParquetFile(f).schema_arrow)
            except Exception as e:  # pyarrow raises several types for a bad file
                raise DataFileError(f"{f}: cannot read it as Parquet: {e}") from None
        first = schemas[0]
        # the columns, as for a file read whole (`seqae.tables.resolve_columns`)
        self.spec = resolve_columns(first.empty_table(), DataSpec(
            id_col, time_col, None if features is None else list(features), label_col,
            exclude=tuple(exclude)), self.files[0])
        self.id_col, self.time_col, self.label_col = id_col, self.spec.time_col, label_col
        self.lists = bool(list_columns(first.empty_table()))
        self.features = list(self.spec.features or [])
        self.columns = [c for c in dict.fromkeys(
            [id_col, self.time_col, label_col, *self.features]) if c is not None]
        for f, s in zip(self.files[1:], schemas[1:], strict=True):
            require_columns(s.names, [("", c) for c in self.columns], f,
                            note=f" (the first file {self.files[0].name} has it)")
            for c in self.features:
                if _kind(s.field(c).type) != _kind(first.field(c).type):
                    raise DataFileError(f"{f}: column {c!r} is {s.field(c).type}, but "
                                        f"{first.field(c).type} in {self.files[0].name}")
        self._chunks: list[Chunk] | None = None
        self._stats = False  # whether the chunks hold the statistics

    @classmethod
    def from_spec(cls, path: str | os.PathLike, spec: DataSpec) -> ParquetSource:
        """A source reading ``path`` as ``spec`` says (`seqae.tables.DataSpec`: columns,
        window, workers), as `seqae.tables.read_data` reads a file; an optional label
        column (``spec.label_optional``) that the first file lacks is left out."""
        import pyarrow.parquet as pq

        label_col = spec.label_col
        if label_col is not None and spec.label_optional:
            p = Path(path)
            files = parquet_files(p) if p.is_dir() else [p]
            try:
                names = pq.ParquetFile(files[0]).schema_arrow.names if files else [label_col]
            except Exception:  # an unreadable file: the constructor says so
                names = [label_col]
            label_col = spec.label_in(names)
        return cls(path, id_col=spec.id_col, time_col=spec.time_col, features=spec.features,
                   exclude=spec.exclude, label_col=label_col,
                   window=spec.window or DEFAULT_WINDOW, workers=spec.workers or 0)

    def __repr__(self) -> str:
        return (f"ParquetSource({str(self.path)!r}, {len(self.files)} files, "
                f"features={self.features if len(self.features) <= 4 else len(self.features)})")

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def feature_names(self) -> list[str]:
        return self.features

    # ------------------------------------------------------------------ reading
    def where(self, chunk: Chunk) -> str:
        """``"FILE, rows A-B (row group G)"``: where ``chunk`` is, for error messages."""
        groups = chunk.row_groups
        rg = f"row group {groups[0]}" if len(groups) == 1 else \
            f"row groups {groups[0]}-{groups[-1]}"
        return f"{self.files[chunk.file]}, rows {chunk.start}-{chunk.stop - 1} ({rg})"

    def read(self, chunk: Chunk) -> tuple[Sequences, np.ndarray | None]:
        """The sequences of ``chunk`` (and their labels, with a ``label_col``): the unit
        every reader here works with. Only the row groups it lies in are read, and they
        are converted as a file read whole is (`seqae.tables.convert`)."""
        seqs, labels, _ = self._read(chunk, times=False)
        return seqs, labels

    def _read(self, chunk: Chunk, times: bool
              ) -> tuple[Sequences, np.ndarray | None, np.ndarray | None]:
        """`read`, plus (``times``) each step's time value, aligned with the values
        (None without a time column)."""
        where = self.where(chunk)
        try:
            table = read_rows(self.files[chunk.file], chunk, self.columns)
        except Exception as e:
            raise DataFileError(f"{where}: cannot read it: {e}") from None
        try:
            seqs, steps, labels = convert(table, self.spec, where, times=times)
        except SequenceDataError as e:  # named once: convert may have named the place
            text = str(e)
            raise DataFileError(text if text.startswith(where) else f"{where}: {text}") \
                from None
        return seqs, labels, steps

    def index(self, stats: bool = False,
              report: Callable[[int, int], None] | None = None) -> list[Chunk]:
        """The chunks, with each sequence's id and length and (``stats``) the
        normalisation statistics: from the cache or one columnar pass over the files
        (`seqae.indexing.build`), then kept. ``stats=False`` reads the id and time
        columns only (enough for inference and a validation folder); ``report(done,
        total)`` is told the rows indexed as the pass goes."""
        if self._chunks is None or (stats and not self._stats):
            self._chunks = build(self, stats, report)
            self._stats = stats
        return self._chunks

    def stats(self, chunk_ids: Sequence[int] | None = None):
        """``(mean, std, sequence_std)`` of the chunks ``chunk_ids`` (default all): each
        feature's mean and std over their valid steps, exact (chunk moments combined in
        float64, as `Sequences.feature_stats` computes them on the whole), and every
        sequence's per-feature std, ``(N, F)``."""
        chunks = self.index(stats=True)
        ids = range(len(chunks)) if chunk_ids is None else chunk_ids
        n, mean, m2 = 0, np.zeros(self.n_features), np.zeros(self.n_features)
        for c in ids:
            k = int(chunks[c].lengths.sum())
            delta = chunks[c].mean - mean
            mean = mean + delta * (k / (n + k))
            m2 = m2 + chunks[c].m2 + delta ** 2 * (n * k / (n + k))
            n += k
        mean32, std32 = as_float32_stats(mean, np.sqrt(m2 / max(n, 1)))
        return mean32, std32, np.concatenate([chunks[c].seq_std for c in ids])

    def windows(self, chunk_ids: Sequence[int] | None = None
                ) -> Iterator[tuple[Sequences, np.ndarray | None]]:
        """``(sequences, labels or None)`` of each window of ``chunk_ids`` (default all)
        in index order: how inference walks a source."""
        return ((seqs, labels) for seqs, labels, _ in self._windows(chunk_ids, times=False))

    def timed_windows(self, chunk_ids: Sequence[int] | None = None
                      ) -> Iterator[tuple[Sequences, np.ndarray | None, np.ndarray | None]]:
        """`windows`, with each window's time values too: one per step, aligned with the
        sequences' values (None without a time column), as `seqae.tables.read_data`
        gives them for a file read whole; what reconstructions are written with."""
        return self._windows(chunk_ids, times=True)

    def _windows(self, chunk_ids: Sequence[int] | None, times: bool
                 ) -> Iterator[tuple[Sequences, np.ndarray | None, np.ndarray | None]]:
        chunks = self.index()
        ids = list(range(len(chunks))) if chunk_ids is None else list(chunk_ids)
        for window in _pack(ids, self.sizes, self.window):
            parts = [self._read(chunks[c], times) for c in window]
            if len(parts) == 1:
                yield parts[0]
                continue
            seqs = Sequences.concat([p[0] for p in parts])
            labels = None if self.label_col is None else np.concatenate([p[1] for p in parts])
            steps = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
            yield seqs, labels, steps

    @property
    def sizes(self) -> np.ndarray:
        """Every chunk's number of values (steps x features), in index order."""
        return np.array([int(c.lengths.sum()) * self.n_features for c in self.index()])

    @property
    def lengths(self) -> np.ndarray:
        """Every sequence's length, in index order (chunk by chunk)."""
        return np.concatenate([c.lengths for c in self.index()])

    @property
    def ids(self) -> np.ndarray:
        return np.concatenate([c.ids for c in self.index()])

    def __len__(self) -> int:
        return sum(len(c.lengths) for c in self.index())

    def signature(self) -> dict[str, Any]:
        """What a resumed run must find again: the files (names, sizes) and lengths."""
        import hashlib

        digest = hashlib.sha256(np.ascontiguousarray(self.lengths).tobytes())
        return {"files": [[f.name, f.stat().st_size] for f in self.files],
                "lengths_sha256": digest.hexdigest(), "features": self.features}


def parquet_files(folder: Path) -> list[Path]:
    """The Parquet files of a folder (``*.parquet``, ``*.pq``), sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in (".parquet", ".pq") and p.is_file())


def _kind(t) -> str:
    """A feature column's kind: numbers, lists of numbers, or something else."""
    import pyarrow as pa

    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    return "number" if pa.types.is_integer(t) or pa.types.is_floating(t) else str(t)


# ---------------------------------------------------------------------------- windows
def _pack(chunks: list[int], sizes: np.ndarray, limit: int) -> list[list[int]]:
    """Consecutive chunks packed into windows of at most ``limit`` values (a larger
    chunk alone)."""
    windows: list[list[int]] = []
    size = 0
    for c in chunks:
        if windows and size + sizes[c] <= limit:
            windows[-1].append(c)
            size += int(sizes[c])
        else:
            windows.append([c])
            size = int(sizes[c])
    return windows


class _Windows:
    """Loads windows (lists of chunks) as standardised flat values; an iterable dataset
    for torch's DataLoader: worker w of n loads windows w, w + n, ..."""

    def __init__(self, source: ParquetSource, scaler, windows: list[tuple[int, list[int]]],
                 chunks: list[Chunk]):
        self.source, self.scaler, self.windows, self.chunks = source, scaler, windows, chunks

    def load(self, chunk_ids: list[int]):
        import torch

        parts = []
        for c in chunk_ids:
            chunk = self.chunks[c]
            seqs, _ = self.source.read(chunk)
            if not np.array_equal(seqs.lengths, chunk.lengths):
                raise DataFileError(f"{self.source.where(chunk)}: the data changed since "
                                    "they were indexed (other sequence lengths)")
            parts.append(seqs)
        seqs = parts[0] if len(parts) == 1 else Sequences.concat(parts)
        if self.scaler is not None:
            seqs = self.scaler.transform(seqs)[0]
        values = torch.from_numpy(np.ascontiguousarray(seqs.values, dtype=np.float32))
        values = torch.cat([values, values.new_zeros((1,) + tuple(values.shape[1:]))])
        return values, torch.from_numpy(seqs.offsets.astype(np.int64))

    def __iter__(self):
        import torch.utils.data as tud

        info = tud.get_worker_info()
        k, n = (0, 1) if info is None else (info.id, info.num_workers)
        for i in range(k, len(self.windows), n):
            wid, chunk_ids = self.windows[i]
            yield (wid, *self.load(chunk_ids))


def _loader(dataset: _Windows, workers: int):
    import torch.utils.data as tud

    class _Iterable(tud.IterableDataset):
        def __iter__(self):
            return iter(dataset)

    if workers == 0 or len(dataset.windows) <= 1:
        return iter(dataset)
    return iter(tud.DataLoader(_Iterable(), batch_size=None,
                               num_workers=min(workers, len(dataset.windows)),
                               prefetch_factor=1))


Slot = Any  # (window id, sequence positions in the window), or None: nothing


class StreamData:
    """The training-side view of some chunks of a `ParquetSource` (see the module
    docstring): the same methods `seqae.train.train` calls on `seqae.train.DeviceData`."""

    def __init__(self, source: ParquetSource, chunk_ids: Sequence[int], scaler, device,
                 normalize: str = "element", only: dict[int, np.ndarray] | None = None):
        self.source, self.scaler, self.device = source, scaler, device
        if normalize not in ("element", "sequence"):
            raise ValueError(f"loss_normalize must be 'element' or 'sequence', got "
                             f"{normalize!r}")
        self.normalize = normalize  # streamed data are unweighted
        self.chunks = source.index()
        self.chunk_ids = list(chunk_ids)
        # evaluation on some sequences of each chunk (`eval_sample`): their positions
        self.only = only
        self.lengths = np.concatenate([self.chunks[c].lengths if only is None else
                                       self.chunks[c].lengths[only[c]]
                                       for c in self.chunk_ids])
        self.sizes = source.sizes
        self.windows: dict[int, list[int]] = {}
        self.window_lengths: dict[int, np.ndarray] = {}
        self.n_features = source.n_features

    def __len__(self) -> int:
        return len(self.lengths)

    def _window(self, chunk_ids: list[int]) -> int:
        wid = len(self.windows)
        self.windows[wid] = chunk_ids
        self.window_lengths[wid] = np.concatenate([self.chunks[c].lengths for c in chunk_ids])
        return wid

    def plan(self, epoch: int, batch_size: int, policy: str, seed: int,
             group: int) -> tuple[list[list[Slot]], int]:
        """``(steps, passes)``: the epoch's optimizer steps, ``group`` slots each."""
        self.windows.clear()
        self.window_lengths.clear()
        per_pass = max(1, math.ceil(len(self.lengths) / batch_size))
        passes = max(1, math.ceil(MIN_EPOCH_STEPS * group / per_pass))
        steps: list[list[Slot]] = []
        limit = self.source.window
        if group > 1:  # about 4 windows per lane, so that the lanes end close together
            total = int(self.sizes[self.chunk_ids].sum())
            limit = min(limit, max(1, math.ceil(total / (4 * group))))
        for p in range(passes):
            rng = np.random.default_rng([seed, (epoch - 1) * passes + p + 1])
            order = [self.chunk_ids[i] for i in rng.permutation(len(self.chunk_ids))]
            lanes: list[list[Slot]] = [[] for _ in range(group)]
            for chunk_ids in _pack(order, self.sizes, limit):
                wid = self._window(chunk_ids)
                batches = sorted_batches(self.window_lengths[wid], batch_size, policy, rng=rng)
                lane = min(range(group), key=lambda k: len(lanes[k]))
                lanes[lane] += [(wid, batches[i]) for i in rng.permutation(len(batches))]
            longest = max(len(lane) for lane in lanes)
            steps += [[lane[s] if s < len(lane) else None for lane in lanes]
                      for s in range(longest)]
        return steps, passes

    def eval_plan(self, batch_size: int, policy: str) -> list[Slot]:
        """Every sequence once: windows in index order, sorted batches in each."""
        self.windows.clear()
        self.window_lengths.clear()
        out: list[Slot] = []
        for chunk_ids in _pack(self.chunk_ids, self.sizes, self.source.window):
            wid = self._window(chunk_ids)
            lens = self.window_lengths[wid]
            if self.only is None:
                pos = np.arange(len(lens))
            else:  # the chosen sequences of each chunk, at their place in the window
                at = np.cumsum([0] + [len(self.chunks[c].lengths) for c in chunk_ids])
                pos = np.concatenate([at[i] + self.only[c] for i, c in enumerate(chunk_ids)])
            out += [(wid, pos[b]) for b in sorted_batches(lens[pos], batch_size, policy)]
        return out

    def eval_sample(self, steps: int, rng: np.random.Generator) -> StreamData:
        """Sequences drawn at random until they hold ``steps`` valid steps (at least
        one), in index order (`seqae.train.View.eval_sample`): only the chunks holding
        them are read, and only they are evaluated."""
        assert self.only is None
        order = rng.permutation(len(self.lengths))
        chosen = np.sort(order[:enough(self.lengths[order], steps, 1)])
        counts = [len(self.chunks[c].lengths) for c in self.chunk_ids]
        owner = np.searchsorted(np.cumsum(counts), chosen, side="right")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        only = {self.chunk_ids[int(i)]: chosen[owner == i] - starts[int(i)]
                for i in np.unique(owner)}
        return StreamData(self.source, sorted(only), self.scaler, self.device,
                          self.normalize, only)

    def owner(self, slot: Slot, pos: int, world: int) -> int:
        """The rank that evaluates ``slot``: whole windows per rank."""
        assert slot is not None
        return slot[0] % world

    def elements(self, slot: Slot) -> float:
        if slot is None:
            return 0
        if self.normalize == "sequence":  # each sequence weighs 1
            return float(len(slot[1]))
        return int(self.window_lengths[slot[0]][slot[1]].sum()) * self.n_features

    def weights(self, slot: Slot) -> np.ndarray | None:
        """Under ``"sequence"`` a weight of 1 per sequence (`seqae.sources.coefficients`);
        None: the plain sum over elements."""
        if slot is None or self.normalize == "element":
            return None
        return np.ones(len(slot[1]))

    def steps(self, slot: Slot) -> int:
        return 0 if slot is None else int(self.window_lengths[slot[0]][slot[1]].sum())

    def iterate(self, slots: list[Slot]) -> Iterator[tuple[Any, Any]]:
        """``(x, lengths)`` for each slot in turn; each window read once, in the order
        first needed, and let go after its last slot."""
        import torch

        order = list(dict.fromkeys(s[0] for s in slots if s is not None))
        last = {s[0]: i for i, s in enumerate(slots) if s is not None}
        loads = _loader(_Windows(self.source, self.scaler,
                                 [(w, self.windows[w]) for w in order], self.chunks),
                        self.source.workers)
        held: dict[int, tuple[Any, Any]] = {}
        for i, slot in enumerate(slots):
            if slot is None:
                continue
            wid, idx = slot
            while wid not in held:
                got, values, offsets = next(loads)
                held[int(got)] = (to_device(values, self.device), to_device(offsets, self.device))
            values, offsets = held[wid]
            # the padded length from the lengths on the host: no read-back from a GPU
            yield collate(values, offsets, torch.as_tensor(idx, device=self.device),
                          int(self.window_lengths[wid][idx].max()))
            if last[wid] == i:
                del held[wid]


# ---------------------------------------------------------------------------- outputs
def write_outputs(model, source: ParquetSource, path: str | os.PathLike, what: str = "encode",
                  threshold: float | None = None) -> Path:
    """Stream ``model.encode`` (``what="encode"``: id, label, ``z0..zK``),
    ``model.score`` (``"score"``: id, length, score, anomaly, label) or
    ``model.reconstruct`` (``"reconstruct"``: the long table of the reconstructions, one
    row per step with the input's time values) over ``source`` to the Parquet file
    ``path``, one row group per window: memory stays that of a window. The tables are
    those of a file read whole (`seqae.tables.embeddings_table`,
    `seqae.tables.scores_table`, `seqae.tables.reconstructions_table`). Written to a
    temporary file and renamed, like every seqae output: a failure leaves no file."""
    import pyarrow.parquet as pq

    if what not in ("encode", "score", "reconstruct"):
        raise ValueError(f"what must be 'encode', 'score' or 'reconstruct', got {what!r}")
    path = Path(path)
    if what == "score" and threshold is None:
        threshold = model.threshold_
    windows = source.timed_windows() if what == "reconstruct" else (
        (seqs, labels, None) for seqs, labels in source.windows())
    with atomic_output(path) as tmp:
        writer = None
        try:
            for seqs, labels, times in windows:
                if what == "encode":
                    table = embeddings_table(model.encode(seqs), seqs.ids, source.id_col,
                                             labels, source.label_col)
                elif what == "score":
                    assert threshold is not None
                    table = scores_table(model.score(seqs), threshold, seqs.ids, seqs.lengths,
                                         source.id_col, labels, source.label_col)
                else:
                    table = reconstructions_table(seqs, model.reconstruct(seqs), times,
                                                  source.id_col, source.time_col or "t")
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    return path
