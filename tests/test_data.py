import numpy as np
import pyarrow as pa
import pytest

import seqae
from seqae import SequenceDataError, Sequences

# Seed 002's padded input (pad value 0.37).
P = 0.37
SEED002 = np.array(
    [
        [[1.0, 1.0], [2, 2.0], [1.0, 1.0], [P, P], [P, P]],
        [[P, P], [1.0, 1.0], [2, 2.0], [1.0, 1.0], [P, P]],
    ]
)


def test_from_list_layout_and_roundtrip(rng):
    arrays = [rng.normal(size=(n, 3)) for n in (4, 1, 7)]
    s = Sequences.from_list(arrays, ids=["a", "b", "c"])
    assert len(s) == 3
    assert s.lengths.tolist() == [4, 1, 7]
    assert s.offsets.tolist() == [0, 4, 5, 12]
    assert s.values.dtype == np.float32 and s.values.shape == (12, 3)
    for a, b in zip(arrays, s, strict=True):
        np.testing.assert_allclose(b, a.astype(np.float32))
    assert s.ids.tolist() == ["a", "b", "c"]
    sub = s[[2, 0]]
    assert sub.ids.tolist() == ["c", "a"]
    np.testing.assert_array_equal(sub[0], s[2])
    np.testing.assert_array_equal(s[-1], s[2])
    assert s[1:].lengths.tolist() == [1, 7]
    assert s[np.array([True, False, True])].lengths.tolist() == [4, 7]


def test_from_list_kinds():
    uni = Sequences.from_list([np.arange(3.0), np.arange(5.0)])
    assert not uni.is_tokens and uni.n_features == 1 and uni.values.shape == (8, 1)
    tok = Sequences.from_list([np.array([1, 2, 3]), np.array([4])])
    assert tok.is_tokens and tok.values.dtype == np.int64 and tok.lengths.tolist() == [3, 1]
    ints2d = Sequences.from_list([np.ones((2, 2), dtype=int)])
    assert not ints2d.is_tokens and ints2d.values.dtype == np.float32


def test_errors_name_the_sequence():
    with pytest.raises(SequenceDataError, match=r"sequence 1 has length 0") as e:
        Sequences.from_list([np.ones((2, 2)), np.ones((0, 2))])
    assert e.value.index == 1
    with pytest.raises(SequenceDataError, match=r"sequence 2 has 3 features but sequence 0 has 2"):
        Sequences.from_list([np.ones((2, 2)), np.ones((3, 2)), np.ones((3, 3))])
    bad = np.ones((4, 2))
    bad[2, 1] = np.nan
    with pytest.raises(SequenceDataError, match=r"sequence 1 \(id 'b'\) has a NaN .* step 2, "
                       "feature 1"):
        Sequences.from_list([np.ones((2, 2)), bad], ids=["a", "b"])
    inf = np.ones((3, 1))
    inf[0] = np.inf
    with pytest.raises(SequenceDataError, match="sequence 0 has a NaN or infinite value at step 0"):
        Sequences.from_list([inf])
    with pytest.raises(SequenceDataError, match="negative token"):
        Sequences.from_list([np.array([1, -2])])
    with pytest.raises(SequenceDataError, match=r"shape \(2, 2, 2\)"):
        Sequences.from_list([np.ones((2, 2, 2))])


def test_from_padded_lengths_ignores_whatever_is_in_padding():
    x = np.full((3, 5, 2), np.nan, dtype=np.float32)
    x[0, :2] = 1
    x[1, :5] = 2
    x[2, :1] = 3
    s = Sequences.from_padded(x, lengths=[2, 5, 1])
    assert s.lengths.tolist() == [2, 5, 1]
    assert np.isfinite(s.values).all()
    np.testing.assert_array_equal(s[2], [[3, 3]])
    pre = np.zeros((2, 4, 1))
    pre[0, 1:, 0] = [1, 2, 3]
    pre[1, 3:, 0] = [9]
    s = Sequences.from_padded(pre, lengths=[3, 1], padding="pre")
    assert s[0].ravel().tolist() == [1, 2, 3] and s[1].ravel().tolist() == [9]


