"""Files: atomic writes; table files (Parquet/CSV) in and out; the .npz and .ts formats.

Which columns of a file are what, texts, and the output tables are `seqae.tables`'s
(`read_data`, the one reader). `read_sequences`, `first_row_values` and
`sequences_to_table`, public here before it, are still found here (`__getattr__`).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .data import Sequences
from .errors import DataFileError, SequenceDataError

__all__ = [
    "DataFileError",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output",
    "written_by_seqae",
    "read_npz",
    "read_table",
    "read_ts",
    "write_table",
]


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask. Linux shows it in /proc/self/status; elsewhere it is read by
    setting it and putting it back, which another thread creating a file in between
    would see (so the fallback at least never races our own writers)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write to; when the block ends without an
    error it is made durable (fsync) and renamed to ``path``, so that a reader sees the
    old file or the new one, never a partial one; on an error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        # mkstemp creates the file 0600; give it what open() would: 0666 less the umask
        os.fchmod(fd, 0o666 & ~current_umask())
        os.close(fd)
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see `atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------------------- outputs
def written_by_seqae(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an output table seqae wrote: a Parquet file whose schema
    carries seqae's mark (`seqae.tables.MARK`). CSV and NPY files carry no mark."""
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in (".parquet", ".pq"):
        return False
    try:
        meta = pq.read_schema(p).metadata or {}
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
    return meta.get(b"seqae") == b"output"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = (),
                 overwrite: bool = False) -> None:
    """Raise `DataFileError` unless an output may be written to ``path``, before any
    work: it is none of ``inputs`` (files, or folders it would land in), not a folder,
    and either absent or a file seqae wrote (`written_by_seqae`); ``overwrite`` allows
    replacing any other file (never an input)."""
    p = Path(path)
    for given in inputs:
        q = Path(given)
        if _same(p, q) or p.resolve() == q.resolve():
            raise DataFileError(f"{p}: the output would overwrite the input {q}; give "
                                "another --out")
        if q.is_dir() and q.resolve() in p.resolve().parents:
            raise DataFileError(f"{p}: the output would be written inside the input folder "
                                f"{q}; give an --out outside it")
    if p.is_dir():
        raise DataFileError(f"{p} is a folder; --out names the file to write")
    if p.exists() and not overwrite and not written_by_seqae(p):
        raise DataFileError(f"{p} exists and is not an output seqae wrote (seqae marks the "
                            "Parquet files it writes; CSV and NPY files carry no mark); give "
                            "--overwrite to replace it, or another --out")


# ---------------------------------------------------------------------------- reading
def read_table(path: str | os.PathLike, text: tuple[str | None, ...] = ()):
    """A ``pyarrow.Table`` from a Parquet or CSV file (by extension).

    A CSV file is UTF-8 text (a non-UTF-8 column is an error naming it, never bytes), and
    its ``text`` columns (the id column) are read as the text they hold: ids ``01``,
    ``1`` and ``007`` stay three ids. Other CSV columns are typed by pyarrow (numbers,
    ISO dates and timestamps, text)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    table = None
    try:
        if suffix in (".parquet", ".pq") or path.is_dir():
            table = pq.read_table(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            opts = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            types = pacsv.ConvertOptions(column_types={c: pa.string() for c in text if c})
            table = pacsv.read_csv(path, parse_options=opts, convert_options=types)
            binary = [f.name for f in table.schema if pa.types.is_binary(f.type)]
            if binary:
                raise DataFileError(f"{path}, column {binary[0]!r}: not UTF-8 text (another "
                                    "encoding, e.g. latin-1?); save the file as UTF-8")
    except (pa.ArrowInvalid, OSError) as e:
        if "invalid UTF8" in str(e):
            raise DataFileError(f"{path}: not UTF-8 text ({e}); save the file as "
                                "UTF-8") from None
        raise DataFileError(f"{path}: cannot read it as {suffix[1:]}: {e}") from None
    if table is not None:
        if table.num_rows == 0:
            raise DataFileError(f"{path}: no rows (columns {table.column_names}, no data)")
        return table
    raise DataFileError(f"{path}: unknown file type {suffix!r}; use .parquet, .csv or .npz")


def read_npz(path: str | os.PathLike, missing: str = "error") -> Sequences:
    """Sequences from an ``.npz``: ``values`` plus ``offsets`` or ``lengths``; optional
    ``ids`` and ``feature_names``. ``missing``: a NaN in ``values`` is an error naming the
    sequence, step and feature (``"error"``, default) or a missing element (``"mask"``)."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataFileError(f"{path}: cannot read it as npz: {e}") from None
    with z:
        if "values" not in z:
            raise DataFileError(f"{path}: an npz needs 'values' and 'offsets' or 'lengths'; "
                                f"it has {list(z.keys())}")
        values = z["values"]
        if "offsets" in z:
            offsets = z["offsets"]
        elif "lengths" in z:
            offsets = np.concatenate([[0], np.cumsum(z["lengths"])])
        else:
            raise DataFileError(f"{path}: an npz needs 'offsets' or 'lengths' beside 'values'")
        ids = z["ids"] if "ids" in z else None
        names = [str(s) for s in z["feature_names"]] if "feature_names" in z else None
    try:
        return Sequences(values, offsets, ids=ids, feature_names=names, missing=missing)
    except SequenceDataError as e:
        raise SequenceDataError(f"{path}: {e}", e.index, e.seq_id) from None


