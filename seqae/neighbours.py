"""Nearest-neighbour anomaly scores on the embeddings (``anomaly_score="neighbours"``).

A sequence's score is the Euclidean distance from its embedding to the nearest embedding
of the training data, every dimension first standardised by the training embeddings'
mean and std (a dimension that does not vary, or only by float32 noise, is only
centred). Where an unusual shape is
still reconstructed well (single-channel shapes under the convolutional recipe), this
score tells it apart and the reconstruction error does not (`benchmarks/anomaly.py`,
docs/anomalies.md).

The reference is the training sequences' embeddings, at most `REFERENCE` of them (a
uniform sample, drawn as they stream past, past that). The training scores behind the
threshold are leave-one-out: each reference embedding's distance to the nearest *other*
one, so that the threshold is not the zero of a sequence against itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["Neighbours", "Reservoir", "REFERENCE"]

# the reference holds at most this many training embeddings (20,000 x 64 float32: 5 MB;
# a score then costs 20,000 distances)
REFERENCE = 20_000
# a dimension whose std is below this share of the largest std counts as constant
FLAT = 1e-6
# distances are computed for this many queries at a time (rows x reference float64)
_QUERIES = 256


class Reservoir:
    """A uniform sample of at most ``size`` rows of everything `add` is given, in one pass
    (Vitter's algorithm R): row ``i`` (counted from 0 over all calls) replaces a random
    kept row with probability ``size / (i + 1)``. All rows while there are no more
    than ``size``, in order."""

    def __init__(self, size: int, rng: np.random.Generator):
        if size < 1:
            raise ValueError(f"a reservoir holds at least one row, got size={size}")
        self.size, self.rng = size, rng
        self.rows: np.ndarray | None = None
        self.seen = 0

    def add(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        if self.rows is None:
            self.rows = np.empty((0, *rows.shape[1:]), rows.dtype)
        room = min(len(rows), self.size - len(self.rows))
        if room > 0:
            self.rows = np.concatenate([self.rows, rows[:room]])
        rest = rows[room:]
        if len(rest):
            index = self.seen + room + np.arange(len(rest))  # each row's count from 0
            slot = self.rng.integers(0, index + 1)  # uniform over 0..index, row by row
            take = slot < self.size
            # in order, so that a later row overwrites an earlier one (as one at a time)
            for s, row in zip(slot[take], rest[take], strict=True):
                self.rows[s] = row
        self.seen += len(rows)


class Neighbours:
    """The reference embeddings and their standardisation.

    Args:
        reference: ``(N, D)`` training embeddings (N >= 1).
    """

    def __init__(self, reference: np.ndarray, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None):
        ref = np.asarray(reference, np.float32)
        if ref.ndim != 2 or len(ref) == 0:
            raise ValueError(f"the reference is (N >= 1, D) embeddings, got shape {ref.shape}")
        self.reference = ref
        r = ref.astype(np.float64)
        self.mean = r.mean(0) if mean is None else np.asarray(mean, np.float64)
        std = r.std(0) if std is None else np.asarray(std, np.float64)
        # a dimension whose spread is float32 noise (below FLAT x the widest) is only
        # centred, as a constant one: scaled up, its noise would decide the distances
        self.std = np.where(std > FLAT * std.max(initial=0.0), std, 1.0)
        self._ref = (r - self.mean) / self.std  # standardised, float64
        self._ref_sq = (self._ref ** 2).sum(1)

    @property
    def dim(self) -> int:
        return self.reference.shape[1]

    def _squared(self, q: np.ndarray) -> Iterator[np.ndarray]:
        """Squared distances of standardised queries ``q`` to the reference, a block of
        rows at a time (by |a|^2 + |b|^2 - 2ab: fast, but a few 1e-8 off near 0)."""
        for start in range(0, len(q), _QUERIES):
            block = q[start:start + _QUERIES]
            yield (block ** 2).sum(1)[:, None] + self._ref_sq[None] - 2.0 * block @ self._ref.T

    def _exact(self, q: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        """The distance of each standardised query to its ``nearest`` reference row, from
        the differences (exactly 0 for a copy of a reference embedding)."""
        return np.sqrt(((q - self._ref[nearest]) ** 2).sum(1))

    def distances(self, Z: np.ndarray) -> np.ndarray:
        """``(M,)`` float64: each row of ``Z`` ``(M, D)``'s distance to the nearest
        reference embedding."""
        Z = np.asarray(Z, np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.dim:
            raise ValueError(f"embeddings of {self.dim} dimensions expected, got shape "
                             f"{Z.shape}")
        q = (Z - self.mean) / self.std
        nearest = np.concatenate([d2.argmin(1) for d2 in self._squared(q)] or
                                 [np.empty(0, np.int64)])
        return self._exact(q, nearest)

    def leave_one_out(self) -> np.ndarray:
        """``(N,)`` float64: each reference embedding's distance to the nearest other
        one (0 for a reference of one: nothing else to be far from)."""
        if len(self._ref) == 1:
            return np.zeros(1)
        nearest = []
        for start, d2 in zip(range(0, len(self._ref), _QUERIES), self._squared(self._ref),
                             strict=True):
            rows = np.arange(len(d2))
            d2[rows, start + rows] = np.inf  # not itself
            nearest.append(d2.argmin(1))
        return self._exact(self._ref, np.concatenate(nearest))

    def tensors(self) -> dict[str, np.ndarray]:
        """What the model folder stores (`seqae.model_dir`)."""
        return {"reference": self.reference, "mean": self.mean, "std": self.std}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> Neighbours:
        return cls(tensors["reference"], tensors["mean"], tensors["std"])
