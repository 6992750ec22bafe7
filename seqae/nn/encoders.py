"""Masked RNN encoders.

Input is right-padded: ``x`` is ``(B, T, F)`` and sequence b occupies steps
``0..lengths[b]-1``. Padding never reaches a valid output:

* padded input steps are replaced by zeros first (NaN padding cannot poison the
  recurrence or its gradient);
* a forward RNN is causal, so its outputs at valid steps ignore what follows; the
  sequence's final state is its output at its own last valid step (a gather, no
  ``pack_padded_sequence``);
* a backward direction runs on each sequence reversed *within its own length* (so it
  starts at the sequence's last valid step, not at the padded end) and is reversed back.
"""

from __future__ import annotations

import torch
from torch import nn

from ..masking import masked_max, masked_mean, resolve_mask

__all__ = ["RNNEncoder", "SequenceEncoder", "reverse_within_length", "gather_last"]

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
_POOLS = ("last", "mean", "max")


def rnn_class(cell: str) -> type[nn.RNNBase]:
    try:
        return _CELLS[cell.lower()]
    except KeyError:
        raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}") from None


def reverse_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B, T)`` time index reversing each row within its length (padding stays put)."""
    t = torch.arange(max_len, device=lengths.device)[None, :]  # (1, T)
    lens = lengths[:, None]
    return torch.where(t < lens, lens - 1 - t, t)  # (B, T)


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of right-padded ``x`` ``(B, T, ...)`` within its length.

    Its own inverse. Padding positions are left where they are.
    """
    idx = reverse_index(lengths.to(x.device), x.shape[1])  # (B, T)
    idx = idx.reshape(idx.shape + (1,) * (x.dim() - 2)).expand_as(x)
    return x.gather(1, idx)


def gather_last(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, H)``: each row's ``x`` ``(B, T, H)`` at its last valid step (0 if empty)."""
    idx = (lengths - 1).clamp(min=0).to(x.device)  # (B,)
    out = x.gather(1, idx.view(-1, 1, 1).expand(-1, 1, x.shape[-1])).squeeze(1)  # (B, H)
    return torch.where((lengths > 0).to(x.device)[:, None], out, torch.zeros_like(out))


def _check_right_padded(mask: torch.Tensor) -> torch.Tensor:
    lengths = mask.sum(1)
    steps = torch.arange(mask.shape[1], device=mask.device)[None, :]
    if not torch.equal(mask, steps < lengths[:, None]):
        raise ValueError(
            "this encoder takes right-padded input (valid steps first); the mask has gaps "
            "or leading padding. Use seqae.Sequences.from_padded(..., padding='pre') to "
            "move the data, or seqae.nn.KerasMaskedRNN for masks anywhere"
        )
    return lengths


