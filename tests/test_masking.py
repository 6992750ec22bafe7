import numpy as np
import pytest
import torch

from seqae.masking import lengths_to_mask, mask_from_value, masked_max, masked_mean, resolve_mask


def test_lengths_to_mask():
    m = lengths_to_mask(torch.tensor([0, 2, 3]), 4)
    assert m.tolist() == [
        [False, False, False, False],
        [True, True, False, False],
        [True, True, True, False],
    ]
    assert lengths_to_mask(torch.tensor([1, 3])).shape == (2, 3)


def test_mask_from_value_keras_rule():
    x = torch.tensor([[[0.37, 0.37], [0.37, 2.0], [1.0, 1.0]]])
    assert mask_from_value(x, 0.37).tolist() == [[False, True, True]]
    y = torch.tensor([[[float("nan")], [0.0]]])
    assert mask_from_value(y, float("nan")).tolist() == [[False, True]]


def test_resolve_mask_refuses_both_and_checks_shapes():
    x = torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match="not both"):
        resolve_mask(x, torch.tensor([1, 2]), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="lengths must lie in"):
        resolve_mask(x, torch.tensor([1, 4]))
    assert resolve_mask(x).all()


def test_masked_mean_and_max_against_numpy(rng):
    lengths = np.array([1, 4, 0, 6])
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    for b, n in enumerate(lengths):
        x[b, n:] = np.nan
    mask = lengths_to_mask(torch.tensor(lengths), 6)
    mean = masked_mean(torch.from_numpy(x), mask).numpy()
    mx = masked_max(torch.from_numpy(x), mask).numpy()
    for b, n in enumerate(lengths):
        if n == 0:
            assert (mean[b] == 0).all() and (mx[b] == 0).all()
        else:
            np.testing.assert_allclose(mean[b], x[b, :n].mean(0), rtol=1e-6)
            np.testing.assert_allclose(mx[b], x[b, :n].max(0))


def test_host_max_and_check_lengths_read_only_cpu_tensors():
    """Off the CPU (here tensors on no device at all, which cannot be read) `host_max`
    gives the caller's bound and `check_lengths` checks nothing, so neither waits for a
    GPU; on the CPU both read the values."""
    from seqae.masking import check_lengths, host_max

    meta = torch.tensor([3, 9], device="meta")
    assert host_max(meta, 12) == 12
    check_lengths(meta, 5)  # not read: would raise if it were
    assert host_max(torch.tensor([3, 9]), 12) == 9
    assert host_max(torch.tensor([], dtype=torch.long), 12) == 0
    with pytest.raises(ValueError, match=r"lengths must lie in 0\.\.5 .*got 3\.\.9"):
        check_lengths(torch.tensor([3, 9]), 5)
    with pytest.raises(ValueError, match="got -1..2"):
        check_lengths(torch.tensor([-1, 2]), 5)
