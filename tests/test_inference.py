"""Batched inference (seqae.inference) against the fitted network run on each sequence
alone (torch directly, no batching, no padding) and numpy: latents, scores,
reconstructions and decodings, for continuous values and token ids; results are the same
alone or in a batch, with any padding."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import seqae
from helpers import check_padding_invariance
from seqae import SequenceDataError, Sequences
from seqae.inference import Model, decode, each_batch, encode_score, reconstruct, scatter
from seqae.scaling import Scaler
from seqae.tasks import ContinuousTask
from seqae.vocab import EOS

TINY = dict(latent_dim=3, hidden_size=8, max_epochs=1, batch_size=8, threads=1, verbose=0,
            device="cpu", seed=0)
ATOL = 1e-5


def _data(rng, n, lo=1, hi=12) -> Sequences:
    lengths = rng.integers(lo, hi, size=n)
    lengths[:2] = 1  # length 1 is always among them
    return Sequences.from_list([(rng.normal(size=(k, 2)) * [2.0, 0.5] + [3.0, -1.0])
                                .astype(np.float32) for k in lengths])


@pytest.fixture(scope="module")
def ae():
    rng = np.random.default_rng(1)
    return seqae.SequenceAutoencoder(normalize="global", **TINY).fit(_data(rng, 24))


@pytest.fixture(scope="module")
def seqs():
    # more than one inference batch (max(4 * batch_size, 64) = 64 sequences)
    return _data(np.random.default_rng(2), 150)


@pytest.fixture(scope="module")
def model(ae):
    return Model(ae.module_, ae.task_, ae.batch_size, 1)


@pytest.fixture(scope="module")
def token_ae():
    rng = np.random.default_rng(3)
    data = Sequences.from_list([rng.integers(4, 10, size=k) for k in rng.integers(1, 9, 24)])
    return seqae.SequenceAutoencoder(**TINY).fit(data)


def _alone(ae, s: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence in model units as a batch of one, no padding."""
    x = ae.scaler_.transform(Sequences.from_list([s]))[0].values
    return torch.from_numpy(x)[None], torch.tensor([len(s)])


# ------------------------------------------------------------------ encode and score
def test_latents_equal_the_network_run_on_each_sequence_alone(ae, model, seqs):
    Z, scores = encode_score(model, seqs, latents=True)
    assert scores is None and Z.shape == (150, 3) and Z.dtype == np.float32
    with torch.no_grad():
        for i, s in enumerate(seqs):
            ref = ae.module_.encode(*_alone(ae, s))[0].numpy()
            np.testing.assert_allclose(Z[i], ref, rtol=0, atol=ATOL)


def test_scores_are_the_numpy_mse_of_the_reconstruction_in_the_input_units(model, seqs):
    Z, scores = encode_score(model, seqs, scores=True)
    assert Z is None and scores.shape == (150,) and scores.dtype == np.float64
    rec = reconstruct(model, seqs)
    ref = [np.mean((r.astype(np.float64) - s) ** 2) for r, s in zip(rec, seqs, strict=True)]
    np.testing.assert_allclose(scores, ref, rtol=1e-5, atol=ATOL)
    Z2, scores2 = encode_score(model, seqs, latents=True, scores=True)  # one pass, both
    np.testing.assert_array_equal(scores2, scores)
    np.testing.assert_array_equal(Z2, encode_score(model, seqs, latents=True)[0])


