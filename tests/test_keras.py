"""seqae.keras: the seeds' Keras models rebuilt with seqae's pieces, on Keras 3's torch
backend. Every figure is checked against a hand computation from `model.predict` (numpy
on the valid steps) or against the seed's own numbers."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover
    pytest.skip("these tests run Keras on the torch backend", allow_module_level=True)

from keras import layers  # noqa: E402

import seqae  # noqa: E402
import seqae.keras as sk  # noqa: E402


@pytest.fixture(autouse=True)
def _keras_seed():
    keras.utils.set_random_seed(0)


def _ragged(rng, lengths, f=2, pad=0.0, zeros=True):
    """Padded batch (post-padding with ``pad``) with some exact zeros in valid steps."""
    x = np.full((len(lengths), max(lengths), f), pad, dtype="float32")
    for i, n in enumerate(lengths):
        x[i, :n] = rng.normal(size=(n, f))
        if zeros and n > 1:
            x[i, 1, 0] = 0.0  # a real zero in the data (the other feature is not 0)
    return x


def _mask(lengths, t):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def _hand_mse(pred, x, lengths):
    m = _mask(lengths, x.shape[1])
    return float((((pred - x) ** 2).mean(-1) * m).sum() / m.sum())


def seed000_model(n_features=2, latent_dim=4, timesteps=None):
    """Seed 000's autoencoder, with RepeatToLength for RepeatVector(timesteps) and
    CropToMask for the cropOutputs Lambda."""
    inputs = keras.Input(shape=(timesteps, n_features))
    masked = layers.Masking(mask_value=0.0)(inputs)
    encoded = layers.LSTM(latent_dim)(masked)
    decoded = sk.RepeatToLength()([encoded, masked])
    decoded = layers.LSTM(n_features, return_sequences=True)(decoded)
    decoded = sk.CropToMask()([decoded, masked])
    return keras.Model(inputs, decoded), keras.Model(inputs, encoded)


def test_seed000_trains_and_evaluate_is_the_masked_mean(rng):
    lengths = [3, 6, 2, 5]
    x = _ragged(rng, lengths)
    model, _ = seed000_model()
    model.compile(optimizer="adam", loss=sk.masked_mse)
    first = model.evaluate(x, x, batch_size=4, verbose=0)
    model.fit(x, x, epochs=30, batch_size=4, verbose=0)
    pred = model.predict(x, batch_size=4, verbose=0)
    loss = model.evaluate(x, x, batch_size=4, verbose=0)
    assert loss == pytest.approx(_hand_mse(pred, x, lengths), rel=1e-5)
    assert loss < first  # it trained
    m = _mask(lengths, x.shape[1])
    assert np.all(pred[~m] == 0.0)  # padded steps are exactly zero
    assert np.all(pred[m].any(-1))  # valid steps, real zeros included, are not cropped
    unmasked = float(((pred - x) ** 2).mean())
    assert loss != pytest.approx(unmasked)  # the padding really is left out


def test_a_sequence_alone_equals_it_inside_a_padded_batch(rng):
    lengths = [4, 7, 2]
    x = _ragged(rng, lengths)
    model, encoder = seed000_model()
    batch = model.predict(x, verbose=0)
    z_batch = encoder.predict(x, verbose=0)
    for i, n in enumerate(lengths):
        alone = model.predict(x[i : i + 1, :n], verbose=0)
        np.testing.assert_allclose(alone[0], batch[i, :n], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(encoder.predict(x[i : i + 1, :n], verbose=0)[0],
                                   z_batch[i], rtol=1e-5, atol=1e-6)


def test_crop_to_mask_keeps_the_gradient_of_real_zeros():
    """Seed 000's option 3 multiplies by (inputs != 0): a valid step whose value is 0 is
    cut from the loss. CropToMask decides from the mask, so it is not."""
    import torch

    x = torch.tensor([[[0.0], [1.0], [0.0]]])  # all valid; two real zeros
    y = torch.tensor([[[0.5], [0.5], [0.5]]], requires_grad=True)
    lengths_mask = torch.tensor([[True, True, True]])
    from keras.src.backend import set_keras_mask

    set_keras_mask(y, lengths_mask)
    out = sk.CropToMask()(y)
    ((out - x) ** 2).sum().backward()
    assert torch.all(y.grad != 0)  # every valid step, zeros included, gets a gradient
    seed_crop = y * (x != 0).float()  # the seed's version
    assert torch.equal(seed_crop.detach()[0, :, 0], torch.tensor([0.0, 0.5, 0.0]))


def test_repeat_to_length_follows_each_batch_length_and_mask(rng):
    latent = keras.Input((3,))
    ref = keras.Input((None, 2))
    masked = layers.Masking(0.0)(ref)
    rep = sk.RepeatToLength()([latent, masked])
    out = sk.CropToMask()(rep)
    model = keras.Model([latent, ref], out)
    z = rng.normal(size=(2, 3)).astype("float32")
    for t, lengths in ((4, [4, 2]), (9, [1, 9])):  # the time axis changes per batch
        r = _ragged(rng, lengths, zeros=False)
        y = model.predict([z, r], verbose=0)
        assert y.shape == (2, t, 3)
        m = _mask(lengths, t)
        np.testing.assert_allclose(y[m], np.repeat(z, lengths, axis=0), rtol=1e-6)
        assert np.all(y[~m] == 0)


def test_seed001_decodes_a_vector_at_another_length_in_a_batch(rng):
    """Seed 001: token autoencoder; the decoder takes (latent, lengths), decodes each row
    at its own length in one batch (no batch size 1), and a causal decoder's first L
    steps do not depend on how long it runs."""
    vocab = 6
    ae, enc, dec = sk.sequence_autoencoder(vocab_size=vocab, latent_dim=5, units=8)
    ae.compile(optimizer="adam", loss=sk.masked_sparse_categorical_crossentropy)
    x = np.array([[3, 4, 5, 0, 0], [5, 4, 3, 2, 1], [1, 2, 0, 0, 0]], dtype="int32")
    ae.fit(x, x, epochs=3, verbose=0, batch_size=3)
    z = enc.predict(x, verbose=0)
    out = dec.predict([z, np.array([7, 2, 4])], verbose=0)  # other lengths than the input
    assert out.shape == (3, 7, vocab)
    m = _mask([7, 2, 4], 7)
    np.testing.assert_allclose(out[m].sum(-1), 1.0, rtol=1e-5)  # softmax at valid steps
    assert np.all(out[~m] == 0)
    short = dec.predict([z, np.array([3, 2, 1])], verbose=0)
    for i, n in enumerate([3, 2, 1]):
        np.testing.assert_allclose(short[i, :n], out[i, :n], rtol=1e-5, atol=1e-6)
    pred = ae.predict(x, verbose=0)
    lengths = (x != 0).sum(1)
    mm = _mask(lengths, 5)
    picked = np.take_along_axis(pred, x[..., None], -1)[..., 0]
    hand = float(-np.log(picked[mm]).mean())  # padded steps are 0: log only valid ones
    assert ae.evaluate(x, x, verbose=0, batch_size=3) == pytest.approx(hand, rel=1e-5)


P = 0.37
SEED002_INPUT = np.array([[[1.0, 1.0], [2, 2.0], [1.0, 1.0], [P, P], [P, P]],
                          [[P, P], [1.0, 1.0], [2, 2.0], [1.0, 1.0], [P, P]]], "float32")
MASKED = [[-6.0, -50.0, -156.0, -156.0, -156.0], [0.0, -6.0, -50.0, -156.0, -156.0]]


def test_seed002_numbers_and_crop():
    """Seed 002's model in Keras: its printed numbers at the valid steps, and with
    CropToMask exact zeros at the masked ones instead of repeated outputs."""
    inputs = keras.Input((5, 2))
    masked = layers.Masking(mask_value=P)(inputs)
    gru = layers.GRU(1, return_sequences=True, activation=None, recurrent_activation=None,
                     kernel_initializer="ones", recurrent_initializer="zeros",
                     bias_initializer="ones", reset_after=False)(masked)
    raw = keras.Model(inputs, gru).predict(SEED002_INPUT, verbose=0)[..., 0]
    np.testing.assert_allclose(raw, MASKED, rtol=1e-6)
    cropped = keras.Model(inputs, sk.CropToMask()(gru)).predict(SEED002_INPUT, verbose=0)
    valid = ~np.all(SEED002_INPUT == P, axis=-1)
    np.testing.assert_allclose(cropped[..., 0][valid], np.asarray(MASKED)[valid], rtol=1e-6)
    assert np.all(cropped[..., 0][~valid] == 0)


def test_seed003_masked_categorical_crossentropy_from_the_padding_class():
    """Seed 003: targets pre-padded with the class '#' (id 2); the loss averages the
    cross-entropy over the other steps only, as the seed's tf.boolean_mask does."""
    X = np.array([[[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]],
                  [[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]]], "float32")
    y_true = np.array([[[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 0]],
                       [[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]]], "float32")
    inp = keras.Input((5, 3))
    masked = layers.Masking(mask_value=0)(inp)
    enc = layers.LSTM(10)(masked)
    rep = sk.RepeatToLength()([enc, masked])
    dec = layers.LSTM(10, return_sequences=True)(rep)
    out = layers.Dense(3, activation="softmax")(dec)
    model = keras.Model(inp, out)
    loss = sk.masked_categorical_crossentropy(pad_class=2)
    assert loss.pad_class == 2 and sk.masked_categorical_crossentropy.pad_class is None
    model.compile(optimizer="adam", loss=loss)
    model.fit(X, y_true, epochs=2, verbose=0)
    y_pred = model.predict(X, verbose=0)
    losses = -(y_true * np.log(y_pred)).sum(-1)  # the seed's per-step cross-entropy
    keep = np.zeros((2, 5), bool)
    keep[0, 2:], keep[1, 1:] = True, True  # sequence_lengths [3, 4], from the end
    hand = losses[keep].mean()
    assert model.evaluate(X, y_true, verbose=0) == pytest.approx(hand, rel=1e-5)
    assert hand != pytest.approx(losses.mean())  # the seed's unmasked figure differs


