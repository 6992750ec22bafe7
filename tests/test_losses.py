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
