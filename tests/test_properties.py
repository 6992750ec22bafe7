"""Property tests (hypothesis) for the ragged container, the collate and the padding
rules: any lengths, any padding side and value, round trips exact."""

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from seqae import Sequences, lengths_to_mask, mask_from_value  # noqa: E402
from seqae.batching import collate, sorted_batches  # noqa: E402

lengths_st = st.lists(st.integers(1, 12), min_size=1, max_size=8)
features_st = st.integers(1, 3)
pad_st = st.one_of(st.just(float("nan")), st.floats(-1e6, 1e6, allow_nan=False),
                   st.just(0.0))
SETTINGS = settings(max_examples=60, deadline=None)


def _seqs(lengths, f, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, f)).astype(np.float32) for n in lengths]


@SETTINGS
@given(lengths_st, features_st, pad_st, st.sampled_from(["post", "pre"]),
       st.integers(0, 5), st.integers(0, 2**16))
def test_pad_then_from_padded_is_exact(lengths, f, value, side, extra, seed):
    arrays = _seqs(lengths, f, seed)
    s = Sequences.from_list(arrays)
    x, lens = s.pad(value=value, side=side, length=max(lengths) + extra)
    assert x.shape == (len(lengths), max(lengths) + extra, f)
    assert lens.tolist() == lengths
    if side == "post":
        back = Sequences.from_padded(x, lengths=lens)
        for a, b in zip(arrays, (back[i] for i in range(len(back))), strict=True):
            np.testing.assert_array_equal(a, b)
    for i, (a, n) in enumerate(zip(arrays, lengths, strict=True)):
        valid = x[i, :n] if side == "post" else x[i, x.shape[1] - n:]
        np.testing.assert_array_equal(valid, a)
        rest = x[i, n:] if side == "post" else x[i, : x.shape[1] - n]
        assert (np.isnan(rest).all() if np.isnan(value) else (rest == value).all())


@SETTINGS
@given(lengths_st, features_st, st.integers(0, 2**16))
def test_keras_masking_rule_round_trip(lengths, f, seed):
    """With a pad value no valid step equals in every feature, the Keras rule finds the
    lengths back, pre- or post-padded."""
    arrays = _seqs(lengths, f, seed)
    s = Sequences.from_list(arrays)
    for side in ("post", "pre"):
        x, _ = s.pad(value=0.37, side=side)
        back = Sequences.from_padded(x, mask_value=0.37, padding=side)
        assert back.lengths.tolist() == lengths
        mask = mask_from_value(torch.from_numpy(x), 0.37)
        assert mask.sum(1).tolist() == lengths


@SETTINGS
@given(lengths_st, features_st, st.integers(0, 2**16), st.integers(1, 5))
def test_collate_matches_a_per_sequence_loop(lengths, f, seed, batch):
    arrays = _seqs(lengths, f, seed)
    s = Sequences.from_list(arrays)
    values = torch.cat([torch.from_numpy(s.values), torch.zeros(1, f)])
    offsets = torch.from_numpy(s.offsets)
    batches = sorted_batches(s.lengths, batch, rng=np.random.default_rng(seed))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for idx in batches:
        x, lens = collate(values, offsets, torch.as_tensor(idx))
        assert lens.tolist() == [lengths[i] for i in idx]
        m = lengths_to_mask(lens, x.shape[1])
        for row, i in enumerate(idx):
            np.testing.assert_array_equal(x[row, : lengths[i]].numpy(), arrays[i])
        assert (x[~m] == 0).all()  # padding is exactly zero


@SETTINGS
@given(lengths_st, features_st, st.integers(0, 2**16))
def test_take_and_with_values_keep_every_sequence(lengths, f, seed):
    arrays = _seqs(lengths, f, seed)
    s = Sequences.from_list(arrays, ids=[f"s{i}" for i in range(len(arrays))])
    perm = np.random.default_rng(seed).permutation(len(arrays))
    t = s.take(perm)
    assert t.lengths.tolist() == [lengths[i] for i in perm]
    assert list(t.ids) == [f"s{i}" for i in perm]
    for j, i in enumerate(perm):
        np.testing.assert_array_equal(t[j], arrays[i])
    doubled = s.with_values(s.values * 2)
    np.testing.assert_array_equal(doubled.offsets, s.offsets)