def read_ts(path: str | os.PathLike, missing: str = "error"
            ) -> tuple[Sequences, np.ndarray | None]:
    """Read a sktime/UEA ``.ts`` file: ``(sequences, labels or None)``.

    Supports equal and unequal lengths, univariate and multivariate series (each
    ``@data`` line holds one case: its dimensions separated by ``:``, values by ``,``,
    then the class label when ``@classLabel true``). All dimensions of a case must have
    the same length. A missing value (``?``, or ``NaN``) is an error naming the line,
    case, dimension and position (``missing="error"``, default), or a missing element
    (``"mask"``).
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    labelled = False
    arrays: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                low = line.lower()
                if low.startswith("@classlabel"):
                    labelled = low.split()[1] == "true"
                elif low.startswith("@data"):
                    in_data = True
                continue
            parts = line.split(":")
            if labelled:
                labels.append(parts.pop().strip())
            try:
                dims = [np.array([float("nan") if v.strip() == "?" else float(v)
                                  for v in p.split(",")], dtype=np.float32) for p in parts]
            except ValueError as e:
                raise DataFileError(f"{path}:{lineno}: case {len(arrays)}: {e}") from None
            if missing == "error":
                for j, d in enumerate(dims):
                    gaps = np.flatnonzero(np.isnan(d))
                    if len(gaps):
                        raise DataFileError(
                            f"{path}:{lineno}: case {len(arrays)}, dimension {j}, position "
                            f"{gaps[0]}: a missing value. Read it as a missing element "
                            f"(missing='mask', --missing mask) or fill it first")
            if len({len(d) for d in dims}) != 1:
                raise DataFileError(f"{path}:{lineno}: case {len(arrays)}: its dimensions "
                                    f"have different lengths {[len(d) for d in dims]}")
            arrays.append(np.stack(dims, axis=1))
    if not arrays:
        raise DataFileError(f"{path}: no @data cases")
    try:
        seqs = Sequences.from_list(arrays, missing=missing)
    except SequenceDataError as e:
        raise SequenceDataError(f"{path}: {e}", e.index, e.seq_id) from None
    return seqs, (np.array(labels) if labelled else None)


# ---------------------------------------------------------------------------- writing
def write_table(table, path: str | os.PathLike) -> Path:
    """Write a ``pyarrow.Table`` by extension: .parquet (default), .csv or .npy
    (numeric columns only, as one 2-D array). Atomic like every seqae write."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    suffix = path.suffix.lower()
    sink = pa.BufferOutputStream()
    if suffix == ".csv":
        pacsv.write_csv(table, sink)
    elif suffix == ".npy":
        import io as _io

        numeric = [c for c in table.column_names
                   if pa.types.is_floating(table.schema.field(c).type)]
        arr = np.stack([table.column(c).to_numpy() for c in numeric], 1)
        buf = _io.BytesIO()
        np.save(buf, arr)
        atomic_write_bytes(path, buf.getvalue())
        return path
    else:
        pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


# Public here before seqae.tables held them (the one reader, the output tables): still
# importable from seqae.io. Looked up when first used, as seqae.tables is a higher layer.
_MOVED = ("read_sequences", "first_row_values", "sequences_to_table")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module("seqae.tables"), name)
    raise AttributeError(f"module 'seqae.io' has no attribute {name!r}")
