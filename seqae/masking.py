"""Masks and masked reductions.

One convention everywhere: a mask is a boolean tensor ``(B, T)`` where ``True`` marks a
valid step (the Keras convention). Masks are derived from lengths; a value in the data
is never taken for padding (``mask_from_value`` exists only as an input adapter for the
Keras `Masking` rule).
"""

from __future__ import annotations

import torch

__all__ = [
    "check_lengths",
    "host_max",
    "lengths_to_mask",
    "mask_from_value",
    "masked_mean",
    "masked_max",
    "resolve_mask",
]


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Boolean mask ``(B, T)``, True at the first ``lengths[b]`` steps of row b.

    Args:
        lengths: ``(B,)`` integer lengths.
        max_len: T; default ``lengths.max()``.

    Example:
        >>> lengths_to_mask(torch.tensor([1, 3])).tolist()
        [[True, False, False], [True, True, True]]
    """
    lengths = torch.as_tensor(lengths)
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    steps = torch.arange(max_len, device=lengths.device)
    return steps[None, :] < lengths[:, None]


def host_max(values: torch.Tensor, bound: int) -> int:
    """``values.max()`` where reading it is free (a CPU tensor), else ``bound``, a bound
    the caller knows on the host (a padded length).

    Reading a GPU tensor waits for every kernel queued before it, so code on the
    training step asks for the exact maximum only where it costs nothing: on a GPU the
    shape it sizes is then ``bound`` wide, which is more padding, not another result.
    """
    if values.device.type != "cpu":
        return bound
    return int(values.max()) if values.numel() else 0


def check_lengths(lengths: torch.Tensor, t: int) -> None:
    """Raise `ValueError` unless every length lies in ``0..t`` (the padded length).

    Checked where it is free (CPU tensors). Lengths on a GPU are not read back (it would
    wait for the device on every batch): seqae's own batches take them from lengths
    already checked on the host.
    """
    if lengths.device.type != "cpu" or not lengths.numel():
        return
    lo, hi = int(lengths.min()), int(lengths.max())
    if hi > t or lo < 0:
        raise ValueError(f"lengths must lie in 0..{t} (the padded length), got {lo}..{hi}")


def mask_from_value(x: torch.Tensor, mask_value: float) -> torch.Tensor:
    """The Keras `Masking` rule: ``(B, T)`` True where NOT every feature equals
    ``mask_value`` (NaN matches NaN). A step with only some features equal is data.

    Args:
        x: ``(B, T, F)``.
        mask_value: the pad value, any float (e.g. 0.37).
    """
    if mask_value != mask_value:  # NaN
        equal = torch.isnan(x)
    else:
        equal = x == mask_value
    return ~equal.all(dim=-1)


def resolve_mask(
    x: torch.Tensor,
    lengths: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ``(B, T)`` mask for ``x`` from exactly one of ``lengths`` or ``mask``.

    Blocks take either; giving both is refused (they could disagree). Giving neither
    means every step is valid.
    """
    if lengths is not None and mask is not None:
        raise ValueError("give lengths or mask, not both")
    b, t = x.shape[0], x.shape[1]
    if mask is not None:
        if mask.shape != (b, t):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {(b, t)}")
        return mask.to(device=x.device, dtype=torch.bool)
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=x.device)
        if lengths.shape != (b,):
            raise ValueError(f"lengths has shape {tuple(lengths.shape)}, expected ({b},)")
        check_lengths(lengths, t)
        return lengths_to_mask(lengths, t)
    return torch.ones(b, t, dtype=torch.bool, device=x.device)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` counting valid steps only; 0 where none is valid.

    Args:
        x: ``(B, T, ...)``; padding may hold anything, NaN included.
        mask: ``(B, T)``.
    """
    m = mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim()))
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim)
    count = m.sum(dim).clamp(min=1).to(x.dtype)
    return total / count


def masked_max(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Max of ``x`` over ``dim`` among valid steps; 0 where none is valid."""
    m = mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim()))
    neg = torch.full((), float("-inf"), dtype=x.dtype, device=x.device)
    out = torch.where(m, x, neg).amax(dim)
    return torch.where(m.any(dim), out, torch.zeros_like(out))