def test_sequence_mode_scores_in_each_sequences_standardised_units(ae, seqs):
    task = ContinuousTask(Scaler("sequence"), 2, None).fit(
        lambda: 0, lambda: (np.zeros(2), np.ones(2), np.ones((2, 2))))
    model = Model(ae.module_, task, ae.batch_size, 1)
    scores = encode_score(model, seqs, scores=True)[1]
    rec = reconstruct(model, seqs)
    for i, (r, s) in enumerate(zip(rec, seqs, strict=True)):
        s64 = s.astype(np.float64)
        m, d = s64.mean(axis=0), s64.std(axis=0)
        d[d == 0] = 1.0
        # the reconstruction comes back in the input's units, the score does not
        with torch.no_grad():
            x = torch.from_numpy(((s64 - m) / d).astype(np.float32))[None]
            y = ae.module_.reconstruct(x, torch.tensor([len(s)]))[0].numpy()
        np.testing.assert_allclose(r, y * d + m, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(scores[i], np.mean((y - (s64 - m) / d) ** 2), rtol=1e-5,
                                   atol=ATOL)


def test_token_scores_are_each_sequences_cross_entropy_per_token_and_eos(token_ae):
    rng = np.random.default_rng(4)
    seqs = Sequences.from_list([rng.integers(4, 10, size=k) for k in (1, 5, 3, 8, 1, 2)])
    model = Model(token_ae.module_, token_ae.task_, token_ae.batch_size, 1)
    Z, scores = encode_score(model, seqs, latents=True, scores=True)
    net = token_ae.module_
    with torch.no_grad():
        for i, s in enumerate(seqs):
            x, lens = torch.from_numpy(s)[None], torch.tensor([len(s)])
            logits, z = net(x, lens)  # (1, T + 1, V): the tokens, then EOS
            target = torch.cat([x[0], torch.tensor([EOS])])
            ref = F.cross_entropy(logits[0], target).item()
            assert scores[i] == pytest.approx(ref, rel=1e-5, abs=ATOL)
            np.testing.assert_allclose(Z[i], z[0].numpy(), atol=ATOL)


def test_encode_and_reconstruct_are_padding_invariant(model):
    rng = np.random.default_rng(5)
    arrays = [(rng.normal(size=(k, 2)) * [2.0, 0.5] + [3.0, -1.0]).astype(np.float32)
              for k in (1, 6, 3, 9, 1, 4)]

    def latents(x, lens):
        seqs = Sequences.from_padded(x.numpy(), lens.numpy())
        return torch.from_numpy(encode_score(model, seqs, latents=True)[0])

    def rebuilt(x, lens):
        seqs = Sequences.from_padded(x.numpy(), lens.numpy())
        out, _ = reconstruct(model, seqs).pad(0.0, length=x.shape[1])
        return torch.from_numpy(out)

    def scores(x, lens):
        seqs = Sequences.from_padded(x.numpy(), lens.numpy())
        return torch.from_numpy(encode_score(model, seqs, scores=True)[1])[:, None]

    assert check_padding_invariance(latents, arrays) <= ATOL
    assert check_padding_invariance(rebuilt, arrays) <= ATOL
    assert check_padding_invariance(scores, arrays) <= ATOL


# ------------------------------------------------------------------ reconstruct
def test_reconstruct_equals_the_network_alone_in_the_input_units(ae, model, seqs):
    rec = reconstruct(model, seqs)
    np.testing.assert_array_equal(rec.lengths, seqs.lengths)
    mean, std = ae.scaler_.mean_, ae.scaler_.std_
    with torch.no_grad():
        for r, s in zip(rec, seqs, strict=True):
            y = ae.module_.reconstruct(*_alone(ae, s))[0].numpy()
            np.testing.assert_allclose(r, y * std + mean, rtol=1e-5, atol=1e-4)


def test_reconstruct_keeps_ids_and_refuses_other_features(model):
    seqs = Sequences.from_list([np.ones((3, 2), np.float32), np.zeros((1, 2), np.float32)],
                               ids=["x", "y"], feature_names=["a", "b"])
    rec = reconstruct(model, seqs)
    assert rec.ids.tolist() == ["x", "y"] and rec.feature_names == ["a", "b"]
    with pytest.raises(SequenceDataError, match="fitted on 2 features; the data have 3"):
        reconstruct(model, Sequences.from_list([np.ones((3, 3), np.float32)]))


# ------------------------------------------------------------------ decode
def test_decode_at_given_lengths_equals_the_decoder_alone(ae, model):
    Z = np.random.default_rng(6).normal(size=(2, 3)).astype(np.float32)
    out = decode(model, Z, [1, 5], 50, ["a", "b"])
    np.testing.assert_array_equal(out.lengths, [1, 5])
    assert out.feature_names == ["a", "b"]
    mean, std = ae.scaler_.mean_, ae.scaler_.std_
    with torch.no_grad():
        for z, n, got in zip(Z, [1, 5], out, strict=True):
            y = ae.module_.decode(torch.from_numpy(z)[None], torch.tensor([n]))[0].numpy()
            np.testing.assert_allclose(got, y * std + mean, rtol=1e-5, atol=1e-4)
    same = decode(model, Z, 4, 50, None)  # an int: every output that long
    np.testing.assert_array_equal(same.lengths, [4, 4])


def test_decode_without_lengths_takes_the_length_heads(ae, model):
    Z = np.random.default_rng(7).normal(size=(5, 3)).astype(np.float32)
    out = decode(model, Z, None, 50, None)
    with torch.no_grad():
        ref = ae.module_.length_head.predict(torch.from_numpy(Z)).numpy()
    np.testing.assert_array_equal(out.lengths, ref)


def test_decode_refuses_a_length_below_one_naming_the_sequence_and_z_of_the_wrong_width(
        model):
    Z = np.zeros((3, 3), np.float32)
    with pytest.raises(SequenceDataError, match="requested length 0 for sequence 1") as e:
        decode(model, Z, [2, 0, 3], 50, None)
    assert e.value.index == 1
    with pytest.raises(SequenceDataError, match="requested length -2 for sequence 0"):
        decode(model, Z, -2, 50, None)
    with pytest.raises(ValueError, match=r"Z must be \(N, 3\), got \(3, 4\)"):
        decode(model, np.zeros((3, 4)), 2, 50, None)
    with pytest.raises(ValueError, match=r"Z must be \(N, 3\), got \(3,\)"):
        decode(model, np.zeros(3), 2, 50, None)
    with pytest.raises(ValueError, match=r"one length per vector \(3\), got 2"):
        decode(model, Z, [2, 3], 50, None)
    with pytest.raises(ValueError, match=r"whole numbers, got \[1.7, 2.0, 3.0\]"):
        decode(model, Z, [1.7, 2.0, 3.0], 50, None)
    with pytest.raises(ValueError, match="whole numbers"):
        decode(model, Z, [True, True, True], 50, None)
    assert decode(model, Z, np.array([2.0, 1.0, 4.0]), 50, None).lengths.tolist() == [2, 1, 4]


def test_token_decode_at_lengths_and_to_eos_equals_the_network(token_ae):
    model = Model(token_ae.module_, token_ae.task_, token_ae.batch_size, 1)
    net = token_ae.module_
    Z = np.random.default_rng(8).normal(size=(4, 3)).astype(np.float32)
    out = decode(model, Z, [1, 5, 2, 7], 20, None)
    assert out.is_tokens and out.lengths.tolist() == [1, 5, 2, 7]
    assert EOS not in out.values  # no end before the length asked for
    free = decode(model, Z, None, 6, None)
    with torch.no_grad():
        for i, n in enumerate([1, 5, 2, 7]):
            ref = net.decode(torch.from_numpy(Z[i : i + 1]), torch.tensor([n]))[0].numpy()
            np.testing.assert_array_equal(out[i], ref)
        tok, lens = net.generate(torch.from_numpy(Z), 6)
    assert free.lengths.tolist() == lens.tolist() and free.lengths.max() <= 6
    for i, k in enumerate(lens.tolist()):
        np.testing.assert_array_equal(free[i], tok[i, :k].numpy())


# ------------------------------------------------------------------ the loop itself
def test_scatter_writes_the_valid_steps_of_a_batch_by_hand():
    out = np.full((7, 2), -1.0)  # sequences of 3, 1 and 3 steps
    offsets = np.array([0, 3, 4, 7])
    y = np.arange(16.0).reshape(2, 4, 2)  # rows for sequences 2 and 0, padded to 4
    scatter(out, offsets, np.array([2, 0]), y, [3, 2])
    expected = np.array([[8, 9], [10, 11], [-1, -1],  # sequence 0: y[1, :2]
                         [-1, -1],  # sequence 1: not in the batch
                         [0, 1], [2, 3], [4, 5]], dtype=float)  # sequence 2: y[0, :3]
    np.testing.assert_array_equal(out, expected)


def test_each_batch_visits_every_sequence_once_in_model_units(ae, model, seqs):
    seen, threads = [], set()
    mean, std = ae.scaler_.mean_, ae.scaler_.std_

    def fn(idx, x, lens):
        threads.add(torch.get_num_threads())
        assert not torch.is_grad_enabled()
        seen.append(np.asarray(idx))
        np.testing.assert_array_equal(lens.numpy(), seqs.lengths[idx])
        for b, i in enumerate(idx):
            s = seqs[int(i)]
            np.testing.assert_allclose(x[b, : len(s)].numpy(), (s - mean) / std, rtol=1e-5,
                                       atol=1e-5)

    model.net.train()
    stats = each_batch(model, seqs, fn)
    assert not model.net.training  # inference runs in eval mode
    assert len(seen) == 3  # 150 sequences, 64 a batch
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(150))
    assert threads == {1}
    np.testing.assert_array_equal(stats[0], np.broadcast_to(mean, (150, 2)))
    np.testing.assert_array_equal(stats[1], np.broadcast_to(std, (150, 2)))


