"""What the data are: continuous values, token ids or texts.

A task owns everything that differs between them, so that nothing else branches on the
kind of data: turning what the user passed into `Sequences`, checking new data against
the fitted model, the scaler (continuous) or the vocabulary (tokens, texts), converting
the model's outputs back to the user's units (or texts), the model head's settings and
the task's part of the saved config.

`for_data` picks the task in `fit`; `from_config` rebuilds it from a saved model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .data import Sequences
from .errors import SequenceDataError, describe
from .params import limit
from .scaling import Scaler
from .vocab import UNK, CharVocab

__all__ = ["ContinuousTask", "TokenTask", "TextTask", "Task", "for_data", "from_config",
           "is_texts", "as_sequences"]

# copies="auto" for token data: weight of the random-string reconstruction term (the
# model must learn to spell any string, not to recall the training words)
TOKEN_COPIES = 0.5
# missing="mask": share of the observed elements hidden from the encoder in each training
# batch, which the model must predict (masked imputation, as SAITS trains; SAITS hides
# 20 %, TSI-Bench's protocol holds out 10 %: between them)
HIDE_OBSERVED = 0.15


def is_texts(X: Any) -> bool:
    """Whether ``X`` is a non-empty list (or tuple) of strings."""
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(t, str) for t in X)


def as_sequences(X: Any, missing: str = "error") -> Sequences:
    """``X`` as `Sequences` (a list of arrays is converted, a NaN in it read by
    ``missing``; anything else is refused)."""
    if isinstance(X, Sequences):
        return X
    if isinstance(X, (list, tuple)):
        return Sequences.from_list(X, missing=missing)
    raise TypeError(
        f"expected seqae.Sequences or a list of arrays, got {type(X).__name__}; for a padded "
        "array use seqae.Sequences.from_padded(x, lengths=...)"
    )


class Task(ABC):
    """What every task offers; data in memory that are not texts pass as `Sequences`."""

    kind = ""
    vocab: CharVocab | None = None
    vocab_size = 0
    scaler: Scaler | None = None
    n_features = 1
    feature_names: list[str] | None = None

    def sequences(self, X: Any, unknown: str = "error") -> Sequences:
        """What the user passed, as `Sequences` (texts are refused)."""
        if is_texts(X):
            raise SequenceDataError("this model was not fitted on texts; pass Sequences")
        return as_sequences(X)

    def to_user(self, out: Sequences, X: Any) -> Sequences | list[str]:
        """Per-step outputs for the user (``X`` is what they passed)."""
        return out

    @abstractmethod
    def check(self, seqs: Sequences) -> None:
        """Raise `SequenceDataError` unless ``seqs`` fit the fitted model."""

    @abstractmethod
    def fit(self, data_max: Callable[[], int],
            train_stats: Callable[[], tuple[np.ndarray, ...]]) -> Task:
        """Learn the task's statistics: the scaler from the training part's statistics
        (``train_stats()``), or the vocabulary size from the data's largest id
        (``data_max()``); each is computed only if asked for."""

    @abstractmethod
    def to_model(self, seqs: Sequences) -> tuple[Sequences, Any]:
        """``(seqs in model units, what from_model needs to put them back)``."""

    @abstractmethod
    def from_model(self, seqs: Sequences, stats: Any) -> Sequences:
        """Per-step model outputs back in the input's units."""

    @abstractmethod
    def decoded(self, seqs: Sequences) -> Sequences:
        """Decoded sequences (model units) in the units `decode` returns."""

    @abstractmethod
    def score_scale(self, device: torch.device) -> torch.Tensor | None:
        """Per-feature factor from model units to scored units (None: tokens, scored
        by cross-entropy)."""

    @abstractmethod
    def head(self, copies: Any) -> dict[str, Any]:
        """The `seqae.nn.ModelConfig` settings this task fixes."""

    @abstractmethod
    def to_config(self) -> dict[str, Any]:
        """The task's part of the saved config (`from_config` reads it back)."""