def test_losses_by_hand_with_pad_value_and_sample_weight(rng):
    import torch

    y = rng.normal(size=(3, 4, 2)).astype("float32")
    y[0, 2:] = -1.0  # target padding by value
    p = rng.normal(size=(3, 4, 2)).astype("float32")
    keep = ~np.all(y == -1.0, -1)
    for loss, err in ((sk.masked_mse, (p - y) ** 2), (sk.masked_mae, np.abs(p - y))):
        got = float(loss(pad_value=-1.0)(torch.tensor(y), torch.tensor(p)))
        assert got == pytest.approx(err.mean(-1)[keep].mean(), rel=1e-6)
        w = np.array([1.0, 2.0, 0.5], "float32")
        got = float(loss(pad_value=-1.0)(torch.tensor(y), torch.tensor(p), sample_weight=w))
        ww = np.broadcast_to(w[:, None], keep.shape)
        hand = (err.mean(-1) * ww)[keep].sum() / ww[keep].sum()
        assert got == pytest.approx(hand, rel=1e-6)
    empty = torch.zeros((1, 2, 2)) - 1.0
    assert float(sk.masked_mse(pad_value=-1.0)(empty, torch.zeros((1, 2, 2)))) == 0.0
    with pytest.raises(ValueError, match="pad_class or pad_value"):
        sk.masked_mse(pad_class=1, pad_value=0.0)