def test_each_batch_checks_the_data_before_any_batch():
    calls = []
    model = Model(torch.nn.Linear(1, 1), seqae.tasks.TokenTask(6), 8, 1)
    with pytest.raises(SequenceDataError, match="has token 7 at step 2"):
        each_batch(model, Sequences.from_list([np.array([4, 5, 7])]), calls.append)
    assert calls == []


def test_model_batch_size_and_device(ae):
    assert Model(ae.module_, ae.task_, 8, 1).batch == 64
    assert Model(ae.module_, ae.task_, 32, None).batch == 128
    assert Model(ae.module_, ae.task_, 8, 1).device == torch.device("cpu")


# ------------------------------------------------------------------ on a GPU's terms
class _GpuBatches(Model):
    """`Model` batching as on a GPU (a budget of padded steps, here small enough for
    batches of many shapes), on the CPU."""

    def batches(self, lengths):
        from seqae.batching import sorted_batches

        return sorted_batches(lengths, self.batch, "tokens", max_tokens=300)


def test_gpu_batching_and_outputs_gathered_at_the_end_give_the_same_results(ae, model,
                                                                             seqs):
    """Issue 27 item 3 on the CPU: batches by a budget of padded steps (sizes from 32 to
    150 here, unlike the 64 of the CPU rule), outputs kept as tensors until the end and
    then put in the input's order: the same latents, scores, reconstructions and
    decodings as the CPU's batching, within float rounding (other batches, other sums),
    and every input read from the device once per output, not once per batch."""
    from test_train import _HostReads

    gpu = _GpuBatches(ae.module_, ae.task_, ae.batch_size, 1)
    sizes = {len(b) for b in gpu.batches(seqs.lengths)}
    assert len(sizes) > 2 and len(gpu.batches(seqs.lengths)) > 3
    with _HostReads() as reads:
        Z, sc = encode_score(gpu, seqs, latents=True, scores=True)
        rec = reconstruct(gpu, seqs)
    Z_ref, sc_ref = encode_score(model, seqs, latents=True, scores=True)
    np.testing.assert_allclose(Z, Z_ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(sc, sc_ref, rtol=1e-4)
    np.testing.assert_allclose(rec.values, reconstruct(model, seqs).values, atol=1e-4)
    # latents, scores, reconstructions: one copy to the host each (the CPU's checks of
    # lengths and crops, which read nothing on a GPU, are not counted)
    assert reads.calls.count("cpu") == 3, reads.calls
    lens = np.random.default_rng(8).integers(1, 30, 100)
    Zd = np.random.default_rng(9).normal(size=(100, 3)).astype(np.float32)
    got, want = decode(gpu, Zd, lens, 50, None), decode(model, Zd, lens, 50, None)
    np.testing.assert_array_equal(got.lengths, lens)
    np.testing.assert_allclose(got.values, want.values, atol=1e-4)
