"""The index of a Parquet folder: where each sequence is, its length, and the statistics.

`build` makes one pass over the files for `seqae.stream.ParquetSource`:

- the *chunks* come from the id column alone (`plan_chunks`): a row group's own
  sequences, plus the rows by which its last one runs into the next groups;
- each chunk is read once (the next one is read by a thread while this one is counted)
  and counted column by column (`_count`): sequence boundaries where the id changes,
  lengths, each feature's mean and sum of squared deviations and each sequence's std,
  in float64, with no per-row or per-sequence Python work. A chunk that is anything but
  plain (ids not in runs, times not increasing within a sequence, a null, a NaN, an
  infinity, a value beyond float32) is read the general way (``fallback``: sorting and
  every check with its clear error), so the fast path never decides what the data mean;
- with ``stats=False`` (inference, a validation folder) only the id and time columns are
  read.

The result is cached (`cache_dir`; ``SEQAE_CACHE_DIR``) in one small Parquet file keyed
by the files' paths, sizes and modification times and the columns read: a second run
skips the pass, and under torchrun rank 0 indexes while the other ranks wait and then
read its file. The cache is kept out of the data folder on purpose: seqae never writes
into its input, and data folders are often read-only or shared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import as_float32_stats
from .errors import DataFileError
from .io import atomic_output

__all__ = ["Chunk", "build", "cache_dir", "plan_chunks", "CACHE_VERSION"]

log = logging.getLogger("seqae")

CACHE_VERSION = 1
_F32_MAX = float(np.finfo(np.float32).max)

# report(done, total): rows indexed so far, of all rows
Report = Callable[[int, int], None]


@dataclass
class Chunk:
    """Rows ``start`` to ``stop - 1`` of file ``file``: the sequences that start in one
    row group, with the rows of the last one that run into the next row groups."""

    file: int
    start: int
    stop: int
    row_groups: list[int]  # the row groups those rows lie in
    # filled in by `build`:
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0))  # in the order read
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (F,) over valid steps
    m2: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (F,) squared deviations
    seq_std: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N, F) per sequence

    @property
    def rows(self) -> int:
        return self.stop - self.start


def plan_chunks(files: Sequence[Path], id_col: str, lists: bool) -> list[Chunk]:
    """Chunks from the id column alone (the features are not read); one row group each
    for list columns (a row is a sequence)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out: list[Chunk] = []
    for fi, f in enumerate(files):
        pf = pq.ParquetFile(f)
        sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if lists:
            out += [Chunk(fi, int(starts[g]), int(starts[g + 1]), [g])
                    for g in range(len(sizes)) if sizes[g]]
            continue
        # head[g]: leading rows of group g that continue the sequence before it
        head = np.zeros(len(sizes), np.int64)
        last = None
        for g, n in enumerate(sizes):
            if n == 0:
                continue
            ids = pf.read_row_group(g, columns=[id_col]).column(0)
            if last is not None:
                differs = pc.not_equal(ids, last).to_numpy(zero_copy_only=False)
                head[g] = int(np.argmax(differs)) if differs.any() else n
            last = ids[-1]
        cut = [int(starts[g] + head[g]) for g in range(len(sizes)) if head[g] < sizes[g]]
        for a, b in zip(cut, cut[1:] + [int(starts[-1])], strict=True):
            groups = [g for g in range(len(sizes)) if starts[g] < b and starts[g + 1] > a]
            out.append(Chunk(fi, a, b, groups))
    return out


