"""The encoder-decoder module and its configuration (no training code here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .decoders import LengthHead, RepeatDecoder
from .encoders import RNNEncoder, SequenceEncoder, reverse_within_length

__all__ = ["ModelConfig", "AutoencoderNet"]


@dataclass
class ModelConfig:
    """Architecture of an `AutoencoderNet`.

    Args:
        n_features: features per step of the data.
        latent_dim: size of the embedding (default 32).
        hidden_size: RNN units per direction (default 128).
        num_layers: stacked RNN layers in encoder and decoder (default 1).
        cell: ``"lstm"`` or ``"gru"`` (default ``"lstm"``).
        bidirectional: bidirectional encoder (default True).
        pooling: encoder summary, see `RNNEncoder` (default ``"last"``).
        dropout: between stacked layers (default 0).
        decoder: ``"repeat"`` (default).
        position: position channels of the repeat decoder: ``"relative"`` (default),
            ``"fourier"`` or ``"none"``.
        reverse_target: decode the sequence back to front (default False).
        max_length: longest length the length head may predict.
    """

    n_features: int
    latent_dim: int = 32
    hidden_size: int = 128
    num_layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = True
    pooling: str = "last"
    dropout: float = 0.0
    decoder: str = "repeat"
    position: str = "relative"
    reverse_target: bool = False
    max_length: int = 10_000

    def to_dict(self) -> dict:
        return asdict(self)


class AutoencoderNet(nn.Module):
    """Encoder + decoder + length head for continuous sequences.

    Call arguments:
        x: ``(B, T, F)`` right-padded; padding may hold anything.
        lengths: ``(B,)``.

    Returns:
        ``(reconstruction (B, T, F) with zeros at padding, z (B, latent_dim))``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.decoder != "repeat":
            raise ValueError(f"decoder must be 'repeat', got {config.decoder!r}")
        self.config = config
        rnn = RNNEncoder(
            config.n_features,
            config.hidden_size,
            config.num_layers,
            config.cell,
            config.bidirectional,
            config.dropout,
            config.pooling,
        )
        self.encoder = SequenceEncoder(rnn, config.latent_dim)
        self.decoder = RepeatDecoder(
            config.latent_dim,
            config.hidden_size,
            config.n_features,
            config.num_layers,
            config.cell,
            config.dropout,
            config.position,
        )
        self.length_head = LengthHead(config.latent_dim, config.max_length)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, lengths=lengths)  # (B, Z)

    def decode(
        self, z: torch.Tensor, lengths: torch.Tensor, max_len: int | None = None
    ) -> torch.Tensor:
        y = self.decoder(z, lengths, max_len)  # (B, T, F)
        if self.config.reverse_target:
            y = reverse_within_length(y, lengths)
        return y

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x, lengths)
        return self.decode(z, lengths, x.shape[1]), z
