"""The length policy (seqae.lengths): max_len and refuse / truncate / window, against
per-piece references computed by hand, the merge and stitch of pieces, and peak memory
bounded with the window policy."""

import os
import subprocess
import sys

import numpy as np
import pytest

import seqae
from seqae.errors import SequenceDataError
from seqae.lengths import LengthPolicy, limit_lengths

FAST = dict(latent_dim=3, hidden_size=8, batch_size=8, max_epochs=2, verbose=0,
            encoder="rnn")


def _data():
    rng = np.random.default_rng(0)
    lengths = [5, 23, 9, 40, 12]
    return seqae.Sequences.from_list([rng.normal(size=(n, 2)).astype(np.float32)
                                      for n in lengths], ids=list("abcde"))


def test_refuse_names_the_sequence_and_its_length():
    with pytest.raises(SequenceDataError, match=r"sequence 1 \(id 'b'\) has 23 steps, more "
                                                 r"than max_len=20.*'truncate'.*'window'"):
        seqae.SequenceAutoencoder(max_len=20, **FAST).fit(_data())


def test_windows_are_consecutive_near_equal_slices():
    s = _data()
    w, owner = limit_lengths(s, 10, "window")
    assert owner.tolist() == [0, 1, 1, 1, 2, 3, 3, 3, 3, 4, 4]
    assert w.lengths.tolist() == [5, 8, 8, 7, 9, 10, 10, 10, 10, 6, 6]
    np.testing.assert_array_equal(w.values, s.values)  # same steps, same order
    t, none = limit_lengths(s, 10, "truncate")
    assert none is None and t.lengths.tolist() == [5, 10, 9, 10, 10]
    for i in range(len(s)):
        np.testing.assert_array_equal(t[i], s[i][:10])


def test_window_policy_puts_results_back_together():
    s = _data()
    ae = seqae.SequenceAutoencoder(max_len=10, max_len_policy="window", **FAST).fit(s)
    assert ae.max_length_ <= 10  # trained on windows
    w, owner = limit_lengths(s, 10, "window")
    Zw, scores_w = ae.encode(w), ae.score(w)  # the windows as sequences of their own
    Z, scores, rec = ae.encode(s), ae.score(s), ae.reconstruct(s)
    recw = ae.reconstruct(w)
    for i in range(len(s)):
        mine = owner == i
        wl = w.lengths[mine].astype(float)
        np.testing.assert_allclose(Z[i], (Zw[mine] * wl[:, None]).sum(0) / wl.sum(),
                                   rtol=1e-5, atol=1e-6)
        assert scores[i] == pytest.approx((scores_w[mine] * wl).sum() / wl.sum(), rel=1e-6)
        np.testing.assert_allclose(rec[i], np.concatenate([recw[j] for j in
                                                           np.flatnonzero(mine)]), rtol=1e-6)
    assert rec.lengths.tolist() == s.lengths.tolist()  # every step, stitched
    assert list(rec.ids) == list("abcde")


def test_truncate_policy_keeps_the_first_steps():
    s = _data()
    ae = seqae.SequenceAutoencoder(max_len=10, max_len_policy="truncate", **FAST).fit(s)
    t, _ = limit_lengths(s, 10, "truncate")
    np.testing.assert_allclose(ae.encode(s), ae.encode(t), rtol=1e-6)
    assert ae.reconstruct(s).lengths.tolist() == [5, 10, 9, 10, 10]
    with pytest.raises(ValueError, match="max_len_policy must be one of"):
        seqae.SequenceAutoencoder(max_len=10, max_len_policy="cut", **FAST).fit(s)


CODE = """
import resource, sys, numpy as np, seqae
n = int(sys.argv[1])
rng = np.random.default_rng(0)
seqs = seqae.Sequences.from_list([np.cumsum(rng.normal(size=(n, 1)), 0).astype(np.float32)]
                                 + [rng.normal(size=(50, 1)).astype(np.float32)] * 4)
ae = seqae.SequenceAutoencoder(max_len=500, max_len_policy="window", encoder="rnn",
                               hidden_size=16, latent_dim=4, max_epochs=1, verbose=0)
ae.fit(seqs)
assert ae.reconstruct(seqs).lengths[0] == n and np.isfinite(ae.score(seqs)).all()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def test_window_policy_memory_stays_bounded_whatever_the_length():
    """Peak RSS of fit + reconstruct + score: a 200,000-step sequence costs about what a
    20,000-step one does (windows of 500 steps), not ten times the activations."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    peak = {n: float(subprocess.run([sys.executable, "-c", CODE, str(n)], env=env,
                                    capture_output=True, text=True, check=True,
                                    timeout=600).stdout.split()[-1])
            for n in (20_000, 200_000)}
    print(f"peak RSS MB: {peak}")
    assert peak[200_000] < peak[20_000] + 150  # the data itself: 200k floats = 0.8 MB


def test_merge_is_the_length_weighted_mean_of_the_pieces_and_stitch_joins_them():
    s = _data()
    lim = LengthPolicy(10, "window").apply(s)
    rows = np.arange(2 * len(lim.seqs), dtype=np.float64).reshape(-1, 2)  # a row per piece
    merged = lim.merge(rows)
    for i in range(len(s)):  # the reference: a loop over each sequence's pieces
        mine = np.flatnonzero(lim.owner == i)
        w = lim.seqs.lengths[mine].astype(float)
        np.testing.assert_allclose(merged[i], (rows[mine] * w[:, None]).sum(0) / w.sum())
    steps = lim.seqs.with_values(lim.seqs.values * 2)
    back = lim.stitch(steps)
    assert back.lengths.tolist() == s.lengths.tolist() and list(back.ids) == list(s.ids)
    np.testing.assert_array_equal(back.values, s.values * 2)
    same = LengthPolicy(100, "window").apply(s)  # nothing too long: nothing cut
    assert same.owner is None and same.seqs is s
    np.testing.assert_array_equal(same.merge(rows[:5]), rows[:5])


def test_check_lengths_refuses_with_the_callers_name_for_the_sequence():
    policy = LengthPolicy(10, "refuse")
    policy.check_lengths(np.array([3, 10]), lambda i: (f"row {i}", i))  # at the limit: fine
    with pytest.raises(SequenceDataError, match=r"file x, sequence 'q' has 11 steps, more "
                                                 r"than max_len=10"):
        policy.check_lengths(np.array([3, 11]), lambda i: ("file x, sequence 'q'", "q"))
    with pytest.raises(ValueError, match="applies to data in memory"):
        LengthPolicy(10, "window").check_lengths(np.array([3]), lambda i: ("", None))
    LengthPolicy(None, "window").check_lengths(np.array([10**6]), lambda i: ("", None))
    with pytest.raises(ValueError, match="max_len_policy must be one of"):
        LengthPolicy(10, "cut")