def read_rows(path: Path, chunk: Chunk, columns: list[str]) -> Any:
    """The rows of ``chunk`` (a ``pyarrow.Table`` of ``columns``), reading only the row
    groups they lie in."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    table = pf.read_row_groups(chunk.row_groups, columns=columns)
    return table.slice(chunk.start - _rows_before(pf, chunk.row_groups[0]), chunk.rows)


def _rows_before(pf: Any, group: int) -> int:
    """Rows of the file ``pf`` (an open ``ParquetFile``) before its row group ``group``."""
    return sum(pf.metadata.row_group(g).num_rows for g in range(group))


# ------------------------------------------------------------------------ counting
def _runs(table: Any, id_col: str, time_col: str | None) -> tuple[Any, np.ndarray] | None:
    """``(ids, starts)`` of a long table whose sequences are runs of equal ids with
    increasing times, each id in one run; None for anything else (`build` then reads
    the chunk the general way, which sorts and says what is wrong)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(id_col)
    if col.null_count or table.num_rows == 0:
        return None
    col = col.combine_chunks()
    n = len(col)
    if pa.types.is_integer(col.type):
        a = col.to_numpy()
        change = np.flatnonzero(a[1:] != a[:-1]) + 1
    else:
        change = np.flatnonzero(pc.not_equal(col.slice(1), col.slice(0, n - 1))
                                .to_numpy(zero_copy_only=False)) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ids = col.take(pa.array(starts))
    if pc.count_distinct(ids).as_py() != len(starts):
        return None  # an id in two runs: the general reader groups it
    if time_col is not None:
        t = table.column(time_col)
        if t.null_count:
            return None
        tt = t.combine_chunks()
        if not (pa.types.is_integer(tt.type) or pa.types.is_floating(tt.type)
                or pa.types.is_temporal(tt.type)):
            return None
        tv = tt.to_numpy(zero_copy_only=False)
        rising = tv[1:] > tv[:-1]  # NaN compares False: the general reader names it
        rising[change - 1] = True  # a new sequence may start anywhere
        if not rising.all():
            return None
    return ids.to_numpy(zero_copy_only=False), starts


