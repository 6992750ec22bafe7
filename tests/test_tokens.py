"""Token sequences: vocabulary, embedding + softmax model, autoregressive decoding."""

import numpy as np
import pytest
import torch

import seqae
from helpers import check_padding_invariance
from seqae import SequenceAutoencoder, SequenceDataError, Sequences
from seqae.nn import AutoencoderNet, ModelConfig
from seqae.nn.decoders import AutoregressiveDecoder
from seqae.vocab import BOS, EOS, PAD, UNK, CharVocab

WORDS = ["cat", "dog", "bird", "a", "zebra", "at", "tac", "god", "do", "go", "cab", "dab",
         "bad", "bat", "tab", "rat", "art", "tar", "car", "arc"]


def test_vocab_roundtrip_and_reserved_ids():
    v = CharVocab.from_texts(WORDS)
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert len(v) == 4 + len(set("".join(WORDS)))
    seqs = v.encode(WORDS)
    assert seqs.is_tokens and seqs.lengths.tolist() == [len(w) for w in WORDS]
    assert seqs.values.min() >= 4
    assert v.decode(seqs) == WORDS
    assert v.decode([np.array([v.encode(["ab"])[0][0], EOS, 9, 9])]) == ["a"]  # stops at EOS
    assert CharVocab.from_dict(v.to_dict()).chars == v.chars
    # frequency order does not depend on the order of the texts
    assert CharVocab.from_texts(WORDS[::-1]).chars == v.chars


def test_vocab_errors_and_unknown_mapping():
    v = CharVocab.from_texts(["abc"])
    with pytest.raises(SequenceDataError, match=r"text 1 \('abz'\) has character 'z'"):
        v.encode(["ab", "abz"])
    mapped = v.encode(["abz"], unknown="map")
    assert mapped[0][-1] == UNK and v.decode(mapped) == ["ab?"]
    with pytest.raises(SequenceDataError, match="text 0 is empty"):
        v.encode([""])


def _tokens(rng, lengths, vocab=12):
    return [rng.integers(4, vocab, size=n) for n in lengths]


def _pad_tokens(seqs, t, value):
    x = np.full((len(seqs), t), value, dtype=np.int64)
    for b, s in enumerate(seqs):
        x[b, : len(s)] = s
    return torch.from_numpy(x), torch.tensor([len(s) for s in seqs])


@pytest.mark.parametrize("decoder", ["repeat", "autoregressive"])
def test_token_model_padding_invariance(rng, decoder):
    net = AutoencoderNet(ModelConfig(1, latent_dim=4, hidden_size=8, decoder=decoder,
                                     vocab_size=12)).eval()
    seqs = _tokens(rng, [1, 5, 3, 7])
    with torch.no_grad():
        ref = [net(*_pad_tokens([s], len(s), 0)) for s in seqs]
        for t, fill in [(7, 0), (11, 9999), (9, -5)]:  # padding may hold anything
            x, lens = _pad_tokens(seqs, t, fill)
            logits, z = net(x, lens)
            assert logits.shape == (4, t + 1, 12)
            for b, s in enumerate(seqs):
                n = len(s) + 1  # the tokens and the EOS
                torch.testing.assert_close(z[b], ref[b][1][0], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(logits[b, :n], ref[b][0][0, :n], atol=1e-5,
                                           rtol=1e-5)
                assert (logits[b, n:] == 0).all()


def test_continuous_autoregressive_padding_invariance(rng):
    net = AutoencoderNet(ModelConfig(3, latent_dim=4, hidden_size=6,
                                     decoder="autoregressive")).eval()
    seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in [1, 6, 3, 9]]
    check_padding_invariance(lambda x, lens: net(x, lens)[0], seqs)  # teacher forcing
    check_padding_invariance(lambda x, lens: net.reconstruct(x, lens), seqs)  # free running


