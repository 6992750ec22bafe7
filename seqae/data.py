"""`Sequences`: the ragged container every seqae call takes and returns.

A data set of N variable-length sequences is stored as ONE flat values array plus
offsets (the CSR / `indptr` layout): sequence ``i`` is ``values[offsets[i]:offsets[i+1]]``.
There is no padding inside a `Sequences`, so nothing in it can be mistaken for data or
leak into a computation; padding is created per batch, at the last moment, by
:meth:`Sequences.pad` or by the batch collate.

Two kinds of data share the container:

* continuous: ``values`` is ``(total_steps, F)`` float32;
* tokens: ``values`` is ``(total_steps,)`` int64 (character or word ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, overload

import numpy as np

from .errors import SequenceDataError, describe, require_columns

__all__ = ["Sequences", "numeric_columns", "list_columns", "check_numeric", "check_time",
           "as_float32_stats", "MISSING"]

# what a NaN inside a sequence's length is: an error (the default), or an element that
# was not observed ("mask"; see docs/gaps.md)
MISSING = ("error", "mask")


_NUMBER = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|nan|inf|infinity)\s*$"


def _is_number_type(t: Any) -> bool:
    """Integers, floats and decimals: the types taken as features without being named."""
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _is_time_type(t: Any) -> bool:
    """What a time column may hold: numbers, timestamps, dates, times of day, durations."""
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t)
                or pa.types.is_temporal(t))


def check_time(table: Any, column: str, where: str = "") -> None:
    """Raise `SequenceDataError` unless ``column`` holds numbers or timestamps (text is
    never sorted as text: ``"10"`` before ``"9"``, ``"1/2/2024"`` after ``"1/10/2024"``)
    with no missing or NaN value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = table.schema.field(column).type
    if not _is_time_type(t):
        col = table.column(column)
        first = col[0].as_py() if len(col) else None
        raise SequenceDataError(
            f"{where}time column {column!r} holds {t} (e.g. {first!r}), not numbers or "
            "timestamps; seqae never orders times as text: store them as numbers or "
            "timestamps (CSV: ISO 8601 such as 2024-01-31T12:00:00 is read as a timestamp; "
            "otherwise parse it, e.g. pyarrow.compute.strptime(col, format='%d/%m/%Y', "
            "unit='s'))")
    col = table.column(column)
    if pa.types.is_floating(t):
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, t), col)
    if col.null_count:
        row = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0])
        raise SequenceDataError(f"{where}time column {column!r}, row {row}: a missing or NaN "
                                "time")


def _text_numbers(col: Any) -> tuple[tuple[int, Any] | None, int]:
    """For a text column: ``(row, value)`` of its first value that is not a number, or
    None when every value is one (nulls count as missing numbers, not as text); and how
    many of its values are numbers. One pass of the number pattern."""
    import pyarrow.compute as pc

    ok = pc.match_substring_regex(col, _NUMBER, ignore_case=True)
    bad = pc.invert(pc.fill_null(ok, True)).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(bad)
    first = None if not len(rows) else (int(rows[0]), col[int(rows[0])].as_py())
    return first, int(pc.sum(ok).as_py() or 0)


def check_numeric(table: Any, column: str, where: str = "") -> None:
    """Raise `SequenceDataError` naming the row when feature ``column`` is not numeric."""
    import pyarrow as pa

    t = table.schema.field(column).type
    if _is_number_type(t) or pa.types.is_boolean(t):  # a bool named as a feature: 0/1
        return
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        found, _ = _text_numbers(table.column(column))
        row, value = found if found else (0, None)
        raise SequenceDataError(
            f"{where}column {column!r}, row {row}: {value!r} is not a number (a feature "
            "column must hold numbers only)")
    raise SequenceDataError(f"{where}column {column!r} holds {t}, not numbers")


