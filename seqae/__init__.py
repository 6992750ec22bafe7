"""seqae: autoencoders for variable-length sequences, with padding that never leaks.

Public names are loaded on first use, so ``import seqae`` (and the ``seqae`` command's
``--help``) stays instant; torch is imported only when a name that needs it is touched.

Example:
    >>> import numpy as np, seqae
    >>> seqs = seqae.Sequences.from_list([np.zeros((3, 2)), np.ones((5, 2))])
    >>> len(seqs), seqs.lengths.tolist()
    (2, [3, 5])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Sequences": "seqae.data",
    "SequenceAutoencoder": "seqae.estimator",
    "clone": "seqae.estimator",
    "SeqaeError": "seqae.errors",
    "SequenceDataError": "seqae.errors",
    "IncompatibleModelError": "seqae.errors",
    "DataFileError": "seqae.errors",
    "ExportError": "seqae.errors",
    "read_sequences": "seqae.tables",
    "lengths_to_mask": "seqae.masking",
    "mask_from_value": "seqae.masking",
    "Scaler": "seqae.scaling",
    "CharVocab": "seqae.vocab",
}
_SUBMODULES = ("batching", "checkpoint", "data", "datasets", "distributed", "errors",
               "estimator", "export", "inference", "io", "lengths", "losses", "masking",
               "model_dir", "nn", "params", "plots", "progress", "recipe", "scaling",
               "sources", "stream", "tables", "tasks", "train", "vocab")
# seqae.keras (the optional Keras 3 front end) loads on first touch only; it needs keras.
_OPTIONAL = ("keras",)

__all__ = sorted(_EXPORTS) + ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES or name in _OPTIONAL:
        value = importlib.import_module(f"seqae.{name}")
    else:
        raise AttributeError(f"module 'seqae' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs
    from . import batching, data, datasets, distributed, errors, estimator, io, losses  # noqa
    from . import masking, nn  # noqa: F401
    from . import plots, progress, scaling, stream, tables, train, vocab  # noqa: F401
    from .data import Sequences  # noqa: F401
    from .errors import DataFileError, IncompatibleModelError, SeqaeError  # noqa: F401
    from .errors import ExportError, SequenceDataError  # noqa: F401
    from .estimator import SequenceAutoencoder, clone  # noqa: F401
    from .tables import read_sequences  # noqa: F401
    from .masking import lengths_to_mask, mask_from_value  # noqa: F401
    from .scaling import Scaler  # noqa: F401
    from .vocab import CharVocab  # noqa: F401
