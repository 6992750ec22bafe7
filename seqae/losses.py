"""Masked losses: each a function and an `nn.Module`.

Every loss takes ``lengths_or_mask``: ``(B,)`` integer lengths or a ``(B, T)`` boolean
mask (True = valid step); the regression losses also take a mask of the prediction's own
shape, ``(B, T, F)``, True = a valid element (missing values: `seqae.nn.model.observed`).
Padded positions of both the prediction and the target are
replaced by zeros before anything is computed, so whatever the padding holds (NaN
included) neither the loss nor its gradient sees it, and padded predictions receive a
gradient of exactly zero.

Reductions:
    ``"mean"`` (default): sum over valid elements / number of valid elements (valid steps
    x features, or the elements an element mask keeps); 0 when there is none, never NaN.
    ``"sum"``: sum over valid elements.
    ``"sequence"``: ``(B,)`` mean over each sequence's own valid elements (0 if empty).
    ``"none"``: the elementwise loss with exact zeros at padding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from .masking import check_lengths, lengths_to_mask, masked_max

__all__ = [
    "masked_mse",
    "masked_mae",
    "masked_huber",
    "masked_cross_entropy",
    "MaskedMSELoss",
    "MaskedMAELoss",
    "MaskedHuberLoss",
    "MaskedCrossEntropyLoss",
    "get_loss",
    "info_nce",
    "hierarchical_contrastive",
    "in_float32",
]

_REDUCTIONS = ("mean", "sum", "sequence", "none")



_F = TypeVar("_F", bound=Callable[..., torch.Tensor])


def _up(v: Any) -> Any:
    if isinstance(v, torch.Tensor) and v.dtype in (torch.bfloat16, torch.float16):
        return v.float()
    return v


def in_float32(fn: _F) -> _F:
    """Make a loss compute in float32 under mixed precision (``torch.autocast``):
    half-precision tensor arguments are cast up and autocast is off inside. Outside
    autocast it calls ``fn`` as it is (the same numbers to the last bit)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        if not torch.is_autocast_enabled(device):
            return fn(*args, **kwargs)
        with torch.autocast(device, enabled=False):
            return fn(*map(_up, args), **{k: _up(v) for k, v in kwargs.items()})
    return wrapper  # type: ignore[return-value]


def _mask(lengths_or_mask: Any, shape: torch.Size, device: torch.device,
          elements: bool = False) -> torch.Tensor:
    """``(B, T)`` bool mask from lengths, a mask, or None (all valid); with ``elements``,
    a mask of the full ``shape`` is taken as it is (an element mask)."""
    b, t = shape[0], shape[1]
    if lengths_or_mask is None:
        return torch.ones(b, t, dtype=torch.bool, device=device)
    m = torch.as_tensor(lengths_or_mask, device=device)
    if elements and m.dim() == len(shape) > 2:
        if m.shape != shape:
            raise ValueError(f"element mask has shape {tuple(m.shape)}, expected "
                             f"{tuple(shape)}")
        return m.to(torch.bool)
    if m.dim() == 1:
        if m.shape[0] != b:
            raise ValueError(f"lengths has {m.shape[0]} entries for a batch of {b}")
        check_lengths(m, t)
        return lengths_to_mask(m, t)
    if m.shape != (b, t):
        raise ValueError(f"mask has shape {tuple(m.shape)}, expected {(b, t)}")
    return m.to(torch.bool)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape + (1,) * (like.dim() - mask.dim())).expand_as(like)


