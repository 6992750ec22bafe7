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
import torch.nn.functional as F
from torch import nn

from ..masking import lengths_to_mask, masked_max, masked_mean, resolve_mask

__all__ = [
    "patchify",
    "ConvEncoder",
    "RNNEncoder",
    "SequenceEncoder",
    "conv_depth_for",
    "gather_last",
    "reverse_within_length",
]

_CELLS: dict[str, type[nn.LSTM] | type[nn.GRU]] = {"lstm": nn.LSTM, "gru": nn.GRU}
_POOLS = ("last", "mean", "max")


def rnn_class(cell: str) -> type[nn.LSTM] | type[nn.GRU]:
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
        self.pools = _check_pools(pooling)
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        d = 2 if bidirectional else 1
        self.hidden_size = hidden_size
        self.out_features = d * hidden_size * len(self.pools)
        self.step_features = d * hidden_size
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
        given = mask is not None
        mask = resolve_mask(x, lengths, mask)  # (B, T)
        # a mask from lengths is right-padded by construction (and reading a GPU's mask
        # back to check it would wait for the device); a given mask is checked
        lengths = (_check_right_padded(mask) if given or lengths is None
                   else torch.as_tensor(lengths, device=x.device).long())  # (B,)
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
        def last() -> torch.Tensor:  # the final state of each direction
            if not self.bidirectional:
                return gather_last(h, lengths)  # (B, H)
            hs = self.hidden_size  # backward final state: it ends at step 0
            return torch.cat([gather_last(h[..., :hs], lengths), h[:, 0, hs:]], -1)

        return h, _pool(h, mask, self.pools, last)  # (B, T, D*H), (B, out_features)


def _pool(h: torch.Tensor, mask: torch.Tensor, pools: tuple[str, ...], last) -> torch.Tensor:
    """``(B, D * len(pools))``: the valid outputs ``h`` ``(B, T, D)`` summarised."""
    parts = []
    for p in pools:
        if p == "last":
            parts.append(last())
        elif p == "mean":
            parts.append(masked_mean(h, mask))
        else:
            parts.append(masked_max(h, mask))
    return torch.cat(parts, -1) if len(parts) > 1 else parts[0]


def _check_pools(pooling: str) -> tuple[str, ...]:
    pools = tuple(pooling.split("+"))
    for p in pools:
        if p not in _POOLS:
            raise ValueError(f"pooling parts must be in {_POOLS}, got {pooling!r}")
    return pools


def patchify(x: torch.Tensor, lengths: torch.Tensor, patch: int):
    """Right-padded ``(B, T, F)`` -> ``(B, ceil(T / p), p F)``: each row cut into patches
    of ``p`` consecutive steps (the last one of a row completed with zeros), and the
    patch lengths ``ceil(L / p)``. Padding is zeroed first, so a row's patches are the
    same alone or in any batch.

    Example:
        >>> x = torch.arange(10.0).view(1, 5, 2)
        >>> p, n = patchify(x, torch.tensor([5]), 2)
        >>> p[0].tolist(), n.tolist()
        ([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0, 0.0, 0.0]], [3])
    """
    if patch == 1:
        return x, lengths
    b, t, f = x.shape
    n = (t + patch - 1) // patch  # ceil; not -(-t // p): ONNX divides integers toward 0
    keep = lengths_to_mask(lengths, t)[..., None]  # (B, T, 1)
    x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
    x = F.pad(x, (0, 0, 0, n * patch - t))  # (B, n p, F)
    return x.reshape(b, n, patch * f), (lengths + patch - 1) // patch


def conv_depth_for(max_length: int, kernel_size: int = 3, most: int = 10) -> int:
    """Fewest `ConvEncoder` blocks whose receptive field covers ``max_length`` steps
    (at least 2, at most ``most``): block i has two convolutions dilated by ``2**i``."""
    depth = 2
    while depth < most and 1 + 2 * (kernel_size - 1) * (2**depth - 1) < max_length:
        depth += 1
    return depth