def test_sparse_crossentropy_with_a_padding_class(rng):
    import torch

    labels = np.array([[1, 3, 0, 0], [2, 2, 2, 0]])
    probs = rng.dirichlet(np.ones(4), size=(2, 4)).astype("float32")
    got = float(sk.masked_sparse_categorical_crossentropy(pad_class=0)(
        torch.tensor(labels), torch.tensor(probs)))
    keep = labels != 0
    picked = np.take_along_axis(probs, labels[..., None], -1)[..., 0]
    assert got == pytest.approx(-np.log(picked[keep]).mean(), rel=1e-5)


def test_bucketed_sequence_batches(rng):
    lengths = rng.integers(1, 30, 53)
    seqs = seqae.Sequences.from_list([rng.normal(size=(int(n), 3)) for n in lengths])
    data = sk.BucketedSequence(seqs, batch_size=8, seed=1, pad_value=-9.0)
    assert len(data) == 7
    seen = []
    orders = []
    for _epoch in range(3):
        order = []
        for b in range(len(data)):
            x, y = data[b]
            idx = data.indices(b)
            assert x is y and x.dtype == np.float32
            assert x.shape == (len(idx), lengths[idx].max(), 3)  # padded to its own longest
            for row, i in zip(x, idx, strict=True):
                np.testing.assert_allclose(row[: lengths[i]], seqs[i], rtol=1e-6)
                assert np.all(row[lengths[i]:] == -9.0)
            spread = lengths[idx].max() - lengths[idx].min()
            assert spread <= np.ptp(lengths)  # sorted buckets: similar lengths
            order.append(tuple(idx))
            seen.extend(idx.tolist())
        orders.append(order)
        data.on_epoch_end()
    assert sorted(seen) == sorted(list(range(53)) * 3)  # each sequence once per epoch
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]  # reshuffled
    again = sk.BucketedSequence(seqs, batch_size=8, seed=1)
    assert [tuple(again.indices(b)) for b in range(7)] == orders[0]  # from the seed
    ordered = np.concatenate([sk.BucketedSequence(seqs, 8, shuffle=False).indices(b)
                              for b in range(7)])
    assert np.all(np.diff(lengths[ordered]) >= 0)


