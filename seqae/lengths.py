"""The length policy: what happens to sequences longer than ``max_len``.

Applied once, where data enter a fit or an inference call; the merge of per-piece
results back into one result per sequence is here too, so no other module knows that
sequences were cut.

- ``"refuse"``: an error naming the first sequence that is too long;
- ``"truncate"``: each sequence's first ``max_len`` steps;
- ``"window"``: each sequence cut into the fewest *pieces* of at most ``max_len`` steps,
  of near-equal sizes, in order; per-sequence results are the pieces' results averaged
  with their lengths as weights, per-step results are stitched back.

(The code calls the cuts of the ``"window"`` policy *pieces*: a *window* elsewhere, in
`seqae.stream`, is the buffer of rows a folder is read in.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Sequences
from .errors import SequenceDataError, describe

__all__ = ["POLICIES", "LengthPolicy", "Limited", "limit_lengths", "interpolate_gaps"]

POLICIES = ("refuse", "truncate", "window")


@dataclass
class Limited:
    """Sequences under a length policy.

    Attributes:
        seqs: what the model sees: the input itself, its truncation or its pieces.
        original: the input.
        owner: for pieces, ``owner[j]`` = the input sequence piece ``j`` came from;
            None when every row of ``seqs`` is one input sequence.
    """

    seqs: Sequences
    original: Sequences
    owner: np.ndarray | None = None

    def merge(self, rows: np.ndarray) -> np.ndarray:
        """One row per input sequence from one row per piece of ``seqs``: the pieces'
        rows averaged, weighted by their lengths (the rows themselves without pieces)."""
        if self.owner is None:
            return rows
        w = self.seqs.lengths.astype(np.float64)
        n = len(self.original)
        shape = (-1,) + (1,) * (rows.ndim - 1)
        out = np.zeros((n,) + rows.shape[1:], dtype=np.float64)
        np.add.at(out, self.owner, rows * w.reshape(shape))
        total = np.zeros(n)
        np.add.at(total, self.owner, w)
        return out / total.reshape(shape)

    def stitch(self, steps: Sequences) -> Sequences:
        """Per-step results of ``seqs`` as per-step results of the input: pieces are
        consecutive slices of their sequence, so their steps join back in order."""
        if self.owner is None:
            return steps
        return self.original.with_values(steps.values)


def interpolate_gaps(seqs: Sequences, fill: np.ndarray) -> np.ndarray:
    """``seqs.values`` with each NaN replaced by the linear interpolation, in time, between
    its feature's nearest observed values before and after it in its own sequence (the
    nearest one where there is only one side; ``fill[i, f]`` where sequence i has no
    observed value of feature f). ``fill``: ``(N, F)``. Float64, ``values``'s shape; the
    numpy twin of `seqae.nn.model.interpolate`, on ragged sequences."""
    v = seqs.values.astype(np.float64)
    seen = ~np.isnan(v)
    n = len(v)
    if n == 0 or seen.all():
        return v
    rows = seqs.step_index
    idx = np.broadcast_to(np.arange(n)[:, None], v.shape)
    start = seqs.offsets[:-1][rows][:, None]
    end = seqs.offsets[1:][rows][:, None]
    before = np.maximum.accumulate(np.where(seen, idx, -1), axis=0)
    after = np.minimum.accumulate(np.where(seen, idx, n)[::-1], axis=0)[::-1]
    has_before, has_after = before >= start, after < end
    cols = np.arange(v.shape[1])[None, :]
    v0 = v[before.clip(0), cols]
    v1 = v[after.clip(0, n - 1), cols]
    w = (idx - before) / np.maximum(after - before, 1)
    one_side = np.where(has_before, v0, np.where(has_after, v1, np.asarray(fill)[rows]))
    return np.where(seen, v, np.where(has_before & has_after, v0 + w * (v1 - v0), one_side))


@dataclass(frozen=True)
class LengthPolicy:
    """``max_len`` (None: no limit) and what to do beyond it (one of `POLICIES`)."""

    max_len: int | None = 10_000
    policy: str = "refuse"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"max_len_policy must be one of {POLICIES}, got {self.policy!r}")

    def apply(self, seqs: Sequences) -> Limited:
        """``seqs`` under the policy (see the module docstring)."""
        limited, owner = limit_lengths(seqs, self.max_len, self.policy)
        return Limited(limited, seqs, owner)

    def check_lengths(self, lengths: np.ndarray, where) -> None:
        """For data read as they are (a folder of files): only ``"refuse"`` applies;
        ``where(i)`` names the sequence ``i`` in the error."""
        if self.max_len is None:
            return
        if self.policy != "refuse":
            raise ValueError(f"max_len_policy={self.policy!r} applies to data in memory; a "
                             "ParquetSource is read as it is (cut long sequences when writing "
                             "the files, or set max_len=None)")
        if len(lengths) and int(lengths.max()) > self.max_len:
            i = int(np.argmax(lengths > self.max_len))
            text, seq_id = where(i)
            raise SequenceDataError(
                f"{text} has {int(lengths[i])} steps, more than max_len={self.max_len}: "
                "raise max_len (or None) to train on it", seq_id=seq_id)


def limit_lengths(seqs: Sequences, max_len: int | None,
                  policy: str) -> tuple[Sequences, np.ndarray | None]:
    """``(seqs', owner)``: ``seqs`` itself (owner None) when no sequence is longer than
    ``max_len``; else by ``policy``: ``"truncate"`` keeps the first ``max_len`` steps of
    each sequence (owner None), ``"window"`` cuts each sequence into the fewest pieces of
    at most ``max_len`` steps, of near-equal sizes, in order (``owner[j]`` = the sequence
    piece j came from); ``"refuse"`` raises `SequenceDataError` naming the sequence."""
    if policy not in POLICIES:
        raise ValueError(f"max_len_policy must be one of {POLICIES}, got {policy!r}")
    lengths = seqs.lengths
    if max_len is None or not len(lengths) or int(lengths.max()) <= max_len:
        return seqs, None
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    i = int(np.argmax(lengths > max_len))
    if policy == "refuse":
        raise SequenceDataError(
            f"{describe(i, seqs.ids)} has {int(lengths[i])} steps, more than max_len={max_len}: "
            "raise max_len, or set max_len_policy='truncate' (keep the first max_len steps) "
            "or 'window' (cut it into windows and put the results back together)",
            index=i, seq_id=None if seqs.ids is None else seqs.ids[i])
    if policy == "truncate":
        keep = np.minimum(lengths, max_len)
        steps = np.concatenate([np.arange(o, o + k) for o, k in zip(seqs.offsets[:-1], keep,
                                                                    strict=True)])
        offsets = np.concatenate([[0], np.cumsum(keep)])
        return Sequences(seqs.values[steps], offsets, ids=seqs.ids,
                         feature_names=seqs.feature_names, missing=seqs.missing), None
    parts = -(-lengths // max_len)  # pieces per sequence
    owner = np.repeat(np.arange(len(lengths)), parts)
    first = np.concatenate([[0], np.cumsum(parts)[:-1]])
    k = np.arange(len(owner)) - first[owner]  # piece number within its sequence
    base, extra = lengths[owner] // parts[owner], lengths[owner] % parts[owner]
    sizes = base + (k < extra)  # near-equal sizes, the longer ones first
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return Sequences(seqs.values, offsets, feature_names=seqs.feature_names,
                     missing=seqs.missing), owner
