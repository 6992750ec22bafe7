"""seqae: autoencoders for variable-length sequences, with padding that never leaks.

Example:
    >>> import numpy as np, seqae
    >>> seqs = seqae.Sequences.from_list([np.zeros((3, 2)), np.ones((5, 2))])
    >>> len(seqs), seqs.lengths.tolist()
    (2, [3, 5])
"""

__version__ = "0.1.0"

from . import losses, masking  # noqa: E402
from .data import Sequences  # noqa: E402
from .errors import IncompatibleModelError, SeqaeError, SequenceDataError  # noqa: E402
from .estimator import SequenceAutoencoder, clone  # noqa: E402
from .masking import lengths_to_mask, mask_from_value  # noqa: E402

__all__ = [
    "IncompatibleModelError",
    "SeqaeError",
    "SequenceAutoencoder",
    "SequenceDataError",
    "Sequences",
    "__version__",
    "clone",
    "lengths_to_mask",
    "losses",
    "mask_from_value",
    "masking",
]
