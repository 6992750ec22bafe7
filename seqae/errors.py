"""Exception types raised by seqae.

Every error about user data names the sequence it concerns (its position and, when the
data carry ids, its id) and says what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["SeqaeError", "SequenceDataError", "IncompatibleModelError", "DataFileError",
           "ExportError", "require_columns"]


class SeqaeError(Exception):
    """Base class of every seqae error."""


class SequenceDataError(SeqaeError, ValueError):
    """Bad input data: NaN/Inf, empty sequences, mismatched feature counts, bad lengths.

    Attributes:
        index: position of the offending sequence in the input, or None when the problem
            is not tied to one sequence.
        seq_id: the id of that sequence when the data carry ids, else None.
    """

    def __init__(self, message: str, index: int | None = None, seq_id: Any = None):
        super().__init__(message)
        self.index = index
        self.seq_id = seq_id


class IncompatibleModelError(SeqaeError, ValueError):
    """A saved model or its configuration does not match this seqae or the given data."""


class DataFileError(SeqaeError, ValueError):
    """A data file that is missing, unreadable or lacks what was asked of it."""


class ExportError(SeqaeError, ValueError):
    """A part, format or file that `SequenceAutoencoder.export` cannot export to, or a
    part of this model that cannot be exported (the message says why)."""


def describe(index: int, ids: Any = None) -> str:
    """`sequence 3` or `sequence 3 (id 'abc')`: how error messages name a sequence."""
    if ids is None:
        return f"sequence {index}"
    value = ids[index]
    if hasattr(value, "item"):  # numpy scalar -> plain Python value for a clean repr
        value = value.item()
    return f"sequence {index} (id {value!r})"


def require_columns(columns: Sequence[str], wanted: Iterable[tuple[str, str | None]],
                    where: Any = None, error: type[Exception] = DataFileError,
                    note: str = "") -> None:
    """Raise ``error("WHERE: no WHAT column 'x'NOTE; its columns are [...]")`` for the first
    ``(what, column)`` of ``wanted`` whose column is not in ``columns`` (None columns are
    not asked for; an empty ``what`` reads "no column 'x'"): how every reader says a
    column is missing."""
    for what, column in wanted:
        if column is not None and column not in columns:
            head = f"{where}: " if where is not None else ""
            role = f"{what} " if what else ""
            raise error(f"{head}no {role}column {column!r}{note}; its columns are "
                        f"{list(columns)}")
