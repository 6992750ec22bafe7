"""Files and tables -> sequences or texts (with times and labels), and back to tables.

The one reader of data files: `read_data` takes a path and a `DataSpec` (which columns
are what) and returns ``(data, times, labels)``, whatever the file:

* ``.txt``: one text per line -> `Texts`;
* a Parquet/CSV table with ``text_col``: one text per row -> `Texts`;
* a Parquet/CSV long table (one row per step; ``id_col`` names the sequence,
  ``time_col`` orders its rows) or a Parquet table with list columns (one row per
  sequence) -> `seqae.Sequences`;
* ``.npz`` (``values`` plus ``offsets`` or ``lengths``) and ``.ts`` (sktime/UEA).

A folder of Parquet files too large to read whole is streamed by
`seqae.stream.ParquetSource` (``ParquetSource.from_spec(folder, spec)``), whose chunks go
through the same checks (`resolve_columns`) and converter (`convert`) as a table here.

The output tables (embeddings, scores, reconstructions, decodings) are shaped here too,
for the command line and for `seqae.stream.write_outputs` alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .data import Sequences, check_numeric, check_time, list_columns, numeric_columns
from .errors import DataFileError, SequenceDataError, describe, require_columns
from .io import read_npz, read_table, read_ts

__all__ = ["DataSpec", "Texts", "read_data", "read_file", "read_sequences", "read_texts",
           "resolve_columns", "convert", "from_list_columns", "first_row_values", "ids_of",
           "lengths_of", "sequences_to_table", "embeddings_table", "scores_table",
           "reconstructions_table", "decodings_table", "check_names", "MARK", "RESERVED"]


@dataclass(frozen=True)
class DataSpec:
    """Which columns of a data file are what.

    Args:
        id_col: the sequence id column (a text table: optional; row numbers without it).
        time_col: optional column ordering each sequence's rows (long tables).
        features: feature columns; default every numeric column other than the id, time
            and label columns and ``exclude`` (long tables), or every list column.
        label_col: optional column of labels, one per sequence (a long table: the label
            of the sequence's first row).
        text_col: a table's column of texts: one text per row.
        label_optional: a ``label_col`` the file lacks means no labels, not an error
            (a label column remembered from training).
        exclude: columns that are never features.
        window, workers: for a folder of Parquet files (see `seqae.stream.ParquetSource`).
        missing: a missing feature value (an empty CSV cell, a Parquet null, a NaN) is an
            error naming the file, column and row (``"error"``, default), or a missing
            element (``"mask"``: read as NaN, see `seqae.data.Sequences`).
    """

    id_col: str = "id"
    time_col: str | None = None
    features: Sequence[str] | None = None
    label_col: str | None = None
    text_col: str | None = None
    label_optional: bool = False
    exclude: Sequence[str] = ()
    window: int | None = None
    workers: int | None = None
    missing: str = "error"

    def is_text(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is read as texts: a ``.txt`` file, or any with ``text_col``."""
        return Path(path).suffix.lower() == ".txt" or bool(self.text_col)

    def label_in(self, columns: Sequence[str]) -> str | None:
        """The label column to read from a file with ``columns`` (None: no labels)."""
        if self.label_optional and self.label_col not in columns:
            return None
        return self.label_col


class Texts(list[str]):
    """Texts read from a file: a list of str, with their ``ids`` and `where` each one is
    in the file (for error messages)."""

    def __init__(self, texts: Iterable[str], ids: np.ndarray, source: str | os.PathLike,
                 column: str | None = None):
        super().__init__(texts)
        self.ids = ids
        self.source, self.column = source, column

    def where(self, i: int) -> str:
        """``"words.txt, line 3"`` or ``"data.csv, column 'word', row 2"``."""
        if self.column is None:
            return f"{self.source}, line {i + 1}"
        return f"{self.source}, column {self.column!r}, row {i}"


# ---------------------------------------------------------------------------- reading
def read_data(path: str | os.PathLike, spec: DataSpec | None = None
              ) -> tuple[Sequences | Texts, np.ndarray | None, np.ndarray | None]:
    """``(data, times or None, labels or None)`` from a file (see the module docstring;
    a folder of Parquet files is read whole); errors name the file, column and row."""
    spec = DataSpec() if spec is None else spec
    if spec.is_text(path):
        return read_texts(path, spec)
    return read_file(path, spec)


def read_file(path: str | os.PathLike, spec: DataSpec | None = None
              ) -> tuple[Sequences, np.ndarray | None, np.ndarray | None]:
    """``(Sequences, times or None, labels or None)`` from a file of sequences: ``.npz``,
    ``.ts``, or a table (`seqae.io.read_table`: Parquet, or CSV for .csv/.tsv/.txt)."""
    spec = DataSpec() if spec is None else spec
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return read_npz(p, spec.missing), None, None
    if suffix == ".ts":
        seqs, labels = read_ts(p, spec.missing)
        return seqs, None, labels
    table = read_table(p, text=(spec.id_col,))
    return convert(table, resolve_columns(table, spec, p), p)


def read_sequences(
    path: str | os.PathLike,
    id_col: str = "id",
    time_col: str | None = None,
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    missing: str = "error",
) -> Sequences:
    """Read sequences from a file.

    * Parquet or CSV, long table: one row per step, ``id_col`` names the sequence,
      ``time_col`` (optional) orders its rows; feature columns default to the other
      numeric columns (less ``exclude``).
    * Parquet, one row per sequence: feature columns hold lists (all of one row's lists
      have the same length).
    * NPZ: ``values`` plus ``offsets`` or ``lengths``; optional ``ids`` and
      ``feature_names``.
    * ``.ts`` (sktime/UEA format), see `seqae.io.read_ts`.

    ``missing``: a missing feature value in a table (empty CSV cell, Parquet null, NaN)
    is an error naming the file, column and row (``"error"``, default), or a missing
    element (``"mask"``, for ``SequenceAutoencoder(missing="mask")``).
    """
    spec = DataSpec(id_col=id_col, time_col=time_col, features=features, missing=missing,
                    exclude=tuple(exclude or ()))
    return read_file(path, spec)[0]


def read_texts(path: str | os.PathLike, spec: DataSpec
               ) -> tuple[Texts, None, np.ndarray | None]:
    """``(Texts, None, labels or None)``: a ``.txt`` file (one text per line) or a table's
    ``text_col`` (one text per row; ids from ``id_col`` when present, else row numbers)."""
    p = Path(path)
    if p.suffix.lower() == ".txt":
        return _read_lines(p), None, None
    table = read_table(p, text=(spec.id_col, spec.text_col))
    names = table.column_names
    label_col = spec.label_in(names)
    require_columns(names, [("text", spec.text_col), ("label", label_col)], p)
    values = table.column(spec.text_col).to_pylist()
    for i, t in enumerate(values):
        if not isinstance(t, str) or not t:
            what = "empty" if t == "" else "missing" if t is None else f"a {type(t).__name__}"
            raise DataFileError(f"{p}, column {spec.text_col!r}, row {i}: the text is {what}")
    ids = (table.column(spec.id_col).to_numpy(zero_copy_only=False) if spec.id_col in names
           else np.arange(len(values)))
    labels = table.column(label_col).to_numpy(zero_copy_only=False) if label_col else None
    return Texts(values, ids, p, spec.text_col), None, labels


def _read_lines(p: Path) -> Texts:
    if not p.is_file():
        raise DataFileError(f"{p}: no such file")
    try:  # a byte-order mark is not text; only \n, \r\n and \r end a line (not U+2028)
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFileError(f"{p}: not UTF-8 text ({e})") from None
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()  # the last line's end
    for i, line in enumerate(lines):
        if not line:
            raise DataFileError(f"{p}, line {i + 1}: empty line (every text needs at least "
                                "one character; remove blank lines)")
    if not lines:
        raise DataFileError(f"{p}: the file holds no text")
    return Texts(lines, np.arange(len(lines)), p)


def resolve_columns(table: Any, spec: DataSpec, where: Any) -> DataSpec:
    """``spec`` made definite for ``table`` (a ``pyarrow.Table``; with no rows, only its
    columns are checked): every named column present, the feature columns chosen, no
    time column for list columns (their lists are in order), no label column where an
    optional one is absent. ``where`` names the table in errors (its file)."""
    names = table.column_names
    lists = list_columns(table)
    time_col = None if lists else spec.time_col
    label_col = spec.label_in(names)
    require_columns(names, [("id", spec.id_col), ("time", time_col), ("label", label_col)],
                    where)
    if time_col is not None:
        check_time(table, time_col, where=f"{where}, ")
    features = spec.features
    if features is not None:
        require_columns(names, [("feature", c) for c in features], where)
        if not lists and table.num_rows:
            for c in features:
                check_numeric(table, c, where=f"{where}, ")
    else:
        features = lists or numeric_columns(
            table, exclude=(spec.id_col, time_col, label_col, *spec.exclude),
            where=f"{where}, ")
        if not features:
            raise DataFileError(f"{where}: no numeric feature columns in {names}")
    return replace(spec, time_col=time_col, label_col=label_col, features=list(features),
                   label_optional=False)


def convert(table: Any, spec: DataSpec, where: Any = "", times: bool = True
            ) -> tuple[Sequences, np.ndarray | None, np.ndarray | None]:
    """``(Sequences, times or None, labels or None)`` of a ``pyarrow.Table`` whose columns
    `resolve_columns` has settled: a long table (one row per step) or list columns (one
    row per sequence). ``times=False``: the time values are not kept."""
    if list_columns(table):
        assert spec.features is not None
        seqs = from_list_columns(table, spec.id_col, list(spec.features), where, spec.missing)
        labels = None if spec.label_col is None else \
            table.column(spec.label_col).to_numpy(zero_copy_only=False)
        return seqs, None, labels
    if spec.missing == "error":
        _refuse_missing(table, spec, where)
    try:
        seqs, steps = Sequences.from_table(table, id=spec.id_col, time=spec.time_col,
                                           features=spec.features, return_time=True,
                                           missing=spec.missing)
    except SequenceDataError as e:
        if not where:
            raise
        raise SequenceDataError(f"{where}: {e}", e.index, e.seq_id) from None
    labels = None if spec.label_col is None else \
        first_row_values(table, spec.id_col, spec.label_col)
    return seqs, steps if times else None, labels


_MISSING_HINT = ("clean or impute it first, or read it as a missing element (missing='mask', "
                 "--missing mask)")


def _refuse_missing(table: Any, spec: DataSpec, where: Any) -> None:
    """Raise `DataFileError` naming the file, column and row (and the row's id) of the
    first missing value (null or NaN) of a long table's feature columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for c in spec.features or ():
        col = table.column(c)
        gone = pc.is_null(col, nan_is_null=True) if pa.types.is_floating(col.type) else \
            pc.is_null(col)
        if not pc.any(gone).as_py():
            continue
        row = int(np.flatnonzero(gone.to_numpy(zero_copy_only=False))[0])
        seq = table.column(spec.id_col)[row].as_py()
        raise DataFileError(f"{where}: column {c!r}, row {row} (id {seq!r}): a missing value "
                            f"(an empty cell, null or NaN); {_MISSING_HINT}")


def from_list_columns(table: Any, id_col: str, features: list[str], where: Any = "",
                      missing: str = "error") -> Sequences:
    """Sequences from a table with one row per sequence: each feature column holds one
    list per row (all of a row's lists have the same length); a null or NaN inside a
    list is refused naming the column, row and step, or with ``missing="mask"`` read as
    a missing element."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = table.column(id_col).to_numpy(zero_copy_only=False)
    lengths = None
    cols = []
    for c in features:
        col = table.column(c).combine_chunks()
        inner = col.type.value_type
        if not (pa.types.is_integer(inner) or pa.types.is_floating(inner)
                or pa.types.is_decimal(inner)):
            what = "nested lists" if pa.types.is_list(inner) or pa.types.is_large_list(
                inner) else f"lists of {inner}"
            raise DataFileError(f"{where}: list column {c!r} holds {what} ({col.type}); a "
                                "list column holds one list of numbers per sequence")
        if col.null_count:
            i = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0])
            raise DataFileError(f"{where}: {describe(i, ids)}: list column {c!r} is null "
                                f"(row {i}); every sequence needs a list of at least one step")
        lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if lengths is None:
            lengths = lens
        elif not np.array_equal(lens, lengths):
            i = int(np.flatnonzero(lens != lengths)[0])
            raise DataFileError(
                f"{where}: {describe(i, ids)}: list column {c!r} has {lens[i]} "
                f"steps but {features[0]!r} has {lengths[i]}"
            )
        cols.append(pc.cast(pc.list_flatten(col), pa.float64()).to_numpy(zero_copy_only=False))
    assert lengths is not None  # features is never empty here
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.stack(cols, 1)
    if missing == "error" and np.isnan(values).any():
        flat, j = (int(k) for k in np.argwhere(np.isnan(values))[0])
        i = int(np.searchsorted(offsets, flat, side="right") - 1)
        raise DataFileError(f"{where}: list column {features[j]!r}, row {i}, step "
                            f"{flat - int(offsets[i])} ({describe(i, ids)}): a missing value "
                            f"(null or NaN); {_MISSING_HINT}")
    return Sequences(values, offsets, ids=ids, feature_names=features, missing=missing)