def numeric_columns(table: Any, exclude: Iterable[str | None] = (), where: str = "") -> list[str]:
    """Names of a pyarrow table's integer, floating-point and decimal columns, less
    ``exclude``: the features of a table whose features are not named.

    No column is dropped without a word (``where`` prefixes the messages, e.g. the file):

    * a text column whose values are mostly numbers is a numeric column spoiled by a
      stray value (``1.2.3``, ``n/a``...), and one whose values are all numbers holds
      numbers stored as text: both raise `SequenceDataError` naming the column (and the
      row), as seqae does not guess which was meant;
    * a bool column raises too: a flag may be a feature (name it) or a label;
    * other text columns (names, categories) and other types (dates, binary...) are not
      features: they are left out and named in a log message (logger ``seqae``).
    """
    import logging

    import pyarrow as pa

    skip = set(exclude)
    names, left_out = [], []
    for f in table.schema:
        if f.name in skip:
            continue
        if _is_number_type(f.type):
            names.append(f.name)
        elif pa.types.is_boolean(f.type):
            raise SequenceDataError(
                f"{where}column {f.name!r} holds true/false values: seqae does not guess "
                "whether a flag is a feature or a label; name the features (features=, "
                "--features) to use it as 0/1, make it the label (--label-col), or exclude "
                "it (exclude=, --exclude)")
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            col = table.column(f.name)
            valid = len(col) - col.null_count
            found, numbers = _text_numbers(col) if valid else (None, 0)
            if found is None and numbers:
                row = next(i for i, v in enumerate(col) if v.is_valid)
                raise SequenceDataError(
                    f"{where}column {f.name!r} holds numbers stored as text (row {row}: "
                    f"{col[row].as_py()!r}): store them as numbers to use the column as a "
                    "feature, or exclude it (exclude=, --exclude)")
            # mostly numbers: a numeric column spoiled by a stray value
            if found is not None and numbers >= max(1, valid // 2):
                row, value = found
                raise SequenceDataError(
                    f"{where}column {f.name!r}, row {row}: {value!r} is not a number, but "
                    f"{numbers} of the column's {valid} values are; fix the value, or name "
                    "the feature columns explicitly")
            left_out.append(f.name)
        else:
            left_out.append(f.name)
    if left_out:
        logging.getLogger("seqae").info("%snot features (not numbers): %s", where, left_out)
    return names


def list_columns(table: Any) -> list[str]:
    """Names of a pyarrow table's list columns (one sequence per row)."""
    import pyarrow as pa

    return [f.name for f in table.schema
            if pa.types.is_list(f.type) or pa.types.is_large_list(f.type)]


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like, including torch tensors on any device."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _whole(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as int64, refusing values that are not whole numbers (never truncated)."""
    if a.dtype.kind in "iu":
        return a.astype(np.int64, copy=False)
    if a.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(a) | (a != np.round(a)))
        if len(bad):
            raise SequenceDataError(f"{what} must be whole numbers; position {bad[0]} holds "
                                    f"{float(a[bad[0]])!r} (seqae never truncates them)")
        return a.astype(np.int64)
    raise SequenceDataError(f"{what} must be integers, got {a.dtype}")


def _check_range(raw: np.ndarray, values: np.ndarray, offsets: np.ndarray, ids: Any,
                 names: Sequence[str] | None) -> None:
    """Refuse finite float64 values beyond float32's range: 1e308 is a number, not the
    "inf" its float32 copy holds."""
    over = np.isinf(values) & np.isfinite(raw)
    if not over.any():
        return
    row, feat = (int(k) for k in np.argwhere(over)[0])
    i = int(np.searchsorted(offsets, row, side="right") - 1)
    name = names[feat] if names is not None else str(feat)
    raise SequenceDataError(
        f"{describe(i, ids)} has {raw[row, feat]:g} at step {row - int(offsets[i])}, "
        f"feature {name}: beyond float32's range (+-3.4e38), in which seqae computes; "
        "rescale the feature", index=i)