def test_teacher_forcing_shifts_by_one_step():
    """Decoder input at step t is the target of step t - 1 (BOS first): changing the last
    token changes no earlier output, and the first output depends only on z."""
    dec = AutoregressiveDecoder(3, 8, 10, cell="gru", tokens=True).eval()
    z = torch.randn(1, 3)
    prev = torch.tensor([[BOS, 5, 6, 7]])
    other = torch.tensor([[BOS, 5, 6, 9]])
    lens = torch.tensor([4])
    with torch.no_grad():
        a, b = dec(z, prev, lens), dec(z, other, lens)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3], b[:, 3])


def test_greedy_generation_matches_a_step_by_step_loop():
    """Batched free-running decoding equals decoding each row alone with teacher forcing
    on its own previous argmax (an independent per-sequence reference)."""
    torch.manual_seed(1)
    dec = AutoregressiveDecoder(3, 8, 10, cell="lstm", tokens=True).eval()
    z = torch.randn(5, 3)
    with torch.no_grad():
        tok, lens = dec.generate(z, max_len=6)
        for b in range(5):
            seq = [BOS]
            for _ in range(6):
                logits = dec(z[b : b + 1], torch.tensor([seq]), torch.tensor([len(seq)]))
                nxt = int(logits[0, -1].argmax())
                if nxt == EOS:
                    break
                seq.append(nxt)
            got = tok[b, : lens[b]].tolist()
            assert got == seq[1:] or (len(seq) == 1 and lens[b] == 1 and got == [PAD])
        forced, flens = dec.generate(z, 0, lengths=torch.tensor([1, 4, 2, 6, 3]))
        assert flens.tolist() == [1, 4, 2, 6, 3]
        for b, n in enumerate(flens.tolist()):
            assert (forced[b, :n] != EOS).all() and (forced[b, n:] == PAD).all()


@pytest.fixture(scope="module")
def word_model():
    ae = SequenceAutoencoder(decoder="autoregressive", cell="gru", latent_dim=16,
                             hidden_size=32, max_epochs=60, validation_fraction=0,
                             batch_size=8, lr=1e-2, seed=0)
    return ae.fit(WORDS)


def test_text_autoencoder_learns_its_words(word_model):
    ae = word_model
    assert isinstance(ae.vocab_, CharVocab)
    rec = ae.reconstruct(WORDS)
    assert isinstance(rec, list) and [len(r) for r in rec] == [len(w) for w in WORDS]
    assert np.mean([a == b for a, b in zip(rec, WORDS, strict=True)]) >= 0.9
    free = ae.vocab_.decode(ae.decode(ae.encode(WORDS)))  # lengths chosen by EOS
    assert np.mean([a == b for a, b in zip(free, WORDS, strict=True)]) >= 0.9
    fixed = ae.decode(ae.encode(WORDS[:3]), lengths=[6, 1, 2])
    assert fixed.lengths.tolist() == [6, 1, 2]


def test_token_scores_are_per_token_cross_entropy(word_model):
    ae = word_model
    seqs = ae.vocab_.encode(WORDS)
    scores = ae.score(WORDS)
    # independent reference: teacher-forced logits, one word at a time
    for i in range(3):
        x = torch.from_numpy(seqs[i])[None]
        with torch.no_grad():
            logits, _ = ae.module_(x, torch.tensor([len(seqs[i])]))
        target = list(seqs[i]) + [EOS]
        logp = torch.log_softmax(logits[0], -1)
        ref = -np.mean([float(logp[t, k]) for t, k in enumerate(target)])
        # float32 log-probabilities near 0 carry ~1e-8 absolute error per token
        assert scores[i] == pytest.approx(ref, rel=1e-5, abs=1e-7)