def test_from_padded_bad_lengths():
    x = np.zeros((2, 3, 1))
    with pytest.raises(SequenceDataError, match=r"sequence 1 has length 4, outside 1\.\.3"):
        Sequences.from_padded(x, lengths=[3, 4])
    with pytest.raises(SequenceDataError, match=r"sequence 0 has length 0"):
        Sequences.from_padded(x, lengths=[0, 1])
    with pytest.raises(ValueError, match="not both"):
        Sequences.from_padded(x, lengths=[1, 1], mask_value=0.0)


def test_from_padded_mask_value_keras_rule_post():
    s = Sequences.from_padded(SEED002, mask_value=P, padding="post")
    # Row 1's leading all-0.37 step is inside the data for post padding: kept as data.
    assert s.lengths.tolist() == [3, 4]
    np.testing.assert_allclose(s[0], SEED002[0, :3])
    np.testing.assert_allclose(s[1], SEED002[1, :4])


def test_from_padded_mask_value_keras_rule_pre_and_partial_matches():
    x = np.array(
        [
            [[P, P], [P, P], [1.0, 2.0], [P, 2.0]],  # [0.37, 2] matches partly: data
            [[P, P], [P, 5.0], [P, P], [3.0, 3.0]],  # inner all-0.37 step is data
        ]
    )
    s = Sequences.from_padded(x, mask_value=P, padding="pre")
    assert s.lengths.tolist() == [2, 3]
    np.testing.assert_allclose(s[0], [[1.0, 2.0], [P, 2.0]])
    np.testing.assert_allclose(s[1], [[P, 5.0], [P, P], [3.0, 3.0]])
    post = np.array([[[1.0, P], [P, P]], [[P, 1.0], [0.0, 0.0]]])
    s = Sequences.from_padded(post, mask_value=P)
    assert s.lengths.tolist() == [1, 2]  # [0, 0] is data: only the pad value pads


def test_from_padded_mask_value_nan_and_all_padding():
    x = np.array([[[1.0], [np.nan]], [[np.nan], [np.nan]]])
    with pytest.raises(SequenceDataError, match="sequence 1 is padding only"):
        Sequences.from_padded(x, mask_value=np.nan)
    s = Sequences.from_padded(x[:1], mask_value=np.nan)
    assert s.lengths.tolist() == [1]


def test_pad_post_and_pre_match_a_loop(rng):
    arrays = [rng.normal(size=(n, 2)).astype(np.float32) for n in (3, 1, 5)]
    s = Sequences.from_list(arrays)
    for side in ("post", "pre"):
        x, lengths = s.pad(value=-7.0, side=side, length=6)
        assert x.shape == (3, 6, 2) and lengths.tolist() == [3, 1, 5]
        for b, a in enumerate(arrays):
            ref = np.full((6, 2), -7.0, np.float32)
            if side == "post":
                ref[: len(a)] = a
            else:
                ref[6 - len(a) :] = a
            np.testing.assert_array_equal(x[b], ref)
    back = Sequences.from_padded(*s.pad(value=np.nan))
    np.testing.assert_array_equal(back.values, s.values)
    with pytest.raises(ValueError, match="shorter than the longest"):
        s.pad(length=4)


def test_feature_stats_over_valid_steps_only(rng):
    arrays = [rng.normal(loc=3, scale=2, size=(n, 2)) for n in (2, 9, 4)]
    s = Sequences.from_list(arrays)
    mean, std = s.feature_stats()
    ref = np.concatenate(arrays)
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, ref.std(0), rtol=1e-5)
    flat = Sequences.from_list([np.full((3, 1), 5.0)])
    m, sd = flat.feature_stats()
    assert m.tolist() == [5.0] and sd.tolist() == [1.0]  # constant feature: not divided by 0