def as_float32_stats(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(mean, std)``, with std 1 where a feature has no spread (it is centred,
    not divided by ~0)."""
    std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


class Sequences:
    """A ragged batch of variable-length sequences: flat values + offsets.

    Args:
        values: ``(total_steps, F)`` floats (continuous) or ``(total_steps,)`` integers
            (tokens), all sequences concatenated along the first axis.
        offsets: ``(N + 1,)`` non-decreasing integers with ``offsets[0] == 0`` and
            ``offsets[-1] == len(values)``.
        ids: optional ``(N,)`` ids (any type: ints, strings...), carried through every
            operation and used in error messages.
        feature_names: optional names of the F features.
        missing: ``"error"`` (default): a NaN value is refused, naming the sequence,
            step and feature; ``"mask"``: a NaN in continuous values is a missing
            (unobserved) element, kept as NaN (infinities are refused either way).
            Lengths alone decide what is padding.

    Most users build one with :meth:`from_list`, :meth:`from_padded` or
    :meth:`from_table` rather than calling the constructor.

    Example:
        >>> import numpy as np, seqae
        >>> s = seqae.Sequences.from_list([np.ones((3, 2)), np.zeros((5, 2))])
        >>> s.lengths.tolist(), s.n_features, len(s)
        ([3, 5], 2, 2)
        >>> x, lengths = s.pad(value=0.0)
        >>> x.shape
        (2, 5, 2)
    """

    __slots__ = ("values", "offsets", "ids", "feature_names", "missing", "_lengths")

    def __init__(
        self,
        values: Any,
        offsets: Any,
        ids: Any = None,
        feature_names: Sequence[str] | None = None,
        missing: str = "error",
    ):
        if missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}, got {missing!r}")
        values = _to_numpy(values)
        offsets = _whole(_to_numpy(offsets), "offsets")
        if values.ndim == 1 and not np.issubdtype(values.dtype, np.integer):
            values = values.reshape(-1, 1)  # 1-D floats: one feature
        if values.dtype == object:
            raise SequenceDataError("values must be numbers; got Python objects (nested or "
                                    "ragged lists?): one (T, F) array per sequence")
        raw = values
        if values.ndim == 2:
            with np.errstate(over="ignore"):  # what overflows is refused below
                values = values.astype(np.float32, copy=False)
        elif values.ndim == 1:
            values = values.astype(np.int64, copy=False)
        else:
            raise SequenceDataError(
                f"values must be (total_steps, F) floats or (total_steps,) integer tokens, "
                f"got shape {values.shape}"
            )
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0:
            raise SequenceDataError("offsets must be 1-D and start at 0")
        if offsets[-1] != len(values):
            raise SequenceDataError(
                f"offsets end at {offsets[-1]} but there are {len(values)} steps of values"
            )
        if ids is not None:
            ids = np.asarray(ids) if not isinstance(ids, np.ndarray) else ids
            if ids.shape != (len(offsets) - 1,):
                raise SequenceDataError(
                    f"ids has shape {ids.shape}, expected ({len(offsets) - 1},): one id per "
                    "sequence"
                )
        if feature_names is not None:
            feature_names = [str(f) for f in feature_names]
            if values.ndim == 2 and len(feature_names) != values.shape[1]:
                raise SequenceDataError(
                    f"{len(feature_names)} feature names for {values.shape[1]} features"
                )
        if raw.ndim == 2 and raw.dtype.kind == "f" and raw.itemsize > 4:
            _check_range(raw, values, offsets, ids, feature_names)
        self.values = values
        self.offsets = offsets
        self.ids = ids
        self.feature_names = feature_names
        self.missing = missing
        self._lengths = np.diff(offsets)
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        lengths = self._lengths
        if (lengths < 0).any():
            raise SequenceDataError("offsets must be non-decreasing")
        empty = np.flatnonzero(lengths == 0)
        if len(empty):
            i = int(empty[0])
            raise SequenceDataError(
                f"{describe(i, self.ids)} has length 0 ({len(empty)} empty sequence(s) in "
                "all): every sequence needs at least one step; drop empty ones first",
                index=i,
                seq_id=None if self.ids is None else self.ids[i],
            )
        if self.is_tokens:
            bad = np.flatnonzero(self.values < 0)
            kind = "a negative token id"
        elif self.missing == "mask":
            bad = np.flatnonzero(np.isinf(self.values).any(axis=1))
            kind = "an infinite value"
        else:
            finite = np.isfinite(self.values).all(axis=1)
            bad = np.flatnonzero(~finite)
            kind = "a NaN or infinite value"
        self._refuse(bad, kind)

    def _refuse(self, bad: np.ndarray, kind: str) -> None:
        """Raise naming the sequence, step (and feature) of the first of the ``bad`` rows
        of ``values`` (nothing when there is none)."""
        if len(bad):
            row = int(bad[0])
            i = int(np.searchsorted(self.offsets, row, side="right") - 1)
            step = row - int(self.offsets[i])
            detail = ""
            hint = ""
            if not self.is_tokens:
                wrong = np.isinf(self.values[row]) if kind == "an infinite value" else \
                    ~np.isfinite(self.values[row])
                feat = int(np.flatnonzero(wrong)[0])
                name = self.feature_names[feat] if self.feature_names else str(feat)
                detail = f", feature {name}: {self.values[row, feat]}"
                if np.isnan(self.values[row, feat]):
                    hint = " or mark NaN as missing (missing='mask', --missing mask)"
            else:
                detail = f": {self.values[row]}"
            raise SequenceDataError(
                f"{describe(i, self.ids)} has {kind} at step {step}{detail}. Clean or impute "
                f"it first{hint} (seqae never guesses which values are padding)",
                index=i,
                seq_id=None if self.ids is None else self.ids[i],
            )

    def has_missing(self) -> bool:
        """Whether any value is missing (NaN; only with ``missing="mask"``)."""
        return self.missing == "mask" and not self.is_tokens and bool(
            np.isnan(self.values).any())

    def observed(self) -> np.ndarray:
        """``values``'s shape, True where a value was observed (not NaN)."""
        if self.is_tokens:
            return np.ones(self.values.shape, dtype=bool)
        return ~np.isnan(self.values)

    def require_complete(self) -> None:
        """Raise `SequenceDataError` naming the sequence, step and feature of the first
        missing value (NaN), if any: for a model fitted with ``missing="error"``."""
        if self.has_missing():
            self._refuse(np.flatnonzero(np.isnan(self.values).any(axis=1)),
                         "a NaN (missing) value")

    def require_observed(self) -> None:
        """Raise `SequenceDataError` naming the first sequence with no observed value at
        all (every element missing): nothing in it can be scored or imputed."""
        if not self.has_missing():
            return
        seen = np.add.reduceat(self.observed().any(axis=1).astype(np.int64),
                               self.offsets[:-1]) if len(self) else np.zeros(0)
        none = np.flatnonzero(seen == 0)
        if len(none):
            i = int(none[0])
            raise SequenceDataError(
                f"{describe(i, self.ids)} has no observed value: every element of its "
                f"{int(self._lengths[i])} step(s) is missing (NaN); drop it (nothing in it "
                "can be encoded, scored or imputed)", index=i,
                seq_id=None if self.ids is None else self.ids[i])

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_list(
        cls,
        items: Iterable[Any],
        ids: Any = None,
        feature_names: Sequence[str] | None = None,
        missing: str = "error",
    ) -> Sequences:
        """Build from a list of arrays, one per sequence.

        Args:
            items: each ``(T_i, F)`` (continuous; integer arrays are cast to float32),
                ``(T_i,)`` floats (one feature) or ``(T_i,)`` integers (tokens).
            ids: optional ids, one per sequence.
            feature_names: optional names of the F features.
            missing: ``"error"`` (default) or ``"mask"``: NaN is a missing element (see
                the class).

        Raises:
            SequenceDataError: naming the sequence, for an empty sequence, NaN/Inf,
                a wrong number of dimensions or a feature count that differs from the first.
        """
        arrays = [_to_numpy(a) for a in items]
        if not arrays:
            raise SequenceDataError("no sequences given")
        tokens = all(a.ndim == 1 and np.issubdtype(a.dtype, np.integer) for a in arrays)
        first_f = None
        for i, a in enumerate(arrays):
            if a.ndim not in (1, 2):
                raise SequenceDataError(
                    f"{describe(i, ids)} has shape {a.shape}: expected (T, F) or (T,)",
                    index=i,
                )
            if tokens:
                continue
            f = 1 if a.ndim == 1 else a.shape[1]
            if first_f is None:
                first_f = f
            elif f != first_f:
                raise SequenceDataError(
                    f"{describe(i, ids)} has {f} features but sequence 0 has {first_f}: "
                    "all sequences must have the same features",
                    index=i,
                )
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if tokens:
            values = np.concatenate(arrays).astype(np.int64, copy=False)
        else:
            values = np.concatenate(  # cast by the constructor, which checks the range
                [a.reshape(len(a), int(first_f or 0)) for a in arrays]
            ).reshape(-1, int(first_f or 0))
        return cls(values, offsets, ids=ids, feature_names=feature_names, missing=missing)

    @classmethod
    def from_padded(
        cls,
        x: Any,
        lengths: Any = None,
        *,
        mask_value: float | None = None,
        padding: str = "post",
        ids: Any = None,
        feature_names: Sequence[str] | None = None,
        missing: str = "error",
    ) -> Sequences:
        """Build from a padded array, with the lengths given or found from a pad value.

        Args:
            x: ``(N, T, F)`` floats, ``(N, T)`` floats (one feature) or ``(N, T)``
                integer tokens.
            lengths: ``(N,)`` valid lengths, each in ``1..T``. Lengths are the source of
                truth: whatever lies past them (zeros, NaN, anything) is ignored.
            mask_value: the Keras `Masking` rule instead of lengths: a step is padding
                only if ALL its features equal ``mask_value`` (NaN matches NaN). Only the
                run of such steps at the padded end is padding; a matching step inside a
                sequence is kept as data. Give ``lengths`` or ``mask_value``, not both;
                with neither, every sequence has length T.
            padding: ``"post"`` (padding after the data) or ``"pre"`` (before it).
            ids: optional ids, one per sequence.
            feature_names: optional names of the F features.
            missing: ``"error"`` (default) or ``"mask"``: NaN inside the valid steps is
                a missing element (see the class); padding stays padding.

        Raises:
            SequenceDataError: naming the sequence, for a length outside ``1..T``, a
                sequence that is padding only, or NaN/Inf inside the valid steps.

        Example:
            >>> import numpy as np, seqae
            >>> x = np.array([[[1., 1.], [2., 2.], [.37, .37]],
            ...               [[.37, .37], [1., .37], [2., 2.]]])
            >>> seqae.Sequences.from_padded(x, mask_value=.37).lengths.tolist()
            [2, 3]
        """
        if padding not in ("post", "pre"):
            raise ValueError(f"padding must be 'post' or 'pre', got {padding!r}")
        if lengths is not None and mask_value is not None:
            raise ValueError("give lengths or mask_value, not both")
        x = _to_numpy(x)
        tokens = x.ndim == 2 and np.issubdtype(x.dtype, np.integer)
        if x.ndim == 2 and not tokens:
            x = x[:, :, None]
        if x.ndim != (2 if tokens else 3):
            raise SequenceDataError(f"x must be (N, T, F) or (N, T), got shape {x.shape}")
        n, t = x.shape[:2]
        if mask_value is not None:
            if isinstance(mask_value, float) and np.isnan(mask_value):
                equal = np.isnan(x)
            else:
                equal = x == mask_value
            pad_step = equal if tokens else equal.all(axis=-1)  # (N, T)
            data_step = ~pad_step  # (N, T)
            if padding == "post":
                last = t - 1 - np.argmax(data_step[:, ::-1], axis=1)
                lens = np.where(data_step.any(axis=1), last + 1, 0)
            else:
                first = np.argmax(data_step, axis=1)
                lens = np.where(data_step.any(axis=1), t - first, 0)
        elif lengths is None:
            lens = np.full(n, t, dtype=np.int64)
        else:
            lens = _to_numpy(lengths)
            if lens.shape != (n,):
                raise SequenceDataError(f"lengths has shape {lens.shape}, expected ({n},)")
            if not np.issubdtype(lens.dtype, np.integer):
                if not np.all(np.equal(np.mod(lens, 1), 0)):
                    raise SequenceDataError("lengths must be whole numbers")
        lens = lens.astype(np.int64)
        bad = np.flatnonzero((lens < 1) | (lens > t))
        if len(bad):
            i = int(bad[0])
            why = (
                "is padding only (every step equals mask_value)"
                if mask_value is not None
                else f"has length {lens[i]}, outside 1..{t} (the padded array has {t} steps)"
            )
            raise SequenceDataError(f"{describe(i, ids)} {why}", index=i)
        steps = np.arange(t)
        if padding == "post":
            valid = steps[None, :] < lens[:, None]
        else:
            valid = steps[None, :] >= (t - lens)[:, None]
        values = x[valid]  # row-major: sequence by sequence, in time order
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        return cls(values, offsets, ids=ids, feature_names=feature_names, missing=missing)

    @overload
    @classmethod
    def from_table(cls, table: Any, id: str = ..., time: str | None = ...,
                   features: Sequence[str] | None = ...,
                   return_time: Literal[False] = ..., missing: str = ...) -> Sequences: ...

    @overload
    @classmethod
    def from_table(cls, table: Any, id: str = ..., time: str | None = ...,
                   features: Sequence[str] | None = ..., *,
                   return_time: Literal[True], missing: str = ...
                   ) -> tuple[Sequences, np.ndarray | None]: ...

    @classmethod
    def from_table(
        cls,
        table: Any,
        id: str = "id",
        time: str | None = None,
        features: Sequence[str] | None = None,
        return_time: bool = False,
        missing: str = "error",
    ) -> Sequences | tuple[Sequences, np.ndarray | None]:
        """Build from a long table: one row per time step.

        Args:
            table: a ``pyarrow.Table``, a pandas or polars DataFrame, or a dict of columns.
            id: column naming the sequence each row belongs to. Sequences come out in the
                order their ids first appear; ids keep their type.
            time: optional column to order the rows of each sequence by (numbers or
                timestamps; rows may come in any order). Without it, row order is kept.
            features: feature columns; default: every numeric column other than id/time.
            return_time: also return the time value of every step, aligned with
                ``values`` (None without a time column), e.g. to write results back.
            missing: ``"error"`` (default) or ``"mask"``: a null or NaN feature value is
                a missing element (see the class).

        Raises:
            SequenceDataError: for a missing column, null ids, duplicate time values within
                a sequence, or NaN/missing feature values (naming the sequence id).
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(table, dict):
            table = pa.table(table)
        elif not isinstance(table, pa.Table):
            if hasattr(table, "to_arrow"):  # polars
                table = table.to_arrow()
            else:  # pandas
                table = pa.Table.from_pandas(table, preserve_index=False)
        require_columns(table.column_names, [("id", id), ("time", time),
                                             *(("feature", c) for c in features or [])],
                        error=SequenceDataError)
        names = table.column_names
        for c in features or ():
            check_numeric(table, c)
        if features is None:
            features = numeric_columns(table, exclude=(id, time))
            if not features:
                raise SequenceDataError(
                    f"no numeric feature columns besides {id!r}/{time!r} in {names}"
                )
        if table.num_rows == 0:
            raise SequenceDataError("the table has no rows")
        id_col = table.column(id)
        if id_col.null_count:
            row = int(np.flatnonzero(pc.is_null(id_col).to_numpy(zero_copy_only=False))[0])
            raise SequenceDataError(f"column {id!r} has a null id at row {row}")
        encoded = pc.dictionary_encode(id_col).combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        uniq = encoded.dictionary.to_numpy(zero_copy_only=False)
        if time is not None:
            check_time(table, time)
            tvals = table.column(time).to_numpy()
            order = np.lexsort((tvals, codes))
            ts, cs = tvals[order], codes[order]
            dup = np.flatnonzero((cs[1:] == cs[:-1]) & (ts[1:] == ts[:-1]))
            if len(dup):
                i = int(cs[dup[0]])
                raise SequenceDataError(
                    f"{describe(i, uniq)} has two rows at {time}={ts[dup[0]]}: time values "
                    "must be unique within a sequence",
                    index=i,
                    seq_id=uniq[i],
                )
        else:
            order = np.argsort(codes, kind="stable")
        cols = []
        for c in features:
            col = table.column(c)
            if not pa.types.is_floating(col.type):  # ints, decimals, bools named as features
                col = pc.cast(col, pa.float64())
            arr = col.to_numpy(zero_copy_only=False)  # nulls -> NaN
            cols.append(arr[order])
        values = np.stack(cols, axis=1)  # float64: Sequences checks the float32 range
        counts = np.bincount(codes, minlength=len(uniq))
        offsets = np.zeros(len(uniq) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        seqs = cls(values, offsets, ids=uniq, feature_names=list(features), missing=missing)
        if return_time:
            return seqs, (tvals[order] if time is not None else None)
        return seqs

    # ------------------------------------------------------------------ properties
    @property
    def lengths(self) -> np.ndarray:
        """``(N,)`` int64 length of each sequence."""
        return self._lengths

    @property
    def step_index(self) -> np.ndarray:
        """``(n_steps,)`` the index of the sequence each row of ``values`` belongs to."""
        return np.repeat(np.arange(len(self)), self._lengths)

    @property
    def is_tokens(self) -> bool:
        """True when the values are integer tokens rather than continuous features."""
        return self.values.ndim == 1

    @property
    def n_features(self) -> int:
        """Number of features per step (1 for tokens)."""
        return 1 if self.is_tokens else int(self.values.shape[1])

    @property
    def n_steps(self) -> int:
        """Total number of valid steps over all sequences."""
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.values[self.offsets[i] : self.offsets[i + 1]]

    def __getitem__(self, key: Any) -> np.ndarray | Sequences:
        """``seqs[i]`` is sequence i's array (a view); slices, index or boolean arrays
        give a new `Sequences` holding those sequences."""
        if isinstance(key, (int, np.integer)):
            n = len(self)
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"sequence index {key} out of range for {n} sequences")
            return self.values[self.offsets[i] : self.offsets[i + 1]]
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (len(self),):
                raise IndexError(f"boolean index of shape {key.shape} for {len(self)} sequences")
            key = np.flatnonzero(key)
        return self.take(key)

    def __repr__(self) -> str:
        lens = self.lengths
        kind = "tokens" if self.is_tokens else f"features={self.n_features}"
        return (
            f"Sequences(n={len(self)}, {kind}, lengths min/mean/max="
            f"{lens.min()}/{lens.mean():.1f}/{lens.max()})"
        )

    # ------------------------------------------------------------------ operations
    def take(self, indices: Any) -> Sequences:
        """A new `Sequences` with the given sequences, in the given order (one gather)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(idx) == 0:
            raise SequenceDataError("cannot take zero sequences")
        if idx.min() < -n or idx.max() >= n:
            raise IndexError(f"sequence index out of range for {n} sequences")
        idx = np.where(idx < 0, idx + n, idx)
        lens = self._lengths[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        flat = np.repeat(self.offsets[idx] - offsets[:-1], lens) + np.arange(offsets[-1])
        ids = None if self.ids is None else self.ids[idx]
        return Sequences._trusted(self.values[flat], offsets, ids, self.feature_names,
                                  self.missing)

    def with_values(self, values: Any) -> Sequences:
        """Same lengths and ids, new per-step values (e.g. a reconstruction)."""
        values = _to_numpy(values)
        if len(values) != self.n_steps:
            raise SequenceDataError(f"{len(values)} steps of values for {self.n_steps} steps")
        return Sequences(values, self.offsets.copy(), ids=self.ids,
                         feature_names=self.feature_names, missing=self.missing)

    def pad(
        self,
        value: float = 0.0,
        side: str = "post",
        length: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Padded copy: ``(x, lengths)``.

        Args:
            value: what fills the padding (default 0.0; NaN is allowed for floats).
            side: ``"post"`` puts the padding after each sequence, ``"pre"`` before.
            length: padded length T; default the longest sequence. Must be at least that.

        Returns:
            ``x`` of shape ``(N, T, F)`` (``(N, T)`` for tokens) and ``lengths`` ``(N,)``.
        """
        if side not in ("post", "pre"):
            raise ValueError(f"side must be 'post' or 'pre', got {side!r}")
        lens = self._lengths
        t = int(lens.max()) if length is None else int(length)
        if t < lens.max():
            raise ValueError(f"length={t} is shorter than the longest sequence ({lens.max()})")
        n = len(self)
        shape = (n, t) if self.is_tokens else (n, t, self.n_features)
        out = np.full(shape, value, dtype=self.values.dtype)
        seq = self.step_index
        step = np.arange(self.n_steps) - self.offsets[seq]
        if side == "pre":
            step = step + (t - lens)[seq]
        out[seq, step] = self.values
        return out, lens.copy()

    def to_list(self) -> list[np.ndarray]:
        """One array per sequence (copies)."""
        return [a.copy() for a in self]

    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and standard deviation over all valid steps.

        Computed in float64 over the flat values, so padding cannot enter them. A
        feature with zero spread gets std 1 (it is centred, not divided by ~0). Missing
        values (``missing="mask"``) are left out: over the observed values only; a
        feature never observed raises `SequenceDataError`.
        """
        if self.is_tokens:
            raise TypeError("feature statistics are for continuous data, not tokens")
        v = self.values.astype(np.float64)
        if self.has_missing():
            seen = self.observed().sum(axis=0)  # (F,)
            never = np.flatnonzero(seen == 0)
            if len(never):
                f = int(never[0])
                name = self.feature_names[f] if self.feature_names else str(f)
                raise SequenceDataError(
                    f"feature {name} is never observed (every value is missing): nothing "
                    "can be learned about it; drop the feature")
            mean = np.nanmean(v, axis=0)
            return as_float32_stats(mean, np.nanstd(v, axis=0))
        mean = v.mean(axis=0)
        return as_float32_stats(mean, v.std(axis=0))

    def sequence_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Each sequence's per-feature mean and standard deviation over its own steps:
        two ``(N, F)`` float32 arrays. As in `feature_stats`, computed in float64, and a
        feature with zero spread within a sequence gets std 1. Missing values are left
        out; a feature missing in a whole sequence gets mean 0 and std 1 there."""
        if self.is_tokens:
            raise TypeError("sequence statistics are for continuous data, not tokens")
        n = len(self)
        if n == 0:
            empty = np.zeros((0, self.n_features), np.float32)
            return empty, empty.copy()
        v = self.values.astype(np.float64)
        starts, lens = self.offsets[:-1], self.lengths[:, None]
        if self.has_missing():
            seen = self.observed()
            count = np.add.reduceat(seen.astype(np.float64), starts, axis=0)  # (N, F)
            filled = np.where(seen, v, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.add.reduceat(filled, starts, axis=0) / count  # (N, F)
                dev = np.where(seen, v - mean[self.step_index], 0.0) ** 2
                std = np.sqrt(np.add.reduceat(dev, starts, axis=0) / count)
            none = count == 0
            return as_float32_stats(np.where(none, 0.0, mean), np.where(none, 1.0, std))
        mean = np.add.reduceat(v, starts, axis=0) / lens  # (N, F)
        std = np.sqrt(np.add.reduceat((v - mean[self.step_index]) ** 2, starts, axis=0) / lens)
        return as_float32_stats(mean, std)

    @classmethod
    def concat(cls, parts: Sequence[Sequences]) -> Sequences:
        """Concatenate several `Sequences` (same kind and feature count)."""
        if not parts:
            raise SequenceDataError("nothing to concatenate")
        values = np.concatenate([p.values for p in parts])
        offsets = np.concatenate(
            [[0]] + [p.offsets[1:] + sum(q.n_steps for q in parts[:k]) for k, p in
                     enumerate(parts)]
        )
        if all(p.ids is not None for p in parts):
            ids = np.concatenate([p.ids for p in parts])
        else:
            ids = None
        missing = "mask" if any(p.missing == "mask" for p in parts) else "error"
        return cls(values, offsets, ids=ids, feature_names=parts[0].feature_names,
                   missing=missing)

    @classmethod
    def _trusted(cls, values, offsets, ids, feature_names, missing="error") -> Sequences:
        """Construct without re-validating (values already checked)."""
        obj = cls.__new__(cls)
        obj.values = values
        obj.offsets = offsets
        obj.ids = ids
        obj.feature_names = feature_names
        obj.missing = missing
        obj._lengths = np.diff(offsets)
        return obj
