"""Plain `torch.nn.Module` building blocks: masked encoders, decoders, the model."""

from .decoders import LengthHead, RepeatDecoder
from .encoders import RNNEncoder, SequenceEncoder, gather_last, reverse_within_length
from .model import AutoencoderNet, ModelConfig

__all__ = [
    "AutoencoderNet",
    "LengthHead",
    "ModelConfig",
    "RNNEncoder",
    "RepeatDecoder",
    "SequenceEncoder",
    "gather_last",
    "reverse_within_length",
]