class RNNEncoder(nn.Module):
    """Stacked, optionally bidirectional LSTM/GRU over right-padded sequences.

    Args:
        input_size: features per step.
        hidden_size: units per direction.
        num_layers: stacked layers (default 1).
        cell: ``"lstm"`` (default) or ``"gru"``.
        bidirectional: add a backward direction that starts at each sequence's own last
            step (default False).
        dropout: dropout between stacked layers (default 0).
        pooling: how valid outputs become the summary vector: ``"last"`` (the final state:
            forward output at the last valid step, backward output at step 0), ``"mean"``,
            ``"max"``, or a ``"+"``-joined combination such as ``"last+mean"``.

    Call arguments:
        x: ``(B, T, input_size)``; padding may hold anything, NaN included.
        lengths: ``(B,)`` valid lengths, or
        mask: ``(B, T)`` bool, True = valid step (must be right-padded). Not both.

    Returns:
        ``(outputs, summary)``: ``outputs`` ``(B, T, D*H)`` with exact zeros at padding,
        ``summary`` ``(B, out_features)``.

    Example:
        >>> enc = RNNEncoder(3, 8, bidirectional=True)
        >>> out, s = enc(torch.randn(2, 5, 3), lengths=torch.tensor([5, 2]))
        >>> tuple(out.shape), tuple(s.shape)
        ((2, 5, 16), (2, 16))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
    ):
        super().__init__()
        rnn = rnn_class(cell)
        self.pools = tuple(pooling.split("+"))
        for p in self.pools:
            if p not in _POOLS:
                raise ValueError(f"pooling parts must be in {_POOLS}, got {pooling!r}")
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        d = 2 if bidirectional else 1
        self.hidden_size = hidden_size
        self.out_features = d * hidden_size * len(self.pools)
        if bidirectional:
            # One module per layer and direction: each backward pass must be reversed
            # within each sequence's own length, which nn.LSTM(bidirectional=True) cannot
            # do on padded input without packing.
            sizes = [input_size] + [d * hidden_size] * (num_layers - 1)
            self.fwd = nn.ModuleList(rnn(s, hidden_size, batch_first=True) for s in sizes)
            self.bwd = nn.ModuleList(rnn(s, hidden_size, batch_first=True) for s in sizes)
            self.drop = nn.Dropout(dropout)
        else:
            self.rnn = rnn(
                input_size,
                hidden_size,
                num_layers,
                batch_first=True,
                dropout=dropout if num_layers > 1 else 0.0,
            )

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = resolve_mask(x, lengths, mask)  # (B, T)
        lengths = _check_right_padded(mask)  # (B,)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        m3 = mask[..., None]  # (B, T, 1)
        h = torch.where(m3, x, zero)  # (B, T, F), padding -> 0
        if self.bidirectional:
            for layer in range(self.num_layers):
                if layer:
                    h = self.drop(h)
                out_f, _ = self.fwd[layer](h)  # (B, T, H)
                out_b, _ = self.bwd[layer](reverse_within_length(h, lengths))  # (B, T, H)
                out_b = reverse_within_length(out_b, lengths)
                h = torch.where(m3, torch.cat([out_f, out_b], -1), zero)  # (B, T, 2H)
        else:
            out, _ = self.rnn(h)
            h = torch.where(m3, out, zero)  # (B, T, H)
        parts = []
        for p in self.pools:
            if p == "last":
                if self.bidirectional:
                    hs = self.hidden_size
                    parts.append(gather_last(h[..., :hs], lengths))  # forward final state
                    parts.append(h[:, 0, hs:])  # backward final state: it ends at step 0
                else:
                    parts.append(gather_last(h, lengths))  # (B, H)
            elif p == "mean":
                parts.append(masked_mean(h, mask))
            else:
                parts.append(masked_max(h, mask))
        summary = torch.cat(parts, -1) if len(parts) > 1 else parts[0]  # (B, out_features)
        return h, summary


class SequenceEncoder(nn.Module):
    """Sequences -> latent vectors: optional token embedding, `RNNEncoder`, linear map.

    Args:
        rnn: the `RNNEncoder`.
        latent_dim: size of the latent vector.
        embedding: optional ``nn.Embedding`` applied first (token input).

    Call arguments:
        x: ``(B, T, F)`` floats, or ``(B, T)`` token ids when ``embedding`` is set.
        lengths / mask: as `RNNEncoder`.

    Returns:
        ``(B, latent_dim)``.
    """

    def __init__(self, rnn: RNNEncoder, latent_dim: int, embedding: nn.Embedding | None = None):
        super().__init__()
        self.embedding = embedding
        self.rnn = rnn
        self.to_latent = nn.Linear(rnn.out_features, latent_dim)

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.embedding is not None:
            mask = resolve_mask(x, lengths, mask)
            x = self.embedding(torch.where(mask, x, torch.zeros_like(x)))  # (B, T, E)
            lengths = None
        _, summary = self.rnn(x, lengths=lengths, mask=mask)  # (B, out_features)
        return self.to_latent(summary)  # (B, latent_dim)
