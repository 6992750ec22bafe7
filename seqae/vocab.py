"""`CharVocab`: characters <-> token ids, with reserved PAD/BOS/EOS/UNK ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from .data import Sequences
from .errors import SequenceDataError

__all__ = ["CharVocab", "PAD", "BOS", "EOS", "UNK"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
_SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


class CharVocab:
    """A character vocabulary. Ids 0-3 are reserved: PAD (padding), BOS (start of a
    decoded sequence), EOS (its end) and UNK (a character outside the vocabulary).

    Args:
        chars: the characters, in id order from 4 on.

    Example:
        >>> v = CharVocab.from_texts(["abc", "cab"])
        >>> seqs = v.encode(["cab", "a"])
        >>> seqs[0].tolist(), v.decode(seqs), len(v)
        ([6, 4, 5], ['cab', 'a'], 7)
    """

    def __init__(self, chars: Iterable[str]):
        self.chars = list(chars)
        for c in self.chars:
            if len(c) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {c!r}")
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("vocabulary characters must be unique")
        self._index = {c: i + len(_SPECIALS) for i, c in enumerate(self.chars)}
        self._table = np.array(list(_SPECIALS) + self.chars, dtype=object)

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int = 1) -> CharVocab:
        """Every character seen at least ``min_count`` times, most frequent first (ties by
        character, so the vocabulary does not depend on the order of the texts)."""
        counts = Counter(c for t in texts for c in t)
        chars = sorted((c for c, n in counts.items() if n >= min_count),
                       key=lambda c: (-counts[c], c))
        return cls(chars)

    def __len__(self) -> int:
        return len(self.chars) + len(_SPECIALS)

    def __repr__(self) -> str:
        return f"CharVocab({len(self.chars)} characters + {len(_SPECIALS)} reserved ids)"

    def encode(self, texts: Iterable[str], unknown: str = "error", ids: Any = None) -> Sequences:
        """Token `Sequences`, one per text (no BOS/EOS added).

        Args:
            texts: strings, each at least one character long.
            unknown: ``"error"`` (default) raises for a character outside the
                vocabulary; ``"map"`` maps it to UNK.
            ids: optional ids for the sequences.

        Raises:
            SequenceDataError: naming the text, for an empty text or (with
                ``unknown="error"``) an unknown character.
        """
        if unknown not in ("error", "map"):
            raise ValueError(f"unknown must be 'error' or 'map', got {unknown!r}")
        texts = list(texts)
        arrays = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise SequenceDataError(f"text {i} is a {type(t).__name__}, not a str", index=i)
            if not t:
                raise SequenceDataError(f"text {i} is empty: every sequence needs at least "
                                        "one step", index=i)
            try:
                arrays.append(np.fromiter((self._index[c] for c in t), np.int64, len(t)))
            except KeyError as e:
                if unknown == "map":
                    arrays.append(np.array([self._index.get(c, UNK) for c in t], np.int64))
                    continue
                raise SequenceDataError(
                    f"text {i} ({t!r}) has character {e.args[0]!r}, which is not in the "
                    "vocabulary; pass unknown='map' to map it to <unk>",
                    index=i,
                ) from None
        return Sequences.from_list(arrays, ids=ids)

    def decode(self, seqs: Sequences | Iterable[Any]) -> list[str]:
        """Strings from token sequences: stops at EOS, skips PAD and BOS, UNK -> '?'."""
        out = []
        for s in seqs:
            s = np.asarray(s)
            end = np.flatnonzero(s == EOS)
            if len(end):
                s = s[: end[0]]
            s = s[(s != PAD) & (s != BOS)]
            if len(s) and (s.min() < 0 or s.max() >= len(self)):
                raise SequenceDataError(f"token ids outside 0..{len(self) - 1}")
            out.append("".join("?" if k == UNK else self._table[k] for k in s))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": "CharVocab", "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharVocab:
        if d.get("type") != "CharVocab":
            raise ValueError(f"not a CharVocab: {d.get('type')!r}")
        return cls(d["chars"])
