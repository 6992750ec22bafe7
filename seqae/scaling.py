"""The fitted scaler: one home for standardisation in `fit`, `encode`, `reconstruct`,
`score` and `decode`.

Modes:

* ``"global"``: each feature standardised with its mean and std over every valid step of
  the training data. A channel's level stays information (it matters on speech
  features: per-sequence standardisation takes spoken digits from 0.991 to 0.966).
* ``"sequence"``: each sequence standardised by its own per-feature mean and std, so that
  sequences whose scales differ by orders of magnitude weigh alike in the loss (PLAID:
  per-sequence stds from 3e-5 to 96).
* ``"none"``: raw values.
* ``"auto"`` (resolved by `fit`): ``"sequence"`` when the per-sequence stds of some
  feature spread over more than `AUTO_SPREAD` (the ratio of their 90th to 10th
  percentile), else ``"global"``. The spread found is kept as ``spread_``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import Sequences

__all__ = ["Scaler", "AUTO_SPREAD", "MODES"]

MODES = ("auto", "global", "sequence", "none")
AUTO_SPREAD = 100.0  # two orders of magnitude between quiet and loud sequences


def _spread(std: np.ndarray) -> float:
    """Largest ratio, over features, of the 90th to the 10th percentile of the
    per-sequence stds ``(N, F)`` (1 for fewer than 2 sequences)."""
    if len(std) < 2:
        return 1.0
    lo, hi = np.percentile(std.astype(np.float64), [10, 90], axis=0)  # (F,) each
    return float(np.max(hi / np.maximum(lo, 1e-30)))


class Scaler:
    """Standardises continuous `Sequences` and puts results back in the input's units.

    Args:
        mode: ``"auto"`` (default), ``"global"``, ``"sequence"`` or ``"none"`` (see the
            module docstring). ``True`` and ``False`` are accepted for ``"global"`` and
            ``"none"``.

    Attributes (after `fit`):
        mode_: the resolved mode.
        mean_, std_: ``(F,)`` global statistics (zeros and ones unless ``"global"``).
        spread_: the per-sequence scale spread measured on the training data.

    Example:
        >>> import numpy as np
        >>> quiet, loud = np.ones((4, 1)) * [[1], [2], [3], [4]], np.arange(4.0)[:, None]
        >>> seqs = Sequences.from_list([quiet * 1e-4, loud * 1e3] * 5)
        >>> Scaler().fit(seqs).mode_
        'sequence'
    """

    def __init__(self, mode: Any = "auto"):
        if mode is True:
            mode = "global"
        elif mode is False:
            mode = "none"
        if mode not in MODES:
            raise ValueError(f"normalize must be one of {MODES} (or True/False), got {mode!r}")
        self.mode = mode
        # "sequence": the training set's (mean, std), for a feature a sequence never shows
        self.fill_: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, seqs: Sequences) -> Scaler:
        """Resolve the mode and learn the global statistics from ``seqs``."""
        if seqs.is_tokens:
            raise TypeError("token sequences are not scaled")
        mean, std = seqs.feature_stats()
        return self.fit_stats(mean, std, seqs.sequence_stats()[1])

    def fit_stats(self, mean: np.ndarray, std: np.ndarray, sequence_std: np.ndarray) -> Scaler:
        """`fit` from statistics gathered elsewhere (a streaming pass over files:
        `seqae.stream.ParquetSource.index`): each feature's ``mean`` and ``std`` over all
        valid steps, and every sequence's per-feature std, ``(N, F)``."""
        self.spread_ = _spread(np.asarray(sequence_std))
        mode = self.mode
        if mode == "auto":
            mode = "sequence" if self.spread_ > AUTO_SPREAD else "global"
        self.mode_ = mode
        self.fill_ = None
        if mode == "global":
            self.mean_ = np.asarray(mean, np.float32)
            self.std_ = np.asarray(std, np.float32)
        else:
            self.mean_ = np.zeros(len(mean), np.float32)
            self.std_ = np.ones(len(mean), np.float32)
        if mode == "sequence":
            self.fill_ = (np.asarray(mean, np.float32), np.asarray(std, np.float32))
        return self

    def transform(self, seqs: Sequences) -> tuple[Sequences, tuple[np.ndarray, np.ndarray]]:
        """``(standardised Sequences, (mean, std))``: the statistics each sequence was
        standardised with, two ``(N, F)`` arrays (the global ones repeated unless
        ``"sequence"``), which `inverse` takes back."""
        mean, std = self.stats(seqs)
        rows = seqs.step_index
        values = ((seqs.values - mean[rows]) / std[rows]).astype(np.float32)
        return seqs.with_values(values), (mean, std)

    def stats(self, seqs: Sequences) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)``, two ``(N, F)`` arrays: the statistics `transform` standardises
        each sequence of ``seqs`` with, without standardising it."""
        n = len(seqs)
        if self.mode_ == "sequence":
            mean, std = seqs.sequence_stats()
            fill = self.fill_
            if fill is not None and seqs.has_missing():
                # a feature with no observed value in a sequence: the training set's
                # statistics, so that what is imputed there is the feature's mean
                none = np.add.reduceat(seqs.observed(), seqs.offsets[:-1], axis=0) == 0
                mean = np.where(none, fill[0], mean).astype(np.float32)
                std = np.where(none, fill[1], std).astype(np.float32)
        else:
            mean = np.broadcast_to(self.mean_, (n, seqs.n_features))
            std = np.broadcast_to(self.std_, (n, seqs.n_features))
        return mean, std

    def inverse(self, seqs: Sequences, stats: tuple[np.ndarray, np.ndarray]) -> Sequences:
        """``seqs`` (standardised) back in the input's units, with the ``stats`` that
        `transform` returned (or any ``(N, F)`` pair, for decoded sequences)."""
        mean, std = stats
        rows = seqs.step_index
        return seqs.with_values((seqs.values * std[rows] + mean[rows]).astype(np.float32))

    @property
    def score_scale(self) -> np.ndarray:
        """``(F,)`` factor from standardised to scored units: scores are in the input's
        units for ``"global"`` and ``"none"``, in each sequence's standardised units for
        ``"sequence"`` (so that loud and quiet sequences score alike)."""
        return self.std_

    def to_dict(self) -> dict[str, Any]:
        d = {"mode": self.mode, "mode_": self.mode_, "spread": self.spread_,
             "mean": self.mean_.tolist(), "std": self.std_.tolist()}
        fill = self.fill_
        if fill is not None:
            d["fill_mean"], d["fill_std"] = fill[0].tolist(), fill[1].tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        s = cls(d["mode"])
        s.mode_, s.spread_ = d["mode_"], float(d["spread"])
        s.mean_ = np.asarray(d["mean"], np.float32)
        s.std_ = np.asarray(d["std"], np.float32)
        s.fill_ = None  # models saved before it: a feature never observed stays unscaled
        if "fill_mean" in d:
            s.fill_ = (np.asarray(d["fill_mean"], np.float32),
                       np.asarray(d["fill_std"], np.float32))
        return s

    def __repr__(self) -> str:
        fitted = f", mode_={self.mode_!r}" if hasattr(self, "mode_") else ""
        return f"Scaler(mode={self.mode!r}{fitted})"
