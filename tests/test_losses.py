import numpy as np
import pytest
import torch

from seqae import losses
from seqae.losses import (
    MaskedCrossEntropyLoss,
    MaskedHuberLoss,
    MaskedMSELoss,
    masked_cross_entropy,
    masked_huber,
    masked_mae,
    masked_mse,
)


def _batch(rng, lengths, t=7, f=3, fill=np.nan):
    pred = rng.normal(size=(len(lengths), t, f)).astype(np.float32)
    target = rng.normal(size=(len(lengths), t, f)).astype(np.float32)
    for b, n in enumerate(lengths):
        pred[b, n:] = fill
        target[b, n:] = fill
    return pred, target


def _np_huber(d, delta):
    a = np.abs(d)
    return np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))


REFS = {
    "mse": (masked_mse, lambda d: d * d),
    "mae": (masked_mae, np.abs),
    "huber": (masked_huber, lambda d: _np_huber(d, 1.0)),
}


@pytest.mark.parametrize("name", sorted(REFS))
def test_regression_losses_match_numpy_on_valid_elements(rng, name):
    fn, ref = REFS[name]
    lengths = [3, 7, 1, 5]
    pred, target = _batch(rng, lengths)
    # numpy reference: concatenate the valid elements only, then average
    diffs = np.concatenate([(pred[b, :n] - target[b, :n]).ravel() for b, n in enumerate(lengths)])
    expected = ref(diffs).mean()
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    got = fn(p, t, torch.tensor(lengths)).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # the same from a mask
    mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
    assert fn(p, t, mask).item() == pytest.approx(expected, rel=1e-6)
    # per-sequence
    per_seq = fn(p, t, torch.tensor(lengths), reduction="sequence").numpy()
    for b, n in enumerate(lengths):
        assert per_seq[b] == pytest.approx(ref(pred[b, :n] - target[b, :n]).mean(), rel=1e-5)
    total = fn(p, t, torch.tensor(lengths), reduction="sum").item()
    assert total == pytest.approx(ref(diffs).sum(), rel=1e-5)
    elem = fn(p, t, torch.tensor(lengths), reduction="none")
    assert torch.isfinite(elem).all() and (elem[2, 1:] == 0).all()


def test_unmasked_mean_would_differ(rng):
    """The masked mean is not the padded mean: padding with zeros would bias it."""
    lengths = [2, 6]
    pred, target = _batch(rng, lengths, fill=0.0)
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    masked = masked_mse(p, t, torch.tensor(lengths)).item()
    padded_mean = ((pred - target) ** 2).mean()
    assert masked != pytest.approx(padded_mean, rel=1e-3)


def test_padding_gets_zero_gradient_and_empty_mask_gives_zero(rng):
    lengths = torch.tensor([2, 0, 5])
    pred, target = _batch(rng, [2, 0, 5])
    p = torch.from_numpy(pred).requires_grad_()
    loss = masked_mse(p, torch.from_numpy(target), lengths)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(p.grad).all()
    assert (p.grad[0, 2:] == 0).all() and (p.grad[1] == 0).all()
    # the gradient at valid positions is the analytic one: 2 (p - t) / count
    count = 7 * 3
    expected = 2 * (pred[2, :5] - target[2, :5]) / count
    np.testing.assert_allclose(p.grad[2, :5].numpy(), expected, rtol=1e-5)
    empty = masked_mse(p, torch.from_numpy(target), torch.tensor([0, 0, 0]))
    assert empty.item() == 0.0
    empty.backward()
    assert torch.isfinite(p.grad).all()


def test_modules_equal_functions(rng):
    pred, target = _batch(rng, [4, 2])
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    lens = torch.tensor([4, 2])
    assert MaskedMSELoss()(p, t, lens) == masked_mse(p, t, lens)
    assert MaskedHuberLoss(delta=0.5)(p, t, lens) == masked_huber(p, t, lens, delta=0.5)
    with pytest.raises(ValueError, match="reduction"):
        MaskedMSELoss(reduction="avg")
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.get_loss("xent")