def _moments(table: Any, features: list[str], starts: np.ndarray, lengths: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(mean, m2, seq_std)`` of the feature columns (as `Sequences.feature_stats` and
    `Sequences.sequence_stats` count them, in float64), or None when a value is null,
    NaN, infinite or beyond float32 (the general reader refuses it by name). (Counting
    the columns in threads was slower, on 6 columns as on 256: the reading thread is
    the one to overlap with.)"""
    import pyarrow as pa
    import pyarrow.compute as pc

    n, k = int(lengths.sum()), len(lengths)
    s1, sm2 = np.empty((len(features), k)), np.empty((len(features), k))
    for j, col in enumerate(table.select(features).columns):
        if col.null_count:
            return None
        if not pa.types.is_floating(col.type):
            col = pc.cast(col, pa.float64())
        x = col.to_numpy()
        if x.dtype != np.float32:  # values are float32 in seqae, whatever the file holds
            if not np.isfinite(x).all() or float(np.abs(x).max()) > _F32_MAX:
                return None
            x = x.astype(np.float32)
        s1[j] = np.add.reduceat(x, starts, dtype=np.float64)
        dev = np.repeat(s1[j] / lengths, lengths)
        np.subtract(x, dev, out=dev)
        np.square(dev, out=dev)
        sm2[j] = np.add.reduceat(dev, starts)
    if not np.isfinite(s1).all():  # a NaN or an infinity (float32 never overflows here)
        return None
    seq_mean = s1 / lengths  # (F, N)
    mean = s1.sum(axis=1) / n
    m2 = sm2.sum(axis=1) + (lengths * (seq_mean - mean[:, None]) ** 2).sum(axis=1)
    return mean, m2, as_float32_stats(seq_mean.T, np.sqrt(sm2 / lengths).T)[1]


def _fill_fast(chunk: Chunk, table: Any, source: Any, stats: bool) -> bool:
    """Fill ``chunk`` from ``table`` counted column by column; False when the chunk is
    not plain (`_runs`, `_moments`)."""
    if source.lists:
        return False
    runs = _runs(table, source.id_col, source.time_col)
    if runs is None:
        return False
    ids, starts = runs
    lengths = np.diff(np.append(starts, table.num_rows)).astype(np.int64)
    if stats:
        got = _moments(table, source.features, starts, lengths)
        if got is None:
            return False
        chunk.mean, chunk.m2, chunk.seq_std = got
    chunk.ids, chunk.lengths = ids, lengths
    return True


def _fill_read(chunk: Chunk, source: Any, stats: bool) -> None:
    """Fill ``chunk`` from the general reader (`seqae.stream.ParquetSource.read`)."""
    seqs, _ = source.read(chunk)
    chunk.ids = seqs.ids if seqs.ids is not None else np.arange(len(seqs))
    chunk.lengths = seqs.lengths.copy()
    if stats:
        v = seqs.values.astype(np.float64)
        chunk.mean = v.mean(axis=0)
        chunk.m2 = ((v - chunk.mean) ** 2).sum(axis=0)
        del v
        chunk.seq_std = seqs.sequence_stats()[1]


def _check_unique(source: Any, chunks: list[Chunk]) -> None:
    """Raise `DataFileError` when an id is in two chunks, naming the place where it
    appears again and the place it was first."""
    ids = np.concatenate([c.ids for c in chunks])
    owner = np.repeat(np.arange(len(chunks)), [len(c.ids) for c in chunks])
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    dup = np.flatnonzero(s[1:] == s[:-1])
    if not len(dup):
        return
    again = order[dup + 1]
    k = int(np.argmin(again))  # the repeat met first, reading in order
    pos = int(again[k])
    first = int(order[np.searchsorted(s, s[dup[k]], side="left")])
    sid = ids[pos].item() if hasattr(ids[pos], "item") else ids[pos]
    raise DataFileError(
        f"{source.where(chunks[owner[pos]])}: sequence {sid!r} appears again (first in "
        f"{source.where(chunks[owner[first]])}); a sequence's rows must be consecutive rows "
        "of one file")


def _scan(source: Any, stats: bool, report: Report | None) -> list[Chunk]:
    """One pass over the files: the chunks, counted (see the module docstring)."""
    chunks = plan_chunks(source.files, source.id_col, source.lists)
    if not chunks:
        raise DataFileError(f"{source.path}: no rows in {len(source.files)} file(s)")
    columns = [c for c in dict.fromkeys([source.id_col, source.time_col,
                                         *(source.features if stats else [])])
               if c is not None]
    total, done = sum(c.rows for c in chunks), 0

    # the file being read, open (its footer parsed once), and its row groups still
    # needed: a chunk whose last sequence runs into the next group shares that group
    # with the next chunk, and each group is decoded once
    opened: dict[int, Any] = {}
    held: dict[int, Any] = {}

    def load(c: Chunk) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if c.file not in opened:
                opened.clear()
                held.clear()
                opened[c.file] = pq.ParquetFile(source.files[c.file])
            pf = opened[c.file]
            for g in [g for g in held if g < c.row_groups[0]]:
                del held[g]
            for g in c.row_groups:
                if g not in held:
                    held[g] = pf.read_row_group(g, columns=columns)
            table = held[c.row_groups[0]] if len(c.row_groups) == 1 else \
                pa.concat_tables([held[g] for g in c.row_groups])
            return table.slice(c.start - _rows_before(pf, c.row_groups[0]), c.rows)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataFileError(f"{source.where(c)}: cannot read it: {e}") from None

    with ThreadPoolExecutor(max_workers=1) as pool:  # the next chunk is read meanwhile
        ahead = pool.submit(load, chunks[0])
        for i, chunk in enumerate(chunks):
            table = ahead.result()
            if i + 1 < len(chunks):
                ahead = pool.submit(load, chunks[i + 1])
            if not _fill_fast(chunk, table, source, stats):
                _fill_read(chunk, source, stats)
            del table
            done += chunk.rows
            if report is not None:
                report(done, total)
    _check_unique(source, chunks)
    return chunks


# ------------------------------------------------------------------------ the cache
def cache_dir() -> Path | None:
    """Where indexes are cached: ``$SEQAE_CACHE_DIR``, else ``$XDG_CACHE_HOME/seqae``,
    else ``~/.cache/seqae``; None (no cache) when ``SEQAE_CACHE_DIR`` is ``off``."""
    env = os.environ.get("SEQAE_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("off", "none", "0", "") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "seqae"


def _key(source: Any) -> dict[str, Any]:
    files = []
    for f in source.files:
        st = Path(f).stat()
        files.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
    return {"version": CACHE_VERSION, "files": files, "id": source.id_col,
            "time": source.time_col, "features": list(source.features), "lists": source.lists}


def _cache_path(key: dict[str, Any]) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return folder / f"index-{digest}.parquet"


def _save(path: Path, key: dict[str, Any], chunks: list[Chunk], stats: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, Any] = {
        "chunk": pa.array(np.repeat(np.arange(len(chunks), dtype=np.int32),
                                    [len(c.ids) for c in chunks])),
        "id": pa.array(np.concatenate([c.ids for c in chunks])),
        "length": pa.array(np.concatenate([c.lengths for c in chunks])),
    }
    if stats:
        std = np.concatenate([c.seq_std for c in chunks]).astype(np.float32)
        cols["seq_std"] = pa.FixedSizeListArray.from_arrays(pa.array(std.reshape(-1)),
                                                            std.shape[1])
    meta = {"key": key, "stats": stats, "chunks": [
        {"file": c.file, "start": c.start, "stop": c.stop, "row_groups": c.row_groups,
         **({"mean": c.mean.tolist(), "m2": c.m2.tolist()} if stats else {})}
        for c in chunks]}
    table = pa.table(cols).replace_schema_metadata({"seqae.index": json.dumps(meta)})
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def _load(path: Path, key: dict[str, Any], stats: bool) -> list[Chunk] | None:
    """The cached chunks, or None when there are none for ``key`` (with the statistics
    when ``stats``)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"seqae.index"])
    if meta["key"] != key or (stats and not meta["stats"]):
        return None
    owner = table.column("chunk").to_numpy()
    cut = np.searchsorted(owner, np.arange(1, len(meta["chunks"])))
    ids = np.split(table.column("id").to_numpy(zero_copy_only=False), cut)
    lengths = np.split(table.column("length").to_numpy().astype(np.int64), cut)
    std = None
    if meta["stats"]:
        col = table.column("seq_std").combine_chunks()
        flat = col.flatten().to_numpy().astype(np.float32)
        std = np.split(flat.reshape(len(col), -1), cut)
    out = []
    for i, c in enumerate(meta["chunks"]):
        chunk = Chunk(c["file"], c["start"], c["stop"], list(c["row_groups"]), ids[i],
                      lengths[i])
        if std is not None:
            chunk.mean, chunk.m2 = np.asarray(c["mean"]), np.asarray(c["m2"])
            chunk.seq_std = std[i]
        out.append(chunk)
    return out


