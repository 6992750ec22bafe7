"""Decoders: latent vectors -> sequences of a requested length per row."""

from __future__ import annotations

import torch
from torch import nn

from ..masking import lengths_to_mask
from .encoders import rnn_class

__all__ = ["RepeatDecoder", "AutoregressiveDecoder", "LengthHead", "POSITIONS"]

POSITIONS = ("none", "relative", "fourier")
_N_FOURIER = 4  # sin/cos pairs of the relative position


class _StateFromLatent(nn.Module):
    """The RNN's initial state, a tanh of a linear map of the latent (both decoders)."""

    cell: str
    num_layers: int
    hidden_size: int
    init_state: nn.Linear
    bottleneck: nn.Linear | None

    def _bottleneck(self, latent_dim: int, width: int) -> int:
        """Set up the optional linear bottleneck; returns the width the RNN then sees."""
        self.bottleneck = nn.Linear(latent_dim, width) if width else None
        return width or latent_dim

    def squeeze(self, z: torch.Tensor) -> torch.Tensor:
        """The latent as the RNN sees it: through the bottleneck when there is one."""
        return z if self.bottleneck is None else self.bottleneck(z)

    def initial_state(self, z: torch.Tensor):
        b = z.shape[0]
        s = torch.tanh(self.init_state(z))  # (B, S*L*H)
        s = s.view(b, -1, self.num_layers, self.hidden_size).permute(1, 2, 0, 3)  # (S, L, B, H)
        s = s.contiguous()
        return (s[0], s[1]) if self.cell == "lstm" else s[0]


class RepeatDecoder(_StateFromLatent):
    """The correct "RepeatVector": the latent fed at every step, for each row's own length.

    Each row b is decoded for exactly ``lengths[b]`` steps (seed 000, option 1): the
    latent is repeated to the row's own length, never to a data-set-wide ``timesteps``.
    The RNN's initial state is also a function of the latent, and with ``position=True``
    each step also gets its relative position ``t / (L_b - 1)`` in ``[0, 1]``, which lets
    one latent describe the same shape at any length; ``position="fourier"`` adds
    ``sin/cos(pi k t / (L_b - 1))`` for k = 1..4, a smooth basis along the sequence.

    Args:
        latent_dim: size of the latent vector.
        hidden_size: RNN units.
        output_size: features per output step.
        num_layers: stacked layers (default 1).
        cell: ``"lstm"`` (default) or ``"gru"``.
        dropout: between stacked layers (default 0).
        position: ``"relative"`` (default), ``"fourier"`` or ``"none"``.
        bottleneck: width of a linear map the latent goes through first (default 0:
            none, the RNN sees the latent itself).

    Call arguments:
        z: ``(B, latent_dim)``.
        lengths: ``(B,)`` output length of each row (>= 0).
        max_len: padded length T of the result; default ``lengths.max()``.

    Returns:
        ``(B, T, output_size)``, exact zeros past each row's length (no gradient flows
        from there).

    Example:
        >>> dec = RepeatDecoder(4, 8, 2)
        >>> y = dec(torch.randn(2, 4), torch.tensor([3, 1]))
        >>> tuple(y.shape), y[1, 1:].abs().sum().item()
        ((2, 3, 2), 0.0)
    """

    def __init__(
        self,
        latent_dim: int,
        hidden_size: int,
        output_size: int,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        position: str = "relative",
        bottleneck: int = 0,
    ):
        super().__init__()
        latent_dim = self._bottleneck(latent_dim, bottleneck)
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        self.position = position
        n_pos = {"none": 0, "relative": 1, "fourier": 1 + 2 * _N_FOURIER}[position]
        self.cell = cell.lower()
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        n_states = 2 if self.cell == "lstm" else 1
        self.init_state = nn.Linear(latent_dim, n_states * num_layers * hidden_size)
        self.rnn = rnn_class(cell)(
            latent_dim + n_pos,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size, output_size)

    def step_inputs(self, z: torch.Tensor, lengths: torch.Tensor, max_len: int) -> torch.Tensor:
        """``(B, T, latent_dim + P)``: the latent at every step, plus position channels."""
        b = z.shape[0]
        inp = z[:, None, :].expand(b, max_len, z.shape[-1])  # (B, T, Z)
        if self.position == "none":
            return inp
        t = torch.arange(max_len, device=z.device, dtype=z.dtype)[None, :]  # (1, T)
        denom = (lengths.to(z.dtype) - 1).clamp(min=1)[:, None]  # (B, 1)
        rel = (t / denom).clamp(max=1.0)  # (B, T) in [0, 1]
        chans = [rel]
        if self.position == "fourier":
            k = torch.arange(1, _N_FOURIER + 1, device=z.device, dtype=z.dtype)  # (K,)
            ang = torch.pi * rel[..., None] * k  # (B, T, K)
            chans = [rel[..., None], torch.sin(ang), torch.cos(ang)]
            return torch.cat([inp] + chans, -1)
        return torch.cat([inp, rel[..., None]], -1)

    def forward(
        self, z: torch.Tensor, lengths: torch.Tensor, max_len: int | None = None
    ) -> torch.Tensor:
        z = self.squeeze(z)
        lengths = torch.as_tensor(lengths, device=z.device)
        if max_len is None:
            max_len = int(lengths.max()) if lengths.numel() else 0
        mask = lengths_to_mask(lengths, max_len)  # (B, T)
        out, _ = self.rnn(self.step_inputs(z, lengths, max_len), self.initial_state(z))
        y = self.head(out)  # (B, T, output_size)
        return torch.where(mask[..., None], y, torch.zeros((), dtype=y.dtype, device=y.device))