class ContinuousTask(Task):
    """Continuous ``(T_i, F)`` values: standardised by a `Scaler`, a linear head out, a
    masked regression loss; outputs in the input's units.

    ``missing="mask"``: NaN inside a sequence is a missing element; the model sees it
    flagged (`seqae.nn.ModelConfig.missing`), losses, scores and the scaler's statistics
    skip it; ``"error"``: a NaN is refused, naming the sequence, step and feature."""

    kind = "continuous"

    def __init__(self, scaler: Scaler, n_features: int, feature_names: list[str] | None,
                 missing: str = "error"):
        self.scaler: Scaler = scaler
        self.n_features, self.feature_names = n_features, feature_names
        self.missing = missing

    def sequences(self, X: Any, unknown: str = "error") -> Sequences:
        """What the user passed, as `Sequences`, its features matched to the model's by
        name when both have names (put in the model's order; a different set of names
        is an error naming both lists); without names, by position. Missing values are
        refused unless the model takes them, and a sequence with no observed value is
        refused either way."""
        if is_texts(X):
            raise SequenceDataError("this model was not fitted on texts; pass Sequences")
        seqs = as_sequences(X, self.missing)
        self.check_gaps(seqs)
        have, want = seqs.feature_names, self.feature_names
        if have is None or want is None or have == want or seqs.is_tokens:
            return seqs
        if sorted(have) != sorted(want) or len(set(have)) != len(have):
            raise SequenceDataError(f"the data's features {have} are not the model's {want}; "
                                    "features are matched by name")
        order = [have.index(name) for name in want]
        return Sequences(seqs.values[:, order], seqs.offsets, ids=seqs.ids, feature_names=want,
                         missing=seqs.missing)

    def check(self, seqs: Sequences) -> None:
        if seqs.is_tokens or seqs.n_features != self.n_features:
            got = "tokens" if seqs.is_tokens else f"{seqs.n_features} features"
            raise SequenceDataError(
                f"the model was fitted on {self.n_features} features; the data have {got}"
            )
        if self.missing == "error":
            seqs.require_complete()

    def check_gaps(self, seqs: Sequences) -> None:
        """Refuse missing values for a model with ``missing="error"`` (naming the
        sequence, step and feature), and a sequence with no observed value."""
        if self.missing == "error":
            seqs.require_complete()
        else:
            seqs.require_observed()

    # ---------------------------------------------------------------- statistics
    def fit(self, data_max: Callable[[], int],
            train_stats: Callable[[], tuple[np.ndarray, ...]]) -> ContinuousTask:
        self.scaler.fit_stats(*train_stats())
        return self

    # ---------------------------------------------------------------- model units
    def to_model(self, seqs: Sequences) -> tuple[Sequences, Any]:
        """``(standardised seqs, per-sequence (mean, std))`` (see `Scaler.transform`)."""
        return self.scaler.transform(seqs)

    def from_model(self, seqs: Sequences, stats: Any) -> Sequences:
        """Reconstructions back in the input's units."""
        return self.scaler.inverse(seqs, stats)

    def decoded(self, seqs: Sequences) -> Sequences:
        """Decoded sequences in the training data's units ("global"), or standardised
        ("sequence": a latent carries no level or scale to put back)."""
        n, f = len(seqs), self.n_features
        return self.scaler.inverse(seqs, (np.broadcast_to(self.scaler.mean_, (n, f)),
                                          np.broadcast_to(self.scaler.std_, (n, f))))

    def score_scale(self, device: torch.device) -> torch.Tensor | None:
        """Per-feature factor from model units to scored units."""
        return torch.as_tensor(self.scaler.score_scale, device=device)

    def head(self, copies: Any) -> dict[str, Any]:
        """The model settings this task fixes (with missing values: the observed
        indicator and the share of observed elements hidden in training)."""
        if self.missing == "mask":
            return {"vocab_size": 0, "missing": True, "hide_observed": HIDE_OBSERVED,
                    "imputer": True}
        return {"vocab_size": 0}

    # ---------------------------------------------------------------- saved config
    def to_config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "feature_names": self.feature_names,
                "scaler": self.scaler.to_dict(), "vocab_size": 0, "vocab": None}


class TokenTask(Task):
    """Integer token ids (0-3 are PAD, BOS, EOS, UNK): an embedding in, a softmax over the
    vocabulary out, masked cross-entropy; not scaled."""

    kind = "tokens"

    def __init__(self, vocab_size: int = 0, n_features: int = 1):
        self.vocab_size, self.n_features = vocab_size, n_features

    def check(self, seqs: Sequences) -> None:
        if not seqs.is_tokens:
            raise SequenceDataError(
                f"the model was fitted on tokens; the data have {seqs.n_features} features"
            )
        bad = np.flatnonzero(seqs.values >= self.vocab_size)
        if len(bad):
            i = int(np.searchsorted(seqs.offsets, bad[0], side="right") - 1)
            raise SequenceDataError(
                f"{describe(i, seqs.ids)} has token {seqs.values[bad[0]]} at step "
                f"{bad[0] - seqs.offsets[i]}, outside the vocabulary (0..{self.vocab_size - 1})",
                index=i,
            )

    def fit(self, data_max: Callable[[], int],
            train_stats: Callable[[], tuple[np.ndarray, ...]]) -> TokenTask:
        # the vocabulary: every id of the training data (the share held out for
        # validation included; validation data given apart must keep to it), and at
        # least the special ids
        if not self.vocab_size:
            self.vocab_size = max(int(data_max()) + 1, UNK + 1)
        return self

    def to_model(self, seqs: Sequences) -> tuple[Sequences, Any]:
        return seqs, None

    def from_model(self, seqs: Sequences, stats: Any) -> Sequences:
        return seqs

    def decoded(self, seqs: Sequences) -> Sequences:
        return seqs

    def score_scale(self, device: torch.device) -> torch.Tensor | None:
        return None

    def head(self, copies: Any) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size,
                "copies": float(TOKEN_COPIES if copies == "auto" else copies)}

    def to_config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "feature_names": None, "scaler": None,
                "vocab_size": self.vocab_size,
                "vocab": None if self.vocab is None else self.vocab.to_dict()}