def test_token_model_save_load_and_errors(word_model, tmp_path):
    ae = word_model
    loaded = SequenceAutoencoder.load(ae.save(tmp_path / "words"))
    assert loaded.vocab_.chars == ae.vocab_.chars
    np.testing.assert_array_equal(loaded.encode(WORDS), ae.encode(WORDS))
    assert loaded.reconstruct(["cat"]) == ae.reconstruct(["cat"])
    with pytest.raises(SequenceDataError, match="has character 'q'"):
        ae.encode(["quit"])
    with pytest.raises(SequenceDataError, match=r"has token 99 at step 1, outside the vocab"):
        ae.encode(Sequences.from_list([np.array([4, 99])]))
    mapped = SequenceAutoencoder(**{**ae.get_params(), "unknown": "map"})
    mapped.__dict__.update({k: v for k, v in ae.__dict__.items() if k.endswith("_")})
    assert mapped.encode(["quit"]).shape == (1, 16)


def test_integer_token_sequences_without_vocab(rng):
    seqs = Sequences.from_list(_tokens(rng, [3, 5, 2, 6, 4] * 4, vocab=9))
    ae = SequenceAutoencoder(latent_dim=4, hidden_size=8, max_epochs=2, seed=0).fit(seqs)
    assert ae.vocab_size_ == 9 and ae.vocab_ is None
    rec = ae.reconstruct(seqs)
    assert rec.is_tokens and rec.lengths.tolist() == seqs.lengths.tolist()
    assert rec.values.min() >= 0 and rec.values.max() < 9


@pytest.mark.parametrize("kind", ["crops", "random"])
def test_copies_term_is_added_with_its_weight(kind):
    """The extra reconstruction term on copies (crops of the rows, or random strings of
    their lengths) adds exactly weight x its mean cross-entropy to the loss."""
    from seqae.losses import masked_cross_entropy
    from seqae.nn import AutoencoderNet, ModelConfig
    from seqae.nn.model import _append_eos

    torch.manual_seed(0)
    net = AutoencoderNet(ModelConfig(1, vocab_size=12, decoder="autoregressive",
                                     copies=0.7, copies_kind=kind))
    x = torch.tensor([[4, 5, 6, 7], [8, 9, 0, 0], [10, 0, 0, 0]])
    lengths = torch.tensor([4, 2, 1])
    with torch.random.fork_rng():
        torch.manual_seed(3)
        total, _, _ = net.loss(x, lengths, None)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        term = net._copies_term(x, lengths)
    net.config.copies = 0.0
    base, _, _ = net.loss(x, lengths, None)
    torch.testing.assert_close(total, base + 0.7 * term)
    seen = []
    orig = net.forward

    def spy(c, n):
        seen.append((c.clone(), n.clone()))
        return orig(c, n)

    net.forward = spy
    torch.manual_seed(5)
    net._copies_term(x, lengths)
    c, n = seen[0]
    mask = torch.arange(c.shape[1])[None] < n[:, None]
    assert (c[~mask] == 0).all() and (c[mask] >= 4).all()  # no PAD/BOS/EOS/UNK inside
    if kind == "random":
        assert n.tolist() == lengths.tolist()
    else:
        assert all(1 <= k <= m for k, m in zip(n.tolist(), lengths.tolist(), strict=True))
    out, _ = orig(c, n)
    ref = masked_cross_entropy(out, _append_eos(c, n), n + 1)
    assert torch.isfinite(ref)


def test_copies_auto_for_texts_only():
    from seqae.tasks import TOKEN_COPIES

    words = ["cat", "dog", "bird", "at", "tac"]
    ae = seqae.SequenceAutoencoder(latent_dim=4, hidden_size=8, max_epochs=1, verbose=0)
    assert ae.fit(words).model_config_.copies == TOKEN_COPIES == 0.5
    assert ae.model_config_.copies_kind == "random"
    off = seqae.SequenceAutoencoder(latent_dim=4, hidden_size=8, max_epochs=1, verbose=0,
                                    copies=0)
    assert off.fit(words).model_config_.copies == 0.0
    cont = seqae.Sequences.from_list([np.ones((3, 1)), np.zeros((4, 1))])
    assert seqae.SequenceAutoencoder(latent_dim=2, hidden_size=4, max_epochs=1,
                                     verbose=0).fit(cont).model_config_.copies == 0.0
