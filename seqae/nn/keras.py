"""Keras masking semantics, opt-in: masks anywhere, state carried across masked steps.

seqae's own encoders take right-padded input and gather each sequence's last valid
step, which is exact and fast. Some users need what Keras' ``Masking`` layer does to an
RNN instead (seed 002): a masked step may sit anywhere (before, inside or after the
data); at a masked step the cell is not applied, the state is carried forward unchanged
and the output repeats the previous output (zeros before the first valid step).

`KerasMaskedRNN` does exactly that, with Keras' weight layout (``kernel``,
``recurrent_kernel``, ``bias``; gate order z, r, h for GRU and i, f, c, o for LSTM) and
configurable activations, so weights from a Keras model can be copied in as they are.
It runs a Python loop over time steps: use it for semantics, not for speed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..masking import mask_from_value, resolve_mask

__all__ = ["KerasMaskedRNN"]

_ACTIVATIONS: dict[str | None, Callable[[torch.Tensor], torch.Tensor]] = {
    None: lambda x: x,
    "linear": lambda x: x,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "hard_sigmoid": lambda x: torch.clamp(0.2 * x + 0.5, 0.0, 1.0),
}


def _activation(name: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, got {name!r}") from None


class KerasMaskedRNN(nn.Module):
    """A GRU or LSTM layer with Keras masking semantics and Keras weight layout.

    Args:
        input_size: features per step.
        units: state size.
        cell: ``"gru"`` (default) or ``"lstm"``.
        activation: candidate/output activation (default ``"tanh"``; None = linear).
        recurrent_activation: gate activation (default ``"sigmoid"``; None = linear).
        reset_after: GRU only. False is the original GRU (reset gate applied before the
            recurrent matmul, one bias vector); True is Keras 2.x/3's default (after it,
            with a separate recurrent bias). Default True.
        use_bias: default True.

    Call arguments:
        x: ``(B, T, input_size)``.
        mask: ``(B, T)`` bool, True = valid step, anywhere; or
        lengths: ``(B,)`` (right padding); or
        mask_value: the Keras ``Masking`` rule (all features equal ``mask_value``).
        At most one of them; none = every step valid.

    Returns:
        ``(outputs (B, T, units), final_state)``: final_state is ``h`` for GRU, ``(h, c)``
        for LSTM: the state after each row's last valid step.

    Example:
        >>> rnn = KerasMaskedRNN(2, 1, activation=None, recurrent_activation=None,
        ...                      reset_after=False)
        >>> with torch.no_grad():
        ...     _ = rnn.kernel.fill_(1.0), rnn.recurrent_kernel.zero_(), rnn.bias.fill_(1.0)
        >>> x = torch.tensor([[[1., 1.], [2., 2.], [.37, .37]]])
        >>> rnn(x, mask_value=.37)[0].squeeze().tolist()
        [-6.0, -50.0, -50.0]
    """

    def __init__(
        self,
        input_size: int,
        units: int,
        cell: str = "gru",
        activation: str | None = "tanh",
        recurrent_activation: str | None = "sigmoid",
        reset_after: bool = True,
        use_bias: bool = True,
    ):
        super().__init__()
        cell = cell.lower()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        self.cell = cell
        self.units = units
        self.act = _activation(activation)
        self.rec_act = _activation(recurrent_activation)
        self.reset_after = reset_after and cell == "gru"
        gates = 3 if cell == "gru" else 4
        self.kernel = nn.Parameter(torch.empty(input_size, gates * units))
        self.recurrent_kernel = nn.Parameter(torch.empty(units, gates * units))
        if use_bias:
            shape = (2, gates * units) if self.reset_after else (gates * units,)
            self.bias = nn.Parameter(torch.zeros(shape))
        else:
            self.register_parameter("bias", None)
        nn.init.xavier_uniform_(self.kernel)
        nn.init.orthogonal_(self.recurrent_kernel)
        if use_bias and cell == "lstm":
            with torch.no_grad():
                self.bias[units : 2 * units] = 1.0  # Keras' unit_forget_bias

    def _gru_step(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        u = self.units
        xw = x_t @ self.kernel  # (B, 3U)
        if self.bias is not None:
            xw = xw + (self.bias[0] if self.reset_after else self.bias)
        xz, xr, xh = xw[:, :u], xw[:, u : 2 * u], xw[:, 2 * u :]
        rk = self.recurrent_kernel
        if self.reset_after:
            hu = h @ rk  # (B, 3U)
            if self.bias is not None:
                hu = hu + self.bias[1]
            z = self.rec_act(xz + hu[:, :u])
            r = self.rec_act(xr + hu[:, u : 2 * u])
            hh = self.act(xh + r * hu[:, 2 * u :])
        else:
            z = self.rec_act(xz + h @ rk[:, :u])
            r = self.rec_act(xr + h @ rk[:, u : 2 * u])
            hh = self.act(xh + (r * h) @ rk[:, 2 * u :])
        return z * h + (1 - z) * hh

    def _lstm_step(self, x_t, h, c):
        u = self.units
        g = x_t @ self.kernel + h @ self.recurrent_kernel  # (B, 4U)
        if self.bias is not None:
            g = g + self.bias
        i = self.rec_act(g[:, :u])
        f = self.rec_act(g[:, u : 2 * u])
        c_new = f * c + i * self.act(g[:, 2 * u : 3 * u])
        o = self.rec_act(g[:, 3 * u :])
        return o * self.act(c_new), c_new

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        mask_value: float | None = None,
    ):
        if mask_value is not None:
            if mask is not None or lengths is not None:
                raise ValueError("give one of mask, lengths or mask_value")
            mask = mask_from_value(x, mask_value)
        mask = resolve_mask(x, lengths, mask)  # (B, T)
        b, t, _ = x.shape
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        x = torch.where(mask[..., None], x, zero)  # masked steps are never computed on
        h = x.new_zeros(b, self.units)
        c = x.new_zeros(b, self.units) if self.cell == "lstm" else None
        outputs = []
        for step in range(t):
            m = mask[:, step, None]  # (B, 1)
            if self.cell == "gru":
                h = torch.where(m, self._gru_step(x[:, step], h), h)
            else:
                assert c is not None
                h_new, c_new = self._lstm_step(x[:, step], h, c)
                h, c = torch.where(m, h_new, h), torch.where(m, c_new, c)
            outputs.append(h)  # at a masked step: the previous output (zeros at first)
        out = torch.stack(outputs, 1) if outputs else x.new_zeros(b, 0, self.units)
        return out, (h if self.cell == "gru" else (h, c))