class _ConvBlock(nn.Module):
    """Residual block: GELU, dilated conv, GELU, dilated conv, plus the input."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, padding=pad, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=pad, dilation=dilation)

    def forward(self, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        # h (B, C, T) is zero at padding; zero again after each conv so that what a
        # valid step reads past its sequence's end is 0, as for the sequence alone.
        zero = torch.zeros((), dtype=h.dtype, device=h.device)
        y = torch.where(m, self.conv1(nn.functional.gelu(h)), zero)
        y = torch.where(m, self.conv2(nn.functional.gelu(y)), zero)
        return h + y


class ConvEncoder(nn.Module):
    """Dilated residual convolutions over right-padded sequences, parallel over time.

    A linear map takes each step to ``hidden_size`` channels; block i applies two
    convolutions of width ``kernel_size`` dilated by ``2**i`` with a residual path, so
    ``depth`` blocks see ``1 + 2 (k - 1) (2**depth - 1)`` steps around each step (2,045 for
    the 9 blocks `conv_depth_for` picks for 1,460 steps). Non-causal: each output sees both
    sides. Padding never reaches a valid output: padded positions are set to zero before
    the first convolution and after every one, which is exactly what a convolution's own
    zero padding gives a sequence alone, so a sequence's outputs do not depend on its batch
    (tested). Cost grows linearly with length, unlike an RNN's sequential steps.

    Args:
        input_size: features per step.
        hidden_size: channels (default 64).
        depth: residual blocks (default 6; see `conv_depth_for`).
        kernel_size: odd convolution width (default 3).
        pooling: ``"max"`` (default), ``"mean"``, ``"last"`` (the output at each
            sequence's last valid step) or a ``"+"``-joined combination; or
            ``"blocks"``: the max over the valid steps of every block's output, joined
            (``depth * hidden_size`` numbers: every time scale, the finest included).
        output_size: channels of a final per-step linear layer before pooling (default
            None: none, the blocks' ``hidden_size`` channels are pooled).

    Call arguments:
        x: ``(B, T, input_size)``; padding may hold anything, NaN included.
        lengths: ``(B,)`` valid lengths, or
        mask: ``(B, T)`` bool, True = valid step (must be right-padded). Not both.
        hide: optional ``(B, T)`` bool, True = a valid step whose projected input is set
            to zero (a training augmentation: the step is seen through its context only).

    Returns:
        ``(outputs, summary)``: ``outputs`` ``(B, T, output_size or hidden_size)`` with
        exact zeros at padding, ``summary`` ``(B, out_features)``.

    Example:
        >>> enc = ConvEncoder(3, 8, depth=3)
        >>> out, s = enc(torch.randn(2, 5, 3), lengths=torch.tensor([5, 2]))
        >>> tuple(out.shape), tuple(s.shape), out[1, 2:].abs().sum().item()
        ((2, 5, 8), (2, 8), 0.0)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        depth: int = 6,
        kernel_size: int = 3,
        pooling: str = "max",
        output_size: int | None = None,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.blockwise = pooling == "blocks"
        if self.blockwise and output_size:
            raise ValueError("pooling='blocks' pools the blocks' own channels: no output_size")
        self.pools = ("max",) if self.blockwise else _check_pools(pooling)
        self.hidden_size = hidden_size
        self.out_features = (output_size or hidden_size) * (
            depth if self.blockwise else len(self.pools))
        self.step_features = output_size or hidden_size
        self.proj = nn.Linear(input_size, hidden_size)
        self.blocks = nn.ModuleList(_ConvBlock(hidden_size, kernel_size, 2**i)
                                    for i in range(depth))
        self.out = nn.Linear(hidden_size, output_size) if output_size else None

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        hide: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        given = mask is not None
        mask = resolve_mask(x, lengths, mask)  # (B, T)
        lengths = (_check_right_padded(mask) if given or lengths is None  # (B,)
                   else torch.as_tensor(lengths, device=x.device).long())
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        m = mask[:, None, :]  # (B, 1, T)
        h = torch.where(mask[..., None], x, zero)  # (B, T, F), padding -> 0
        seen = m if hide is None else m & ~hide[:, None, :]
        h = torch.where(seen, self.proj(h).transpose(1, 2), zero)  # (B, C, T)
        scales = []
        for block in self.blocks:
            h = block(h, m)
            if self.blockwise:
                scales.append(masked_max(h.transpose(1, 2), mask))
        h = h.transpose(1, 2)  # (B, T, C), zero at padding
        if self.out is not None:
            h = torch.where(mask[..., None], self.out(h), zero)  # (B, T, output_size)
        if self.blockwise:
            return h, torch.cat(scales, -1)
        return h, _pool(h, mask, self.pools, lambda: gather_last(h, lengths))


class SequenceEncoder(nn.Module):
    """Sequences -> latent vectors: optional token embedding, an encoder, linear map.

    Args:
        body: the `RNNEncoder` or `ConvEncoder` (anything returning ``(outputs, summary)``
            with an ``out_features`` attribute), kept as ``self.body``.
        latent_dim: size of the latent vector.
        embedding: optional ``nn.Embedding`` applied first (token input).
        linear: map the encoder's summary to the latent with a linear layer (default
            True); False: the summary is the latent (its width must be ``latent_dim``).
        patch: the encoder reads patches of this many consecutive steps (`patchify`;
            default 1: single steps). Continuous input only; ``body`` must then take
            ``patch x F`` features.

    Call arguments:
        x: ``(B, T, F)`` floats, or ``(B, T)`` token ids when ``embedding`` is set.
        lengths / mask: as `RNNEncoder`.

    Returns:
        ``(B, latent_dim)``.
    """

    def __init__(self, body: RNNEncoder | ConvEncoder, latent_dim: int,
                 embedding: nn.Embedding | None = None, linear: bool = True,
                 patch: int = 1):
        super().__init__()
        if patch < 1 or (patch > 1 and embedding is not None):
            raise ValueError(f"patch must be >= 1 (and 1 for tokens), got {patch}")
        self.patch = patch
        self.embedding = embedding
        self.body = body
        if not linear and body.out_features != latent_dim:
            raise ValueError(f"the encoder's summary has {body.out_features} features; "
                             f"without a linear map the latent must too, not {latent_dim}")
        self.to_latent = nn.Linear(body.out_features, latent_dim) if linear else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.steps(x, lengths, mask)[1]

    def steps(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(outputs, latent)``: the body's per-step outputs ``(B, T', D)`` (zero at
        padding; one per patch, ``T' = ceil(T / patch)``, ``D = body.step_features``) and
        the latent ``(B, latent_dim)``."""
        if self.embedding is not None:  # the body gets the lengths or mask as given
            valid = resolve_mask(x, lengths, mask)
            x = self.embedding(torch.where(valid, x, torch.zeros_like(x)))  # (B, T, E)
        elif self.patch > 1:
            lengths = resolve_mask(x, lengths, mask).sum(1)
            x, lengths = patchify(x, lengths, self.patch)  # (B, T / p, p F)
            mask = None
        h, summary = self.body(x, lengths=lengths, mask=mask)  # (B, out_features)
        return h, self.to_latent(summary)  # (B, T', D), (B, latent_dim)