def test_sequence_stats_match_a_per_sequence_loop(rng):
    arrays = [rng.normal(loc=rng.normal(0, 50), scale=10.0 ** rng.uniform(-3, 3), size=(n, 2))
              for n in (1, 2, 9, 4, 30)]
    arrays.append(np.column_stack([np.full(5, 7.0), np.arange(5.0)]))  # one flat feature
    s = Sequences.from_list(arrays)
    mean, std = s.sequence_stats()
    assert mean.shape == std.shape == (len(arrays), 2)
    for i in range(len(arrays)):
        a = s[i].astype(np.float64)  # the float32 values the Sequences hold
        np.testing.assert_allclose(mean[i], a.mean(0), rtol=1e-6, atol=1e-6)
        ref = a.std(0)
        ref = np.where(ref > 0, ref, 1.0)  # length 1 / constant: std 1, not 0
        np.testing.assert_allclose(std[i], ref, rtol=1e-5)
    assert s.step_index.tolist() == np.repeat(np.arange(len(arrays)), s.lengths).tolist()
    with pytest.raises(TypeError):
        Sequences.from_list([np.array([1, 2, 3])]).sequence_stats()


def _long_table():
    # Rows deliberately out of order; ids are strings, first seen order: s2, s1.
    return pa.table(
        {
            "sid": ["s2", "s1", "s2", "s1", "s2"],
            "t": [2, 10, 0, 5, 1],
            "a": [2.0, 11.0, 0.0, 10.0, 1.0],
            "b": [20, 110, 0, 100, 10],
            "label": ["x", "y", "x", "y", "x"],
        }
    )


def test_from_table_sorts_by_time_and_keeps_id_type():
    s = Sequences.from_table(_long_table(), id="sid", time="t")
    assert s.ids.tolist() == ["s2", "s1"]
    assert s.feature_names == ["a", "b"]  # numeric columns other than id/time
    np.testing.assert_array_equal(s[0], [[0, 0], [1, 10], [2, 20]])
    np.testing.assert_array_equal(s[1], [[10, 100], [11, 110]])
    only_a = Sequences.from_table(_long_table(), id="sid", time="t", features=["a"])
    assert only_a.n_features == 1


def test_from_table_errors_name_the_id():
    t = _long_table()
    with pytest.raises(SequenceDataError, match=r"^no id column 'nope'; its columns are "
                                                r"\['sid', 't', 'a', 'b', 'label'\]$"):
        Sequences.from_table(t, id="nope")
    with pytest.raises(SequenceDataError, match=r"^no feature column 'c'; its columns"):
        Sequences.from_table(t, id="sid", features=["a", "c"])
    dup = t.set_column(1, "t", pa.array([2, 10, 2, 5, 1]))
    with pytest.raises(SequenceDataError, match=r"id 's2'\) has two rows at t=2"):
        Sequences.from_table(dup, id="sid", time="t")
    nan = t.set_column(2, "a", pa.array([2.0, None, 0.0, 10.0, 1.0]))
    with pytest.raises(SequenceDataError, match=r"id 's1'\) has a NaN .* feature a"):
        Sequences.from_table(nan, id="sid", time="t")


def test_from_table_pandas():
    pytest.importorskip("pandas")
    df = _long_table().to_pandas()
    s = Sequences.from_table(df, id="sid", time="t")
    assert s.lengths.tolist() == [3, 2]


def test_concat_and_with_values(rng):
    a = Sequences.from_list([np.ones((2, 1)), np.zeros((3, 1))], ids=[1, 2])
    b = Sequences.from_list([np.full((1, 1), 5.0)], ids=[3])
    c = Sequences.concat([a, b])
    assert c.lengths.tolist() == [2, 3, 1] and c.ids.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(c[2], [[5.0]])
    w = c.with_values(c.values * 2)
    assert w.ids.tolist() == [1, 2, 3] and w[2].tolist() == [[10.0]]
    assert "n=3" in repr(c)


def test_public_api_names():
    for name in ["Sequences", "SequenceAutoencoder", "lengths_to_mask", "mask_from_value",
                 "clone", "SequenceDataError", "Scaler", "scaling"]:
        assert name in seqae.__all__ and hasattr(seqae, name)
    assert seqae.Scaler is seqae.scaling.Scaler
    for name in ["ConvEncoder", "RNNEncoder", "AutoencoderNet"]:  # issue 11's blocks
        assert name in seqae.nn.__all__ and hasattr(seqae.nn, name)
    assert "info_nce" in seqae.losses.__all__