class LengthHead(nn.Module):
    """Predicts a sequence length from its latent vector (linear regression on log
    length).

    It never changes the embedding: `SequenceAutoencoder` fits it after training by least
    squares on the training latents (`fit_least_squares`). Used when ``decode`` is asked
    for sequences without lengths.
    """

    def __init__(self, latent_dim: int, max_length: int):
        super().__init__()
        self.linear = nn.Linear(latent_dim, 1)
        self.max_length = max_length

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` predicted log length."""
        return self.linear(z).squeeze(-1)

    @torch.no_grad()
    def fit_least_squares(self, z: torch.Tensor, lengths: torch.Tensor, ridge: float = 1e-3):
        """Set the weights to the ridge least-squares fit of log length on ``z``."""
        z = z.double()
        y = torch.log(lengths.double())
        zc, yc = z - z.mean(0), y - y.mean()
        a = zc.T @ zc + ridge * len(z) * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
        w = torch.linalg.solve(a, zc.T @ yc)
        self.linear.weight.copy_(w[None, :].to(self.linear.weight.dtype))
        self.linear.bias.fill_(float(y.mean() - z.mean(0) @ w))

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` integer lengths in ``1..max_length``."""
        return torch.exp(self(z)).round().clamp(1, self.max_length).long()


class AutoregressiveDecoder(_StateFromLatent):
    """Decodes one step at a time, each step seeing the previous one.

    Training uses teacher forcing (the true previous step is fed); inference runs free,
    feeding back its own previous output (greedy argmax for tokens). Every step also
    gets the latent, and the initial state is computed from it.

    Args:
        latent_dim: size of the latent vector.
        hidden_size: RNN units.
        output_size: features per step (continuous) or vocabulary size (tokens).
        num_layers: stacked RNN layers, as `RepeatDecoder`.
        cell: ``"gru"`` or ``"lstm"``, as `RepeatDecoder`.
        dropout: between stacked layers, as `RepeatDecoder`.
        tokens: True for token data: an embedding of the previous token in, logits out.
        embedding_dim: size of that embedding (default 32).
        token_dropout: in training, the share of previous tokens replaced by <unk>
            (default 0).
        bottleneck: as `RepeatDecoder` (default 0: none).

    Call arguments (teacher forcing):
        z: ``(B, latent_dim)``.
        prev: the previous step of each position: ``(B, T)`` token ids (BOS first) or
            ``(B, T, F)`` values (zeros first).
        lengths: ``(B,)`` steps to produce per row.

    Returns:
        ``(B, T, output_size)`` outputs (logits for tokens), exact zeros past each length.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden_size: int,
        output_size: int,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        tokens: bool = False,
        embedding_dim: int = 32,
        token_dropout: float = 0.0,
        bottleneck: int = 0,
    ):
        super().__init__()
        latent_dim = self._bottleneck(latent_dim, bottleneck)
        self.tokens = tokens
        self.token_dropout = token_dropout
        self.cell = cell.lower()
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.embedding: nn.Embedding | None = None
        if tokens:
            self.embedding = nn.Embedding(output_size, embedding_dim, padding_idx=0)
            in_size = embedding_dim
        else:
            in_size = output_size + 1  # previous values + relative position
        n_states = 2 if self.cell == "lstm" else 1
        self.init_state = nn.Linear(latent_dim, n_states * num_layers * hidden_size)
        self.rnn = rnn_class(cell)(
            in_size + latent_dim,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size, output_size)

    def _inputs(
        self, z: torch.Tensor, prev: torch.Tensor, t0: int, lengths: torch.Tensor | None
    ) -> torch.Tensor:
        """``(B, T, in)`` step inputs for steps ``t0 .. t0 + T - 1``."""
        b, t = prev.shape[0], prev.shape[1]
        if self.embedding is not None:  # tokens
            feats = self.embedding(prev)  # (B, T, E)
        else:
            assert lengths is not None  # continuous data always decode to known lengths
            steps = torch.arange(t0, t0 + t, device=z.device, dtype=z.dtype)[None, :]
            denom = (lengths.to(z.dtype) - 1).clamp(min=1)[:, None]  # (B, 1)
            rel = (steps / denom).clamp(max=1.0)[..., None]  # (B, T, 1)
            feats = torch.cat([prev, rel], -1)  # (B, T, F + 1)
        return torch.cat([feats, z[:, None, :].expand(b, t, z.shape[-1])], -1)

    def forward(self, z: torch.Tensor, prev: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        z = self.squeeze(z)
        lengths = torch.as_tensor(lengths, device=z.device)
        mask = lengths_to_mask(lengths, prev.shape[1])  # (B, T)
        if self.tokens:
            prev = torch.where(mask, prev, torch.zeros_like(prev))
            if self.training and self.token_dropout > 0:
                # Hide some previous tokens (as <unk>, never the leading BOS): the decoder
                # must lean on the latent instead of memorising words as a language model.
                drop = torch.rand(prev.shape, device=prev.device) < self.token_dropout
                drop[:, 0] = False
                prev = torch.where(drop & mask, torch.full_like(prev, 3), prev)
        else:
            prev = torch.where(mask[..., None], prev, torch.zeros((), dtype=prev.dtype,
                                                                  device=prev.device))
        out, _ = self.rnn(self._inputs(z, prev, 0, lengths), self.initial_state(z))
        y = self.head(out)  # (B, T, output_size)
        return torch.where(mask[..., None], y, torch.zeros((), dtype=y.dtype, device=y.device))

    @torch.no_grad()
    def generate(
        self,
        z: torch.Tensor,
        max_len: int,
        lengths: torch.Tensor | None = None,
        bos: int = 1,
        eos: int = 2,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Free-running decoding, batched (one Python step per time step, not per row).

        Args:
            z: ``(B, latent_dim)``.
            max_len: most steps to produce.
            lengths: optional ``(B,)`` exact lengths. Tokens: EOS is not allowed before a
                row's length and the row stops there. Continuous data need lengths.
            bos: the start token id.
            eos: the end token id.

        Returns:
            ``(out, lengths)``: ``out`` is ``(B, T)`` token ids (PAD after the end, EOS not
            included) or ``(B, T, F)`` values (zeros after the end).
        """
        z = self.squeeze(z)
        b = z.shape[0]
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=z.device)
            max_len = int(lengths.max()) if b else 0
        elif not self.tokens:
            raise ValueError("continuous autoregressive decoding needs lengths")
        state = self.initial_state(z)
        if self.tokens:
            prev = torch.full((b, 1), bos, dtype=torch.long, device=z.device)
            out = torch.zeros(b, max_len, dtype=torch.long, device=z.device)
            done = torch.zeros(b, dtype=torch.bool, device=z.device)
            found = torch.full((b,), max_len, dtype=torch.long, device=z.device)
        else:
            prev = torch.zeros(b, 1, self.output_size, dtype=z.dtype, device=z.device)
            out = torch.zeros(b, max_len, self.output_size, dtype=z.dtype, device=z.device)
        for t in range(max_len):
            h, state = self.rnn(self._inputs(z, prev, t, lengths), state)
            y = self.head(h[:, 0])  # (B, V) or (B, F)
            if self.tokens:
                if lengths is not None:
                    y[:, eos] = torch.where(t < lengths, float("-inf"), y[:, eos])
                tok = y.argmax(-1)  # (B,)
                if lengths is None:
                    ended = (tok == eos) & ~done
                    found = torch.where(ended, torch.full_like(found, t), found)
                    done = done | ended
                    tok = torch.where(done, torch.zeros_like(tok), tok)
                    if bool(done.all()):
                        break
                out[:, t] = tok
                prev = tok[:, None]
            else:
                out[:, t] = y
                prev = y[:, None]
        if lengths is None:
            lengths = found.clamp(min=1)  # a row that ends at once still gets one step
        mask = lengths_to_mask(lengths, max_len)
        if self.tokens:
            out = torch.where(mask, out, torch.zeros_like(out))
        else:
            out = torch.where(mask[..., None], out, torch.zeros((), dtype=out.dtype,
                                                                device=out.device))
        return out, lengths