def _cached(path: Path | None, key: dict[str, Any], stats: bool) -> list[Chunk] | None:
    if path is None:
        return None
    try:
        return _load(path, key, stats)
    except Exception as e:  # a damaged or foreign file: index again, and replace it
        log.warning("seqae: ignoring the index cache %s (%s); indexing again", path, e)
        return None


def _store(path: Path | None, key: dict[str, Any], chunks: list[Chunk], stats: bool) -> None:
    if path is None:
        return
    try:
        _save(path, key, chunks, stats)
    except Exception as e:  # a read-only home, a full disk: the index still holds
        log.warning("seqae: could not cache the index in %s (%s); set SEQAE_CACHE_DIR to "
                    "a writable folder, or to 'off'", path, e)


def build(source: Any, stats: bool = True, report: Report | None = None) -> list[Chunk]:
    """The chunks of ``source`` (a `seqae.stream.ParquetSource`), from the cache or one
    pass over its files (then cached). Under torchrun rank 0 makes the pass while the
    other ranks wait, then read the cache (or, when it cannot be shared, index too)."""
    key = _key(source)
    path = _cache_path(key)
    got = _cached(path, key, stats)
    if got is not None:
        log.info("seqae: index of %s read from the cache %s", source.path, path)
        return got
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and path is not None:
        from .distributed import context

        ctx = context()
        if ctx.world > 1:
            error: BaseException | None = None
            if ctx.main:
                try:
                    got = _indexed(source, stats, report)
                    _store(path, key, got, stats)
                except BaseException as e:  # the others must not wait forever
                    error = e
            ctx.barrier()
            if error is not None:
                raise error
            if got is None:
                got = _cached(path, key, stats)
            if got is not None:
                return got
    got = _indexed(source, stats, report)
    _store(path, key, got, stats)
    return got


def _indexed(source: Any, stats: bool, report: Report | None) -> list[Chunk]:
    began = time.perf_counter()
    chunks = _scan(source, stats, report)
    log.info("seqae: indexed %s: %d sequences in %d chunks, %.1f s", source.path,
             sum(len(c.ids) for c in chunks), len(chunks), time.perf_counter() - began)
    return chunks