def _np_xent(logits, target):
    z = logits - logits.max()
    return -(z[target] - np.log(np.exp(z).sum()))


def test_masked_cross_entropy_matches_per_token_loop(rng):
    lengths = [3, 1, 4]
    logits = rng.normal(size=(3, 4, 5)).astype(np.float32)
    targets = rng.integers(0, 5, size=(3, 4))
    for b, n in enumerate(lengths):
        logits[b, n:] = np.nan
        targets[b, n:] = -100  # anything, even out of range
    vals = [_np_xent(logits[b, t], targets[b, t]) for b, n in enumerate(lengths) for t in range(n)]
    got = masked_cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(targets), torch.tensor(lengths)
    )
    assert got.item() == pytest.approx(np.mean(vals), rel=1e-5)
    mod = MaskedCrossEntropyLoss()(
        torch.from_numpy(logits), torch.from_numpy(targets), torch.tensor(lengths)
    )
    assert mod.item() == got.item()
    with pytest.raises(ValueError, match="outside"):
        masked_cross_entropy(torch.zeros(1, 2, 3), torch.tensor([[0, 3]]), torch.tensor([2]))


def test_seed_003_masked_loss_is_the_valid_steps_mean():
    """Seed 003: left-padded '##abb' and '#babb' (lengths 3 and 4) with a softmax output.
    The masked cross-entropy is the mean over the 7 valid characters only."""
    y_true = np.array([[2, 2, 0, 1, 1], [2, 1, 0, 1, 1]])  # '#' = 2
    probs = np.random.default_rng(3).dirichlet(np.ones(3), size=(2, 5)).astype(np.float32)
    logits = torch.log(torch.from_numpy(probs))
    mask = torch.tensor([[False, False, True, True, True], [False, True, True, True, True]])
    got = masked_cross_entropy(logits, torch.from_numpy(y_true), mask).item()
    per_tok = -np.log(np.take_along_axis(probs, y_true[..., None], -1)[..., 0])
    assert got == pytest.approx(per_tok[mask.numpy()].mean(), rel=1e-6)
    assert got != pytest.approx(per_tok.mean(), rel=1e-3)


def _hierarchical_reference(r1, r2, counts):
    """numpy, one sequence and one step at a time: the instance and temporal terms at
    every scale, each sequence's valid steps max-pooled by two (ceil) between scales."""
    def ce(anchor, cands, pos):  # -log softmax of the partner among the candidates
        logits = np.array([anchor @ c for c in cands])
        return np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[pos]

    rows1 = [r1[b, :n].astype(np.float64) for b, n in enumerate(counts)]
    rows2 = [r2[b, :n].astype(np.float64) for b, n in enumerate(counts)]
    total, scales = 0.0, 0
    while True:
        longest = max(len(r) for r in rows1)
        inst = []
        for t in range(longest):
            live = [b for b in range(len(rows1)) if len(rows1[b]) > t]
            z = [rows1[b][t] for b in live] + [rows2[b][t] for b in live]
            k = len(live)
            for i in range(2 * k):
                cands = [z[j] for j in range(2 * k) if j != i]
                partner = (i + k) % (2 * k)
                inst.append(ce(z[i], cands, partner - (partner > i)))
        inst = np.mean(inst)
        if longest > 1:
            temp = []
            for a, b in zip(rows1, rows2, strict=True):
                z, n = list(a) + list(b), len(a)
                for i in range(2 * n):
                    cands = [z[j] for j in range(2 * n) if j != i]
                    partner = (i + n) % (2 * n)
                    temp.append(ce(z[i], cands, partner - (partner > i)))
            total += 0.5 * (inst + np.mean(temp))
        else:
            total += inst
        scales += 1
        if longest == 1:
            return total / scales

        def pool(r):
            return np.array([r[i : i + 2].max(0) for i in range(0, len(r), 2)])

        rows1, rows2 = [pool(r) for r in rows1], [pool(r) for r in rows2]


