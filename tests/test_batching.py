import numpy as np
import pytest
import torch

from seqae import Sequences
from seqae.batching import LengthBucketSampler, collate, sorted_batches


@pytest.fixture
def lengths(rng):
    return np.clip(rng.lognormal(3.0, 0.8, size=500).astype(int), 1, 400)


@pytest.mark.parametrize("policy", ["tokens", "count"])
def test_every_sequence_exactly_once_per_epoch(lengths, policy):
    sampler = LengthBucketSampler(lengths, batch_size=16, policy=policy, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = np.concatenate(batches)
        assert np.array_equal(np.sort(flat), np.arange(len(lengths)))
        orders.append(flat)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled between epochs


def test_token_policy_keeps_padded_steps_within_budget(lengths):
    budget = 16 * int(np.ceil(lengths.mean()))
    batches = sorted_batches(lengths, 16, "tokens")
    for b in batches:
        padded = len(b) * lengths[b].max()
        # within budget, unless the batch holds only the minimum of batch_size // 2
        assert padded <= budget or len(b) <= 8
    sizes = [len(b) for b in batches]
    assert min(sizes[:-1]) >= 8 and max(sizes) <= 8 * 16
    # batches are length-sorted: padding is a small share of the padded steps
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert lengths.sum() / padded > 0.9
    # versus padding the whole data set to its longest sequence
    assert lengths.sum() / (len(lengths) * lengths.max()) < 0.2


def test_count_policy_sizes(lengths):
    batches = sorted_batches(lengths, 32, "count")
    assert [len(b) for b in batches[:-1]] == [32] * (len(batches) - 1)
    with pytest.raises(ValueError, match="policy"):
        sorted_batches(lengths, 32, "random")


def test_collate_matches_pad(rng):
    seqs = Sequences.from_list([rng.normal(size=(n, 2)) for n in (4, 1, 6, 3)])
    values = torch.cat([torch.from_numpy(seqs.values), torch.zeros(1, 2)])
    idx = torch.tensor([2, 0, 1])
    x, lens = collate(values, torch.from_numpy(seqs.offsets), idx)
    ref, ref_lens = seqs.take([2, 0, 1]).pad(value=0.0)
    assert lens.tolist() == ref_lens.tolist()
    np.testing.assert_array_equal(x.numpy(), ref)


def test_sampler_groups_keep_neighbouring_batches_together():
    """With ``group`` g (one optimizer step's batches under torchrun / accumulation) the
    epoch order shuffles runs of g length-neighbouring batches; each batch comes once."""
    lengths = np.random.default_rng(3).permutation(np.arange(1, 51))
    whole = LengthBucketSampler(lengths, 4, shuffle=False).batches()  # sorted by length
    rank = {tuple(sorted(b)): i for i, b in enumerate(whole)}
    for g in (1, 2, 3):
        s = LengthBucketSampler(lengths, 4, seed=0, group=g)
        s.set_epoch(2)
        order = [rank[tuple(sorted(b))] for b in s.batches()]
        assert sorted(order) == list(range(len(whole)))
        runs = [order[i:i + g] for i in range(0, len(order), g)]
        assert all(r == list(range(r[0], r[0] + len(r))) for r in runs)
        assert all(r[0] % g == 0 for r in runs)
    one = LengthBucketSampler(lengths, 4, seed=0)
    one.set_epoch(2)
    assert [rank[tuple(sorted(b))] for b in one.batches()] != sorted(order)  # shuffled