def _reduce(elem: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce an elementwise loss ``(B, T, ...)`` (already zero at padding)."""
    if reduction == "none":
        return elem
    if reduction == "sum":
        return elem.sum()
    # elements per step (1 for an element mask, the size of elem itself)
    per_step = elem[0, 0].numel() if elem.dim() > mask.dim() else 1
    if reduction == "mean":
        count = mask.sum() * per_step
        return elem.sum() / count.clamp(min=1).to(elem.dtype)
    if reduction == "sequence":
        count = mask.reshape(mask.shape[0], -1).sum(1) * per_step
        return elem.reshape(elem.shape[0], -1).sum(1) / count.clamp(min=1).to(elem.dtype)
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _regression(
    fn, pred: torch.Tensor, target: torch.Tensor, lengths_or_mask: Any, reduction: str
) -> torch.Tensor:
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    mask = _mask(lengths_or_mask, pred.shape, pred.device, elements=True)
    m = _expand(mask, pred)
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    pred = torch.where(m, pred, zero)
    target = torch.where(m, target.to(pred.dtype), zero)
    return _reduce(fn(pred, target), mask, reduction)


@in_float32
def masked_mse(
    pred: torch.Tensor, target: torch.Tensor, lengths_or_mask: Any = None, reduction: str = "mean"
) -> torch.Tensor:
    """Mean squared error over valid elements.

    Args:
        pred: ``(B, T, ...)``.
        target: same shape as ``pred``.
        lengths_or_mask: ``(B,)`` lengths, a ``(B, T)`` step mask or a mask of
            ``pred``'s shape (elements); None = all valid.
        reduction: ``"mean"`` (default), ``"sum"``, ``"sequence"`` or ``"none"``.

    Example:
        >>> p = torch.tensor([[[1.], [2.], [float("nan")]]])
        >>> masked_mse(p, torch.zeros_like(p), torch.tensor([2])).item()
        2.5
    """
    return _regression(lambda p, t: (p - t).square(), pred, target, lengths_or_mask, reduction)


@in_float32
def masked_mae(
    pred: torch.Tensor, target: torch.Tensor, lengths_or_mask: Any = None, reduction: str = "mean"
) -> torch.Tensor:
    """Mean absolute error over valid elements (arguments as `masked_mse`)."""
    return _regression(lambda p, t: (p - t).abs(), pred, target, lengths_or_mask, reduction)


@in_float32
def masked_huber(
    pred: torch.Tensor,
    target: torch.Tensor,
    lengths_or_mask: Any = None,
    reduction: str = "mean",
    delta: float = 1.0,
) -> torch.Tensor:
    """Huber loss over valid elements: quadratic below ``delta``, linear above."""
    return _regression(
        lambda p, t: F.huber_loss(p, t, reduction="none", delta=delta),
        pred,
        target,
        lengths_or_mask,
        reduction,
    )


def check_targets(targets: torch.Tensor, mask: torch.Tensor, v: int) -> None:
    """Raise `ValueError` unless every valid target lies in ``0..v - 1``. Checked where
    reading is free (CPU tensors): seqae's own token ids are checked against the
    vocabulary on the host before they reach a GPU (see `seqae.masking.check_lengths`)."""
    if targets.device.type == "cpu" and mask.any() and (
            int(targets.max()) >= v or int(targets.min()) < 0):
        raise ValueError(f"a valid target lies outside 0..{v - 1}")


@in_float32
def masked_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    lengths_or_mask: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Categorical cross-entropy averaged over valid tokens only (seed 003).

    Args:
        logits: ``(B, T, V)`` unnormalised scores.
        targets: ``(B, T)`` integer class ids; padded positions may hold anything
            (even ids outside ``0..V-1``).
        lengths_or_mask: ``(B,)`` lengths or ``(B, T)`` bool mask; None = all valid.
        reduction: ``"mean"`` (per valid token), ``"sum"``, ``"sequence"`` or ``"none"``.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, T, V) and targets (B, T); got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    mask = _mask(lengths_or_mask, targets.shape, logits.device)
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    logits = torch.where(mask[..., None], logits, zero)
    targets = torch.where(mask, targets.long(), torch.zeros_like(targets, dtype=torch.long))
    v = logits.shape[-1]
    check_targets(targets, mask, v)
    elem = F.cross_entropy(logits.reshape(-1, v), targets.reshape(-1), reduction="none")
    elem = torch.where(mask, elem.reshape(targets.shape), zero)
    return _reduce(elem, mask, reduction)


@in_float32
def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` should be closer to row i of ``b`` than to any
    other row of ``b`` (and the other way round), by cosine similarity.

    Args:
        a: ``(B, D)`` one view of B items (e.g. a crop of each of B sequences).
        b: ``(B, D)`` another view of the same B items.
        temperature: scale of the similarities (default 0.1).

    Returns:
        The mean cross-entropy of picking the matching row, over both directions; 0 for
        a batch of fewer than 2 rows (nothing to tell apart).
    """
    if a.shape[0] < 2:
        return (a.sum() + b.sum()) * 0.0
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature  # (B, B)
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _masked_pair_ce(
    sim: torch.Tensor, valid: torch.Tensor, half: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss sum, count)`` of picking the partner ``(j + half) mod 2 half`` of each
    valid row j of ``sim`` ``(G, 2 half, 2 half)`` among the other valid columns."""
    n = sim.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    # candidates of each valid row; an invalid row sees every column, so that no row is
    # all -inf (its gradient would be NaN even where the result is masked out)
    cols = (valid[:, None, :] & ~eye) | ~valid[:, :, None]  # (G, 2h, 2h)
    logits = sim.masked_fill(~cols, float("-inf"))
    partner = (torch.arange(n, device=sim.device) + half) % n  # (2h,)
    pos = logits.gather(2, partner.view(1, n, 1).expand(sim.shape[0], n, 1)).squeeze(2)
    ce = torch.logsumexp(logits, -1) - pos  # (G, 2h); inf/nan where the row is invalid
    ce = torch.where(valid, ce, torch.zeros((), dtype=ce.dtype, device=ce.device))
    return ce.sum(), valid.sum()


def _pool_pairs(
    r1: torch.Tensor, r2: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked max pooling by 2 along time of both views and their shared mask:
    ``(B, T, C), (B, T, C), (B, T) -> (B, ceil(T/2), C), ..., (B, ceil(T/2))``."""
    if m.shape[1] % 2:
        r1, r2, m = F.pad(r1, (0, 0, 0, 1)), F.pad(r2, (0, 0, 0, 1)), F.pad(m, (0, 1))
    b, t, c = r1.shape
    pairs = m.view(b, t // 2, 2)  # (B, T/2, 2)
    return (masked_max(r1.view(b, t // 2, 2, c), pairs, dim=2),
            masked_max(r2.view(b, t // 2, 2, c), pairs, dim=2), pairs.any(2))


@in_float32
def hierarchical_contrastive(
    r1: torch.Tensor, r2: torch.Tensor, mask: torch.Tensor, max_steps: int = 256
) -> torch.Tensor:
    """Timestamp-level contrast of two views of the same steps, at every time scale.

    ``r1[b, t]`` and ``r2[b, t]`` represent step t of sequence b seen in two different
    contexts. At each scale, each representation must pick its partner (by dot product)
    among the other sequences' representations of the same step (instance term) and among
    the other steps of its own sequence (temporal term; skipped once one step is left).
    The steps are then max-pooled by two and the terms repeated until one step remains;
    the result is the mean over scales of the two terms' average. Inputs longer than
    ``max_steps`` are pooled first (the temporal term costs ``T**2`` per sequence).
    Padding (``mask`` False) is neither an anchor nor a candidate.

    Args:
        r1: ``(B, T, C)`` per-step outputs of one view.
        r2: ``(B, T, C)`` the other view's, step for step.
        mask: ``(B, T)``, True = a valid step (the same for both views).
        max_steps: longest time axis the terms are computed on (default 256).

    Returns:
        A scalar; 0 when nothing can be told apart (one sequence of one step).
    """
    zero = torch.zeros((), dtype=r1.dtype, device=r1.device)
    r1, r2 = torch.where(mask[..., None], r1, zero), torch.where(mask[..., None], r2, zero)
    while r1.shape[1] > max_steps:
        r1, r2, mask = _pool_pairs(r1, r2, mask)
    total, scales = r1.sum() * 0.0, 0
    b = r1.shape[0]
    while True:
        z = torch.cat([r1, r2], 0).transpose(0, 1)  # (T, 2B, C)
        valid = torch.cat([mask, mask], 0).T  # (T, 2B)
        s, n = _masked_pair_ce(z @ z.transpose(1, 2), valid, b)
        inst = s / n.clamp(min=1)
        if r1.shape[1] > 1:
            zt = torch.cat([r1, r2], 1)  # (B, 2T, C)
            s, n = _masked_pair_ce(zt @ zt.transpose(1, 2), torch.cat([mask, mask], 1),
                                   r1.shape[1])
            total = total + 0.5 * (inst + s / n.clamp(min=1))
        else:
            total = total + inst
        scales += 1
        if r1.shape[1] == 1:
            return total / scales
        r1, r2, mask = _pool_pairs(r1, r2, mask)


class _MaskedLoss(nn.Module):
    fn = staticmethod(masked_mse)

    def __init__(self, reduction: str = "mean", **kwargs: Any):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.kwargs = kwargs

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, lengths_or_mask: Any = None
    ) -> torch.Tensor:
        return type(self).fn(pred, target, lengths_or_mask, self.reduction, **self.kwargs)


class MaskedMSELoss(_MaskedLoss):
    """Module form of `masked_mse`."""

    fn = staticmethod(masked_mse)


class MaskedMAELoss(_MaskedLoss):
    """Module form of `masked_mae`."""

    fn = staticmethod(masked_mae)


class MaskedHuberLoss(_MaskedLoss):
    """Module form of `masked_huber`; ``delta`` as a keyword."""

    fn = staticmethod(masked_huber)

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction, delta=delta)


class MaskedCrossEntropyLoss(_MaskedLoss):
    """Module form of `masked_cross_entropy`."""

    # the same call as the regression losses', under the names of its own arguments
    fn = staticmethod(masked_cross_entropy)  # type: ignore[assignment]


_BY_NAME = {"mse": masked_mse, "mae": masked_mae, "huber": masked_huber}


def get_loss(name: str):
    """The masked regression loss function called ``name`` (mse, mae or huber)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"loss must be one of {sorted(_BY_NAME)}, got {name!r}") from None
