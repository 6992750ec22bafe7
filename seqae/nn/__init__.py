"""Plain `torch.nn.Module` building blocks: masked encoders, decoders, the model."""

from .decoders import AutoregressiveDecoder, LengthHead, RepeatDecoder
from .encoders import (
    ConvEncoder,
    RNNEncoder,
    SequenceEncoder,
    gather_last,
    patchify,
    reverse_within_length,
)
from .keras import KerasMaskedRNN
from .model import AutoencoderNet, ModelConfig

__all__ = [
    "AutoencoderNet",
    "AutoregressiveDecoder",
    "ConvEncoder",
    "KerasMaskedRNN",
    "LengthHead",
    "ModelConfig",
    "RNNEncoder",
    "RepeatDecoder",
    "SequenceEncoder",
    "gather_last",
    "patchify",
    "reverse_within_length",
]