def test_bucketed_sequence_trains_a_model_on_tokens(rng):
    words = ["cat", "dog", "bird", "a", "zebra", "at", "tac", "god"]
    vocab = seqae.CharVocab.from_texts(words)
    tokens = vocab.encode(words)
    data = sk.BucketedSequence(tokens, batch_size=3)
    x, _ = data[0]
    assert x.dtype == np.int32 and np.all((x == 0) == ~_mask(tokens.lengths[data.indices(0)],
                                                             x.shape[1]))
    ae, enc, dec = sk.sequence_autoencoder(vocab_size=len(vocab), latent_dim=4, units=8,
                                           cell="gru")
    ae.compile(optimizer="adam", loss=sk.masked_sparse_categorical_crossentropy)
    hist = ae.fit(data, epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 3 and np.isfinite(hist.history["loss"]).all()
    assert enc.predict(data[1][0], verbose=0).shape == (len(data.indices(1)), 4)


def test_sequence_autoencoder_continuous_saves_and_loads(rng, tmp_path):
    ae, enc, dec = sk.sequence_autoencoder(n_features=2, latent_dim=3, units=6, cell="gru",
                                           mask_value=0.0)
    ae.compile(optimizer="adam", loss=sk.masked_mse)
    lengths = [5, 3]
    x = _ragged(rng, lengths)
    ae.fit(x, x, epochs=2, verbose=0)
    pred = ae.predict(x, verbose=0)
    assert ae.evaluate(x, x, verbose=0) == pytest.approx(_hand_mse(pred, x, lengths),
                                                         rel=1e-5)
    ae.save(tmp_path / "ae.keras")
    back = keras.models.load_model(tmp_path / "ae.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), pred, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n_features"):
        sk.sequence_autoencoder()
    with pytest.raises(ValueError, match="cell"):
        sk.sequence_autoencoder(n_features=2, cell="rnn")


def test_public_names():
    for name in ("RepeatToLength", "CropToMask", "masked_mse", "masked_mae",
                 "masked_categorical_crossentropy", "masked_sparse_categorical_crossentropy",
                 "BucketedSequence", "sequence_autoencoder"):
        assert hasattr(seqae.keras, name), name
        assert name in sk.__all__