class TextTask(TokenTask):
    """Texts: a `CharVocab` learned in `fit` turns them into token ids; texts in, texts
    out."""

    kind = "texts"

    def __init__(self, vocab: CharVocab):
        super().__init__(len(vocab))
        self.vocab: CharVocab = vocab

    def sequences(self, X: Any, unknown: str = "error") -> Sequences:
        """Texts through the vocabulary (``unknown``: a character outside it raises
        with ``"error"``, becomes ``<unk>`` with ``"map"``); token ids as they are."""
        if is_texts(X):
            return self.vocab.encode(X, unknown=unknown)
        return as_sequences(X)

    def to_user(self, out: Sequences, X: Any) -> Sequences | list[str]:
        return self.vocab.decode(out) if is_texts(X) else out


def for_data(X: Any, normalize: Any, unknown: str,
             missing: str = "error") -> tuple[Task, Sequences]:
    """``(task, X as Sequences)`` for training input held in memory; texts learn their
    vocabulary here, token ids learn their vocabulary size in `TokenTask.fit`.
    ``missing="mask"`` is for continuous data only (a `SequenceDataError` otherwise)."""
    if missing == "mask" and (is_texts(X) or (isinstance(X, Sequences) and X.is_tokens)):
        raise SequenceDataError(_NO_TOKEN_GAPS)
    if is_texts(X):
        text = TextTask(CharVocab.from_texts(X))
        return text, text.sequences(X, unknown)
    seqs = as_sequences(X, missing)
    if seqs.is_tokens and missing == "mask":
        raise SequenceDataError(_NO_TOKEN_GAPS)
    if seqs.is_tokens:
        top = limit("vocab_size")
        big = np.flatnonzero(seqs.values >= top)
        if len(big):
            i = int(np.searchsorted(seqs.offsets, big[0], side="right") - 1)
            raise SequenceDataError(
                f"{describe(i, seqs.ids)} has token id {seqs.values[big[0]]:,} at step "
                f"{big[0] - seqs.offsets[i]}: token ids are below seqae's limit of {top:,} "
                "(the vocabulary); set the environment variable SEQAE_LIMIT_VOCAB_SIZE to "
                "raise it", index=i)
        return TokenTask(n_features=seqs.n_features), seqs
    task = ContinuousTask(Scaler(normalize), seqs.n_features, seqs.feature_names, missing)
    task.check_gaps(seqs)
    return task, seqs


_NO_TOKEN_GAPS = ("missing='mask' is for continuous values: a token sequence (or a text) "
                  "has no missing elements (map an unknown token to <unk> instead); fit "
                  "with missing='error'")


def from_config(config: dict[str, Any]) -> Task:
    """The fitted task of a saved model's config."""
    if config.get("vocab") is not None:
        return TextTask(CharVocab.from_dict(config["vocab"]))
    if config.get("vocab_size"):
        return TokenTask(config["vocab_size"], config["n_features"])
    return ContinuousTask(_read_scaler(config), config["n_features"], config["feature_names"],
                          config.get("params", {}).get("missing", "error"))


def _read_scaler(config: dict[str, Any]) -> Scaler:
    """The fitted scaler of a config; folders written before the scaler had its own
    entry hold global statistics as ``mean`` / ``std`` (zeros and ones for per-sequence
    standardisation), which is what a "global" or "sequence" scaler holds."""
    if config.get("scaler") is not None:
        return Scaler.from_dict(config["scaler"])
    mode = config["params"].get("normalize", True)
    resolved = "sequence" if mode == "sequence" else ("global" if mode else "none")
    return Scaler.from_dict({"mode": mode, "mode_": resolved, "spread": 1.0,
                             "mean": config["mean"], "std": config["std"]})