def first_row_values(table: Any, id_col: str, column: str) -> np.ndarray:
    """One value of ``column`` per sequence of a long table: the value on the sequence's
    first row, sequences in the order their ids first appear (as `Sequences.from_table`
    orders them)."""
    import pyarrow.compute as pc

    enc = pc.dictionary_encode(table.column(id_col)).combine_chunks()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    first = np.full(len(enc.dictionary), -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # last write wins: the first row
    return table.column(column).to_numpy(zero_copy_only=False)[first]


# ---------------------------------------------------------------------------- outputs
def ids_of(data: Sequences | Texts) -> np.ndarray:
    """Each sequence's (or text's) id; positions when the data carry none."""
    return data.ids if data.ids is not None else np.arange(len(data))


def lengths_of(data: Sequences | Sequence[str]) -> Any:
    """Each sequence's length (characters for texts)."""
    return data.lengths if isinstance(data, Sequences) else [len(t) for t in data]


def sequences_to_table(seqs: Sequences, time_values: np.ndarray | None = None,
                       id_col: str = "id", time_col: str = "t") -> Any:
    """Long table of ``seqs``: ``id, t, <features>`` (``t`` = step or given times), the
    first two columns named ``id_col`` and ``time_col``."""

    seq_index = seqs.step_index
    ids = ids_of(seqs)
    cols = {"id": ids[seq_index]}
    if time_values is not None:
        cols["t"] = time_values
    else:
        cols["t"] = np.arange(seqs.n_steps) - seqs.offsets[seq_index]
    names = seqs.feature_names or [f"f{j}" for j in range(seqs.n_features)]
    for j, name in enumerate(names):
        cols[name] = seqs.values[:, j]
    table = _table(cols)
    if (id_col, time_col) == ("id", "t"):
        return table
    return table.rename_columns([id_col, time_col] + table.column_names[2:])


# every output table carries this key in its schema's metadata: a Parquet file that has
# it is one seqae wrote, which a later command may replace (`seqae.io.written_by_seqae`)
MARK = {b"seqae": b"output"}

# the columns each kind of output table holds besides the id: a label column (or an id
# column) may not take one of these names
RESERVED = {"embeddings": ("z0..zK",), "scores": ("length", "score", "anomaly"),
            "reconstructions": ("text", "reconstruction", "exact"), "decodings": ("text",)}


def _table(cols: dict[str, Any]) -> Any:
    import pyarrow as pa

    return pa.table(cols, metadata=MARK)


def check_names(id_col: str, label_col: str | None = None, time_col: str | None = None,
                error: type[Exception] = DataFileError) -> None:
    """Raise when the id, label or time column would take the name of a column seqae
    writes (``anomaly``, ``score``, ``z0``...) or each other's: an output column is never
    overwritten by a column carried over from the input."""
    import re

    taken = {n for names in RESERVED.values() for n in names if n != "z0..zK"}
    named = [(what, c) for what, c in (("id", id_col), ("label", label_col),
                                       ("time", time_col)) if c is not None]
    for what, c in named:
        if c in taken or re.fullmatch(r"z\d+", c):
            raise error(f"the {what} column {c!r} has the name of a column seqae writes "
                        f"({', '.join(sorted(taken))}, z0..zK); rename it in the data")
    cols = [c for _, c in named]
    if len(set(cols)) != len(cols):
        raise error(f"the id, label and time columns must differ, got {dict(named)}")


def _with_labels(cols: dict[str, Any], labels: Any, label_col: str | None) -> dict[str, Any]:
    if labels is not None:
        name = label_col or "label"
        if name in cols:
            check_names(next(iter(cols)), name)
            raise DataFileError(f"the label column {name!r} would overwrite an output column")
        cols[name] = labels
    return cols


def embeddings_table(Z: np.ndarray, ids: Any, id_col: str = "id", labels: Any = None,
                     label_col: str | None = None) -> Any:
    """``id, [label], z0..zK``: one row per sequence."""

    check_names(id_col, None if labels is None else label_col)
    cols = _with_labels({id_col: ids}, labels, label_col)
    cols.update({f"z{k}": Z[:, k] for k in range(Z.shape[1])})
    return _table(cols)


def scores_table(scores: np.ndarray, threshold: float, ids: Any, lengths: Any,
                 id_col: str = "id", labels: Any = None, label_col: str | None = None) -> Any:
    """``id, length, score, anomaly, [label]``: one row per sequence, ``anomaly`` when
    its score is above ``threshold``."""

    cols = {id_col: ids, "length": lengths, "score": scores, "anomaly": scores > threshold}
    return _table(_with_labels(cols, labels, label_col))


def reconstructions_table(data: Sequences | Texts, rec: Any, times: np.ndarray | None = None,
                          id_col: str = "id", time_col: str = "t") -> Any:
    """Texts: ``id, text, reconstruction, exact`` (one row per text); sequences: the long
    table of the reconstructions (``id_col, time_col, <features>``, the input's times)."""

    if isinstance(data, Texts):
        return _table({id_col: ids_of(data), "text": list(data), "reconstruction": rec,
                         "exact": [a == b for a, b in zip(data, rec, strict=True)]})
    return sequences_to_table(rec, times, id_col, time_col)


def decodings_table(decoded: Sequences | list[str], ids: Any, id_col: str = "id",
                    time_col: str = "t") -> Any:
    """Texts: ``id, text``; sequences: their long table (``id_col, time_col, <features>``,
    steps numbered from 0)."""

    if not isinstance(decoded, Sequences):
        return _table({id_col: ids, "text": decoded})
    seqs = Sequences(decoded.values, decoded.offsets, ids=ids,
                     feature_names=decoded.feature_names)
    return sequences_to_table(seqs, None, id_col, time_col)