def test_hierarchical_contrastive_matches_a_loop_reference():
    from seqae.losses import hierarchical_contrastive

    g = torch.Generator().manual_seed(0)
    counts = [5, 1, 3, 8]
    r1, r2 = torch.randn(4, 8, 3, generator=g), torch.randn(4, 8, 3, generator=g)
    mask = torch.arange(8)[None, :] < torch.tensor(counts)[:, None]
    r1[~mask], r2[~mask] = float("nan"), float("nan")  # padding must not be read
    r1.requires_grad_(True)
    loss = hierarchical_contrastive(r1, r2, mask)
    ref = _hierarchical_reference(r1.detach().numpy(), r2.numpy(), counts)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    loss.backward()
    assert torch.isfinite(r1.grad).all() and (r1.grad[~mask] == 0).all()
    # a lone step of a lone sequence has nothing to be told apart from
    one = torch.ones(1, 1, 3)
    assert float(hierarchical_contrastive(one, one, torch.ones(1, 1, dtype=torch.bool))) == 0
    # longer than max_steps: pooled first, same as pooling by hand
    long1, long2 = torch.randn(2, 20, 3, generator=g), torch.randn(2, 20, 3, generator=g)
    full = torch.ones(2, 20, dtype=torch.bool)
    pooled = hierarchical_contrastive(long1, long2, full, max_steps=10)
    by_hand = hierarchical_contrastive(long1.view(2, 10, 2, 3).amax(2),
                                       long2.view(2, 10, 2, 3).amax(2), full[:, :10])
    assert float(pooled) == pytest.approx(float(by_hand), rel=1e-6)


@pytest.mark.parametrize("name", sorted(REFS))
def test_masked_losses_compute_in_float32_under_bf16_autocast(rng, name):
    """Under bf16 autocast (here on the CPU) a masked loss of bf16 predictions is float32
    and equals, to float32 rounding (rel 1e-6), the float32 loss of the same bf16 values
    cast up: nothing inside it is rounded to bf16. Its gradient reaches the bf16
    predictions finite, and padding (NaN) still counts for nothing."""
    fn, ref = REFS[name]
    lengths = [3, 7, 1, 5]
    pred, target = _batch(rng, lengths)
    p = torch.from_numpy(pred).bfloat16().requires_grad_()
    t = torch.from_numpy(target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn(p, t, torch.tensor(lengths), reduction="sum")
    assert got.dtype == torch.float32
    expected = fn(p.detach().float(), t, torch.tensor(lengths), reduction="sum")
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # and within bf16's rounding of the inputs (2^-8 relative) of the float32 loss
    full = fn(torch.from_numpy(pred), t, torch.tensor(lengths), reduction="sum").item()
    assert got.item() == pytest.approx(full, rel=2e-2)
    got.backward()
    assert p.grad.dtype == torch.bfloat16 and torch.isfinite(p.grad.float()).all()


def test_cross_entropy_and_info_nce_in_float32_under_bf16_autocast(rng):
    """The same for the token loss and the contrastive term (whose matrix product
    autocast would otherwise run in bf16)."""
    logits = torch.from_numpy(rng.normal(size=(3, 5, 11)).astype(np.float32)).bfloat16()
    targets = torch.from_numpy(rng.integers(0, 11, size=(3, 5)))
    lengths = torch.tensor([5, 2, 4])
    a = torch.from_numpy(rng.normal(size=(6, 8)).astype(np.float32)).bfloat16()
    b = torch.from_numpy(rng.normal(size=(6, 8)).astype(np.float32)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ce = masked_cross_entropy(logits, targets, lengths)
        nce = losses.info_nce(a, b)
    assert ce.dtype == nce.dtype == torch.float32
    assert ce.item() == pytest.approx(
        masked_cross_entropy(logits.float(), targets, lengths).item(), rel=1e-6)
    assert nce.item() == pytest.approx(losses.info_nce(a.float(), b.float()).item(), rel=1e-6)
