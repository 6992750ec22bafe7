import json

import numpy as np
import pytest
import torch

import seqae
from seqae import IncompatibleModelError, SequenceAutoencoder, SequenceDataError, Sequences

SMALL = dict(latent_dim=4, hidden_size=8, max_epochs=3, batch_size=4, seed=1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    lengths = [1, 2, 5, 9, 14, 3, 7, 20, 1, 11, 6, 4, 16, 8, 2, 12]
    arrays = []
    for n in lengths:
        t = np.arange(n)[:, None]
        arrays.append(np.hstack([np.sin(t / 3.0), 10 + 5 * np.cos(t / 2.0)])
                      + rng.normal(0, 0.1, (n, 2)))
    return Sequences.from_list(arrays, ids=[f"s{i}" for i in range(len(lengths))])


@pytest.fixture(scope="module")
def fitted(data):
    return SequenceAutoencoder(**SMALL).fit(data)


def test_fit_returns_self_with_history(data):
    ae = SequenceAutoencoder(**SMALL, validation_fraction=0.1)
    assert ae.fit(data) is ae
    assert [r["epoch"] for r in ae.history_] == list(range(1, len(ae.history_) + 1))
    for r in ae.history_:
        assert np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"])
    assert ae.n_features_in_ == 2
    assert ae.mean_.shape == ae.std_.shape == (2,)
    whole = SequenceAutoencoder(**{**SMALL, "max_epochs": 1, "validation_fraction": 0}).fit(data)
    mean, std = data.feature_stats()  # normalised with the training data's statistics
    np.testing.assert_array_equal(whole.mean_, mean)
    np.testing.assert_array_equal(whole.std_, std)


def test_validation_split_auto_only_with_enough_sequences(data):
    """validation_fraction="auto" holds out 10 % only when that is >= 50 sequences."""
    from seqae.recipe import MIN_VALIDATION

    small = SequenceAutoencoder(**{**SMALL, "max_epochs": 1}).fit(data)
    assert small.validation_fraction == "auto"
    assert "val_loss" not in small.history_[0]  # 16 sequences: train on all of them
    from seqae.recipe import validation_size

    assert validation_size("auto", 489) == 0
    assert validation_size("auto", 10 * MIN_VALIDATION) == 50
    assert validation_size("auto", 1500) == 150
    assert validation_size(0.1, 16) == 2 and validation_size(0.1, 9) == 0
    rng = np.random.default_rng(0)
    many = Sequences.from_list([rng.normal(size=(3, 1)) for _ in range(500)])
    big = SequenceAutoencoder(**{**SMALL, "max_epochs": 1}).fit(many)
    assert "val_loss" in big.history_[0]
    assert sum(r["steps"] for r in big.history_) == 450 * 3  # 50 held out


def test_sklearn_contract(fitted):
    params = fitted.get_params()
    assert params["latent_dim"] == 4 and params["hidden_size"] == 8
    fresh = seqae.clone(fitted)
    assert fresh.get_params() == params
    assert not hasattr(fresh, "module_") and not hasattr(fresh, "history_")
    assert fresh.set_params(latent_dim=6) is fresh and fresh.latent_dim == 6
    with pytest.raises(ValueError, match="invalid parameter 'latentdim'"):
        fresh.set_params(latentdim=3)
    assert "latent_dim=6" in repr(fresh)
    sk = pytest.importorskip("sklearn.base")
    assert sk.clone(fitted).get_params() == params


def test_unfitted_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        SequenceAutoencoder().encode([np.zeros((3, 1))])


def test_encode_reconstruct_score_padding_invariance(fitted, data):
    """Each sequence alone (no padding at all) gives what it gives inside a batch."""
    Z = fitted.encode(data)
    rec = fitted.reconstruct(data)
    scores = fitted.score(data)
    assert Z.shape == (len(data), 4) and np.isfinite(Z).all()
    assert rec.lengths.tolist() == data.lengths.tolist()
    assert rec.ids.tolist() == data.ids.tolist()
    worst = 0.0
    for i in range(len(data)):
        alone = data[[i]]
        worst = max(worst, np.abs(fitted.encode(alone)[0] - Z[i]).max())
        worst = max(worst, np.abs(fitted.reconstruct(alone).values - rec[i]).max())
        assert fitted.score(alone)[0] == pytest.approx(scores[i], rel=1e-5, abs=1e-7)
    assert worst < 1e-4
    # a different batch composition (reversed order, duplicated) changes nothing
    perm = np.arange(len(data))[::-1]
    twice = Sequences.concat([data.take(perm), data])
    Z2 = fitted.encode(twice)
    np.testing.assert_allclose(Z2[: len(data)], Z[perm], atol=1e-5)
    np.testing.assert_allclose(Z2[len(data):], Z, atol=1e-5)


def test_padded_input_with_nan_padding_gives_the_same(fitted, data):
    x, lengths = data.pad(value=np.nan, length=int(data.lengths.max()) + 13)
    again = Sequences.from_padded(x, lengths=lengths)
    np.testing.assert_allclose(fitted.encode(again), fitted.encode(data), atol=1e-6)


def test_score_is_mse_of_reconstruct_in_input_units(fitted, data):
    rec = fitted.reconstruct(data)
    scores = fitted.score(data)
    for i in range(len(data)):
        ref = np.mean((rec[i].astype(np.float64) - data[i]) ** 2)
        assert scores[i] == pytest.approx(ref, rel=1e-4)
    # reconstructions are in the input's units: feature 1 lives around 10
    assert 5 < rec.values[:, 1].mean() < 15


def test_decode_lengths(fitted, data):
    Z = fitted.encode(data)
    same = fitted.decode(Z, lengths=data.lengths)
    np.testing.assert_allclose(same.values, fitted.reconstruct(data).values, atol=1e-5)
    other = fitted.decode(Z[:3], lengths=[30, 1, 2])
    assert other.lengths.tolist() == [30, 1, 2]
    fixed = fitted.decode(Z[:2], lengths=5)
    assert fixed.lengths.tolist() == [5, 5]
    free = fitted.decode(Z)
    assert len(free) == len(data) and (free.lengths >= 1).all()
    with pytest.raises(SequenceDataError, match="lengths must be >= 1"):
        fitted.decode(Z[:2], lengths=[3, 0])
    with pytest.raises(ValueError, match=r"Z must be \(N, 4\)"):
        fitted.decode(np.zeros((2, 3)))


def test_modules_usable_alone(fitted, data):
    x, lengths = data.pad()
    xn = (torch.from_numpy(x) - torch.from_numpy(fitted.mean_)) / torch.from_numpy(fitted.std_)
    with torch.no_grad():
        z = fitted.encoder_(xn, lengths=torch.from_numpy(lengths))
        y = fitted.decoder_(z, torch.from_numpy(lengths))
    np.testing.assert_allclose(z.numpy(), fitted.encode(data), atol=1e-5)
    assert y.shape == xn.shape


def test_save_load_roundtrip(fitted, data, tmp_path):
    d = fitted.save(tmp_path / "model")
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "metrics.csv",
                                                    "weights.safetensors"]
    loaded = SequenceAutoencoder.load(d)
    assert loaded.get_params() == {**fitted.get_params(), "device": "auto"}
    np.testing.assert_array_equal(loaded.encode(data), fitted.encode(data))
    np.testing.assert_array_equal(loaded.score(data), fitted.score(data))
    assert loaded.history_ == fitted.history_  # floats round-trip exactly through csv
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["feature_names"] is None and cfg["n_features"] == 2
    assert cfg["seqae_version"] == seqae.__version__


def test_load_refuses_damaged_or_foreign_dirs(fitted, tmp_path):
    d = fitted.save(tmp_path / "m")
    blob = bytearray((d / "weights.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (d / "weights.safetensors").write_bytes(bytes(blob))
    with pytest.raises(IncompatibleModelError, match="checksum"):
        SequenceAutoencoder.load(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["format_version"] = 999
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(IncompatibleModelError, match="format 999"):
        SequenceAutoencoder.load(d)
    with pytest.raises(IncompatibleModelError, match="no config.json"):
        SequenceAutoencoder.load(tmp_path / "nothing")


def test_same_seed_same_model(data):
    a = SequenceAutoencoder(**SMALL).fit(data).encode(data)
    b = SequenceAutoencoder(**SMALL).fit(data).encode(data)
    np.testing.assert_array_equal(a, b)


def test_early_stopping_and_time_budget(data):
    # lr=0: the validation loss never improves after epoch 1 -> stops after patience
    ae = SequenceAutoencoder(**{**SMALL, "max_epochs": 50, "lr": 0.0, "patience": 2}).fit(data)
    assert len(ae.history_) == 3
    ae = SequenceAutoencoder(**{**SMALL, "max_epochs": 50, "max_time": 0.0}).fit(data)
    assert len(ae.history_) == 1
    val = data[:4]
    ae = SequenceAutoencoder(**SMALL).fit(data, validation=val)
    assert "val_loss" in ae.history_[0]


def test_errors_on_wrong_data(fitted):
    with pytest.raises(SequenceDataError, match="fitted on 2 features; the data have 3"):
        fitted.encode([np.zeros((4, 3))])
    with pytest.raises(SequenceDataError, match="fitted on 2 features; the data have tokens"):
        fitted.encode([np.array([1, 2, 3])])
    with pytest.raises(TypeError, match="from_padded"):
        fitted.encode(np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="loss must be one of"):
        SequenceAutoencoder(loss="l3").fit([np.zeros((3, 1))])


def test_reported_validation_loss_is_the_valid_steps_mean(data):
    """Seed 003: the loss a model reports on held-out data (evaluate-style) is the mean
    over valid elements, computed here independently from the reconstructions."""
    val = data[[3, 7, 12]]
    ae = SequenceAutoencoder(**{**SMALL, "max_epochs": 1, "lr": 0.0}).fit(data, validation=val)
    rec = ae.reconstruct(val)
    se = [(((rec[i] - val[i]) / ae.std_) ** 2).ravel() for i in range(len(val))]
    expected = np.concatenate(se).mean()
    assert ae.history_[0]["val_loss"] == pytest.approx(expected, rel=1e-4)
    padded_mean = np.concatenate(se).sum() / (len(val) * val.lengths.max() * 2)
    assert ae.history_[0]["val_loss"] != pytest.approx(padded_mean, rel=1e-2)


def test_encode_now_decode_later(fitted, data, tmp_path):
    """Seed 001: encode with one model object, decode the vectors later with another
    (loaded from disk), at chosen lengths."""
    Z = fitted.encode(data)
    later = SequenceAutoencoder.load(fitted.save(tmp_path / "m"))
    out = later.decode(Z, lengths=[7] * len(data))
    np.testing.assert_allclose(out.values, fitted.decode(Z, lengths=7).values, atol=1e-6)
    assert out.lengths.tolist() == [7] * len(data)


# ------------------------------------------------------------ normalize="sequence"
@pytest.fixture(scope="module")
def per_seq(data):
    return SequenceAutoencoder(normalize="sequence", **SMALL).fit(data)


def _rescaled(data, seed):
    """Each sequence and feature scaled by 1e-3..1e3 and shifted: (Sequences, a, b)."""
    rng = np.random.default_rng(seed)
    a = 10.0 ** rng.uniform(-3, 3, size=(len(data), data.n_features))
    b = a * rng.normal(0, 5, size=a.shape)
    rows = data.step_index
    return data.with_values((data.values * a[rows] + b[rows]).astype(np.float32)), a, b


def test_sequence_normalization_matches_a_per_sequence_reference(per_seq, data):
    """Each sequence standardised by its own statistics, run alone through the network,
    and put back in its units: what reconstruct returns for the whole batch."""
    rec = per_seq.reconstruct(data)
    net = per_seq.module_
    for i, s in enumerate(data):
        m, sd = s.mean(0), s.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        x = torch.as_tensor(((s - m) / sd)[None], dtype=torch.float32)
        with torch.no_grad():
            y = net.reconstruct(x, torch.tensor([len(s)]))[0].numpy() * sd + m
        np.testing.assert_allclose(rec[i], y, rtol=1e-4, atol=1e-4)
    assert per_seq.encode(data).shape == (len(data), 4)


def test_sequence_normalization_embeds_shape_whatever_the_scale(per_seq, data):
    moved, a, b = _rescaled(data, 0)
    Z = per_seq.encode(data)
    np.testing.assert_allclose(per_seq.encode(moved), Z, atol=1e-4)
    rec, rec_moved = per_seq.reconstruct(data), per_seq.reconstruct(moved)
    rows = data.step_index
    err = (rec_moved.values - (rec.values * a[rows] + b[rows])) / a[rows]
    spread = data.lengths[rows] > 1  # a single step has no scale: it is centred only
    assert np.abs(err[spread]).max() < 1e-3  # reconstructions come back in their units
    np.testing.assert_allclose(per_seq.score(moved), per_seq.score(data), rtol=1e-3, atol=1e-6)
    for i in (0, 7, 8):  # alone = in the batch; NaN padding changes nothing
        np.testing.assert_allclose(per_seq.encode(data[[i]])[0], Z[i], atol=1e-5)
    x, lengths = data.pad(value=np.nan, length=int(data.lengths.max()) + 5)
    np.testing.assert_allclose(per_seq.encode(Sequences.from_padded(x, lengths=lengths)), Z,
                               atol=1e-6)


def test_sequence_normalization_scores_in_standardised_units(per_seq, data):
    rec = per_seq.reconstruct(data)
    _, std = data.sequence_stats()
    scores = per_seq.score(data)
    for i in range(len(data)):
        ref = np.mean(((rec[i].astype(np.float64) - data[i]) / std[i]) ** 2)
        assert scores[i] == pytest.approx(ref, rel=1e-3, abs=1e-7)


def test_sequence_normalization_survives_save_load(per_seq, data, tmp_path):
    loaded = SequenceAutoencoder.load(per_seq.save(tmp_path / "m"))
    assert loaded.normalize == "sequence"
    np.testing.assert_array_equal(loaded.reconstruct(data).values,
                                  per_seq.reconstruct(data).values)


def test_normalize_rejects_unknown_modes(data):
    with pytest.raises(ValueError, match="normalize must be"):
        SequenceAutoencoder(normalize="minmax", **SMALL).fit(data)


def test_lstm_cell_alone_equals_in_batch_and_survives_save_load(data, tmp_path):
    """The default is a GRU; the LSTM stays a first-class choice."""
    ae = SequenceAutoencoder(cell="lstm", **SMALL).fit(data)
    assert isinstance(ae.module_.decoder.rnn, torch.nn.LSTM)
    Z = ae.encode(data)
    for i in (0, 7, 8):  # lengths 1, 20, 1
        np.testing.assert_allclose(ae.encode(data[[i]])[0], Z[i], atol=1e-5)
    loaded = SequenceAutoencoder.load(ae.save(tmp_path / "lstm"))
    assert loaded.cell == "lstm" and isinstance(loaded.module_.decoder.rnn, torch.nn.LSTM)
    np.testing.assert_array_equal(loaded.encode(data), Z)



# ------------------------------------------------ the long-sequence recipe (encoder="auto")
@pytest.fixture(scope="module")
def long_data():
    rng = np.random.default_rng(7)
    lengths = [101, 140, 1, 180, 120, 2, 150, 133, 111, 170, 160, 105]  # median > 100
    return Sequences.from_list([np.cumsum(rng.normal(size=(n, 1)), 0) for n in lengths])


@pytest.fixture(scope="module")
def conv_fitted(long_data):
    return SequenceAutoencoder(**{**SMALL, "max_epochs": 2}).fit(long_data)


def test_auto_recipe_follows_the_median_length(conv_fitted, fitted):
    cfg = conv_fitted.model_config_
    from seqae.recipe import CONV_CONTRAST

    assert (cfg.encoder, cfg.pooling, cfg.contrastive) == ("conv", "max", 1.0)
    assert cfg.contrast == CONV_CONTRAST
    assert cfg.depth == 6  # the fewest blocks whose receptive field covers 180 steps
    short = fitted.model_config_  # the short demo data keep issue 6's recipe
    assert (short.encoder, short.pooling, short.contrastive) == ("rnn", "last", 0.0)
    from seqae.recipe import resolve

    def recipe(**params):
        p = SequenceAutoencoder(**params).get_params()
        return resolve(p, np.array([500]), 500, 1, {"vocab_size": 0})

    forced = recipe(encoder="rnn", contrastive=0.5)
    m = forced.model
    assert (m.encoder, m.pooling, m.contrastive, m.contrast, m.latent_dim, m.patch) == (
        "rnn", "last", 0.5, "instance", 32, 1)
    assert set(forced.reasons) == {"pooling", "contrast", "latent_dim", "patch", "lr",
                                   "schedule"}  # what was "auto", with its reason
    conv = recipe(hidden_size=48).model
    assert conv.encoder == "conv" and conv.latent_dim == 48  # the pooled features


def test_conv_embedding_is_the_max_pooled_outputs(long_data):
    """With latent_dim="auto" the conv recipe's embedding is the max over each
    sequence's valid steps of the encoder's per-step outputs (numpy on the valid steps),
    and the decoder reads it through a bottleneck of half its width."""
    import torch

    ae = SequenceAutoencoder(**{**SMALL, "latent_dim": "auto", "max_epochs": 1})
    ae.fit(long_data)
    cfg = ae.model_config_
    assert cfg.pooled_latent and cfg.latent_dim == ae.hidden_size == ae.latent_dim_
    assert cfg.bottleneck == ae.hidden_size // 2
    Z = ae.encode(long_data)
    assert Z.shape == (len(long_data), ae.hidden_size)
    scaled, _ = ae.scaler_.transform(long_data)
    for i in range(len(long_data)):
        x = torch.as_tensor(scaled[i])[None]
        with torch.no_grad():
            h, _ = ae.module_.encoder.body(x, lengths=torch.tensor([len(x[0])]))
        np.testing.assert_allclose(Z[i], h[0].numpy().max(0), rtol=1e-5, atol=1e-6)
    out = ae.decode(Z[:2], lengths=[3, 250])
    assert out.lengths.tolist() == [3, 250]
    with pytest.raises(ValueError, match=f"Z must be \\(N, {ae.hidden_size}\\)"):
        ae.decode(Z[:, :3])


def test_conv_recipe_padding_invariance(conv_fitted, long_data):
    """Alone = in the batch, whatever the padding holds, lengths 1 and 2 included."""
    Z, scores = conv_fitted.encode(long_data), conv_fitted.score(long_data)
    rec = conv_fitted.reconstruct(long_data)
    for i in range(len(long_data)):
        alone = long_data.take([i])
        np.testing.assert_allclose(conv_fitted.encode(alone)[0], Z[i], atol=1e-5)
        np.testing.assert_allclose(conv_fitted.reconstruct(alone)[0], rec[i], atol=1e-5)
        assert conv_fitted.score(alone)[0] == pytest.approx(scores[i], rel=1e-5, abs=1e-7)
    x, lengths = long_data.pad(value=np.nan, length=int(long_data.lengths.max()) + 9)
    again = Sequences.from_padded(x, lengths=lengths)
    np.testing.assert_allclose(conv_fitted.encode(again), Z, atol=1e-5)


def test_blocks_pooling_embeds_every_scale_and_stays_padding_invariant(long_data, tmp_path):
    params = {**SMALL, "latent_dim": "auto", "pooling": "blocks", "max_epochs": 2}
    ae = SequenceAutoencoder(**params).fit(long_data)
    cfg = ae.model_config_
    assert (cfg.latent_dim, cfg.depth, cfg.bottleneck, cfg.pooled_latent) == (48, 6, 4, True)
    Z = ae.encode(long_data)
    assert Z.shape == (len(long_data), 48)
    for i in (0, 2, 5):  # lengths 101, 1, 2: alone = in the batch
        np.testing.assert_allclose(ae.encode(long_data.take([i]))[0], Z[i], atol=1e-5)
    x, lengths = long_data.pad(value=np.nan, length=int(long_data.lengths.max()) + 9)
    np.testing.assert_allclose(ae.encode(Sequences.from_padded(x, lengths=lengths)), Z,
                               atol=1e-5)
    same = SequenceAutoencoder.load(ae.save(tmp_path / "m"))
    np.testing.assert_array_equal(same.encode(long_data), Z)
    out = same.decode(Z[:2], lengths=[7, 300])
    assert out.lengths.tolist() == [7, 300] and np.isfinite(out.values).all()
    # a latent_dim of one's own: a linear map of the 48 pooled numbers
    small = SequenceAutoencoder(**{**params, "latent_dim": 5}).fit(long_data)
    assert small.encode(long_data).shape == (len(long_data), 5)
    assert not small.model_config_.pooled_latent


def test_conv_recipe_save_load_and_decode(conv_fitted, long_data, tmp_path):
    same = SequenceAutoencoder.load(conv_fitted.save(tmp_path / "m"))
    assert same.model_config_ == conv_fitted.model_config_
    np.testing.assert_array_equal(same.encode(long_data), conv_fitted.encode(long_data))
    out = same.decode(same.encode(long_data)[:2], lengths=[7, 300])
    assert out.lengths.tolist() == [7, 300] and np.isfinite(out.values).all()


def test_scaler_auto_picks_per_sequence_scaling_for_spread_scales(data):
    from seqae.scaling import AUTO_SPREAD, Scaler

    rng = np.random.default_rng(3)
    scales = 10.0 ** rng.uniform(-4, 2, size=40)  # six orders of magnitude, as PLAID
    spread = Sequences.from_list([s * rng.normal(size=(20, 1)) for s in scales])
    ae = SequenceAutoencoder(**{**SMALL, "max_epochs": 1}).fit(spread)
    assert ae.scaler_.mode_ == "sequence" and ae.scaler_.spread_ > AUTO_SPREAD
    np.testing.assert_array_equal(ae.mean_, np.zeros(1, np.float32))
    sc = Scaler().fit(data)  # the demo data: scales alike, global statistics
    assert sc.mode_ == "global" and sc.spread_ < AUTO_SPREAD
    std, stats = sc.transform(data)
    mean, sd = data.feature_stats()
    np.testing.assert_allclose(std.values, (data.values - mean) / sd, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sc.inverse(std, stats).values, data.values, rtol=1e-5,
                               atol=1e-5)
    back = Scaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_array_equal(back.transform(data)[0].values, std.values)
    with pytest.raises(ValueError, match="normalize must be one of"):
        Scaler("minmax")


def test_loads_model_folders_written_before_the_scaler(fitted, data, tmp_path):
    """Folders from before seqae.scaling kept the statistics as config mean / std."""
    path = fitted.save(tmp_path / "old")
    config = json.loads((path / "config.json").read_text())
    scaler = config.pop("scaler")
    config["mean"], config["std"] = scaler["mean"], scaler["std"]
    config["params"]["normalize"] = True
    (path / "config.json").write_text(json.dumps(config))
    old = SequenceAutoencoder.load(path)
    assert old.scaler_.mode_ == "global"
    np.testing.assert_array_equal(old.encode(data), fitted.encode(data))
    np.testing.assert_array_equal(old.score(data), fitted.score(data))


def test_patch_auto_and_padding_invariance(long_data):
    from seqae.recipe import PATCH_LENGTH, resolve

    def patch(lengths, **params):
        p = SequenceAutoencoder(**params).get_params()
        return resolve(p, np.array(lengths), max(lengths), 1, {"vocab_size": 0}).model.patch

    assert patch([1460] * 3) == round(1460 / PATCH_LENGTH)
    assert patch([300]) == 1
    assert patch([30], patch=4) == 4  # as asked
    ae = SequenceAutoencoder(**{**SMALL, "patch": 3, "max_epochs": 1}).fit(long_data)
    assert ae.model_config_.patch == 3
    assert ae.model_config_.depth == 4  # field 1 + 4 (2**4 - 1) = 61 covers 180 / 3 = 60
    Z = ae.encode(long_data)
    for i in range(len(long_data)):
        np.testing.assert_allclose(ae.encode(long_data.take([i]))[0], Z[i], atol=1e-5)
    rec = ae.reconstruct(long_data)
    assert rec.lengths.tolist() == long_data.lengths.tolist()  # every step decoded


def test_budget_schedule_follows_a_cosine_to_five_percent(data):
    import math

    ae = SequenceAutoencoder(**{**SMALL, "max_epochs": 4, "schedule": "budget",
                                "lr": 0.01}).fit(data)
    want = [0.01 * (0.05 + 0.475 * (1 + math.cos(math.pi * e / 4))) for e in range(1, 5)]
    assert [r["lr"] for r in ae.history_] == pytest.approx(want, rel=1e-9)
    assert ae.history_[-1]["lr"] == pytest.approx(0.0005)
    with pytest.raises(ValueError, match="schedule must be"):
        SequenceAutoencoder(**{**SMALL, "schedule": "cosine"}).fit(data)


def test_schedule_auto_is_the_budget_cosine_for_conv_with_a_time_budget(long_data, data):
    conv = SequenceAutoencoder(**{**SMALL, "max_epochs": 2, "max_time": 600}).fit(long_data)
    assert _schedule(conv) == "budget"
    assert conv.history_[-1]["lr"] == pytest.approx(0.05 * 1e-3)  # the end of the budget
    rnn = SequenceAutoencoder(**{**SMALL, "max_epochs": 2, "max_time": 600}).fit(data)
    assert _schedule(rnn) == "plateau" and rnn.history_[-1]["lr"] == pytest.approx(3e-3)
    assert _schedule(SequenceAutoencoder(**{**SMALL, "max_epochs": 2}).fit(long_data)) \
        == "plateau"  # no time budget: no known end


def _schedule(ae):
    """The learning-rate schedule the fitted ``ae``'s recipe resolved to."""
    from seqae.recipe import resolve

    return resolve(ae.get_params(), np.array([ae.max_length_]), ae.max_length_, 1,
                   {"vocab_size": 0}).train.schedule


class _Threads(seqae.train.Callback):
    """Records the torch thread count each epoch trains with."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, epoch, record):
        self.seen.append(torch.get_num_threads())


@pytest.mark.parametrize("threads, policy, rnn_sees, conv_sees", [
    # sleeping OpenMP threads: one thread for the GRU; the convolutions keep torch's
    ("auto", "passive", 1, 3),
    ("auto", "ACTIVE", 3, 3),  # spinning threads: torch's setting
    ("auto", None, 3, 3),
    (2, "PASSIVE", 2, 2),
    (None, "PASSIVE", 3, 3),
])
def test_threads_apply_to_fit_and_inference_only(data, long_data, monkeypatch, threads,
                                                  policy, rnn_sees, conv_sees):
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        for seqs, want in ((data, rnn_sees), (long_data, conv_sees)):
            rec = _Threads()
            ae = SequenceAutoencoder(**{**SMALL, "max_epochs": 2, "threads": threads})
            ae.fit(seqs, callbacks=[rec])
            assert rec.seen == [want, want]
            assert torch.get_num_threads() == 3  # the user's setting is back after fit
            inside: list[int] = []

            def note(*_, inside=inside):
                inside.append(torch.get_num_threads())

            hook = ae.module_.encoder.register_forward_hook(note)
            ae.encode(seqs)
            ae.score(seqs)
            ae.reconstruct(seqs)
            hook.remove()
            hook = ae.module_.decoder.register_forward_hook(note)
            ae.decode(ae.encode(seqs[:2]), lengths=5)
            hook.remove()
            assert inside and set(inside) == {want}
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_threads_do_not_change_the_weights_and_bad_values_are_refused(data, tmp_path):
    one = SequenceAutoencoder(**{**SMALL, "threads": 1}).fit(data)
    two = SequenceAutoencoder(**{**SMALL, "threads": 2}).fit(data)
    np.testing.assert_allclose(one.encode(data), two.encode(data), atol=1e-5)
    one.save(tmp_path / "m")
    assert SequenceAutoencoder.load(tmp_path / "m").threads == 1
    for bad in (0, -1, 1.5, True, "many"):
        with pytest.raises(ValueError, match=f"threads must be .* got {bad!r}"):
            SequenceAutoencoder(**{**SMALL, "threads": bad}).fit(data)


class _Raise(seqae.train.Callback):
    def __init__(self, at, error):
        self.at, self.error = at, error

    def on_epoch_end(self, epoch, record):
        if epoch == self.at:
            raise self.error


def _state(ae):
    """Everything a fit leaves on the estimator, copied (weights included)."""
    return {k: ({n: t.clone() for n, t in v.state_dict().items()} if k == "module_"
                else v.copy() if isinstance(v, np.ndarray) else v)
            for k, v in vars(ae).items() if k.endswith("_")}


def _same_state(before, after):
    assert before.keys() == after.keys()
    for k, v in before.items():
        if k == "module_":
            for n, t in v.items():
                torch.testing.assert_close(after[k][n], t, rtol=0, atol=0)
        elif isinstance(v, np.ndarray):
            np.testing.assert_array_equal(after[k], v)
        else:
            assert after[k] is v or after[k] == v, k


def test_a_first_fit_that_raises_leaves_the_estimator_unfitted(data):
    ae = SequenceAutoencoder(**{**SMALL, "verbose": 0})
    with pytest.raises(RuntimeError, match="boom"):
        ae.fit(data, callbacks=[_Raise(2, RuntimeError("boom"))])
    assert not [k for k in vars(ae) if k.endswith("_")]  # nothing learned was kept
    with pytest.raises(RuntimeError, match="not fitted yet"):
        ae.encode(data)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("boom")])
def test_a_refit_that_raises_keeps_the_earlier_fit_whole(data, error):
    """Ctrl-C (KeyboardInterrupt) or an error during a refit: the estimator keeps the
    earlier fit, weights, threshold, scores and history alike, and still works."""
    ae = SequenceAutoencoder(**{**SMALL, "verbose": 0}).fit(data)
    before, Z = _state(ae), ae.encode(data)
    other = Sequences.from_list([np.ones((5, 2)) * i for i in range(8)])
    with pytest.raises(type(error)):
        ae.fit(other, callbacks=[_Raise(2, error)])
    _same_state(before, _state(ae))
    np.testing.assert_array_equal(ae.encode(data), Z)


def test_a_real_sigint_during_a_refit_keeps_the_earlier_fit(tmp_path):
    """The same with a real signal: the process interrupts itself after a refit's first
    epoch and checks what the estimator holds."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import signal
        import numpy as np
        import seqae
        # Python's own SIGINT handler, also where the parent ignores SIGINT (a background
        # job of a non-interactive shell): Python then leaves it ignored at start-up
        signal.signal(signal.SIGINT, signal.default_int_handler)
        rng = np.random.default_rng(0)
        seqs = seqae.Sequences.from_list([rng.normal(size=(n, 2)) for n in range(2, 30)])
        ae = seqae.SequenceAutoencoder(hidden_size=8, latent_dim=3, max_epochs=2,
                                       verbose=0).fit(seqs)
        threshold, Z = ae.threshold_, ae.encode(seqs)

        class Interrupt(seqae.train.Callback):
            def on_epoch_end(self, epoch, record):  # handled before raise_signal returns
                signal.raise_signal(signal.SIGINT)

        try:
            ae.set_params(max_epochs=50).fit(seqs[:10], callbacks=[Interrupt()])
        except KeyboardInterrupt:
            assert ae.threshold_ == threshold and len(ae.history_) == 2
            assert np.array_equal(ae.encode(seqs), Z) and len(ae.train_scores_) == 28
            print("kept the earlier fit")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "kept the earlier fit"


def test_token_validation_data_outside_the_training_vocabulary_are_named_as_such():
    train = Sequences.from_list([np.array([4, 5, 6])] * 10)
    with pytest.raises(SequenceDataError, match=r"^validation data: sequence 0 has token 12 "
                                                 r"at step 1, outside the vocabulary \(0..6\)"):
        SequenceAutoencoder(**{**SMALL, "verbose": 0}).fit(
            train, validation=Sequences.from_list([np.array([4, 12])]))


def test_precision_bf16_fit_agrees_with_float32(data):
    """``precision="bf16"`` on the CPU: the training and validation losses of every epoch
    (validation runs under autocast too) are within 1 % of the float32 fit's, and the
    embeddings (`encode` computes in float32 whatever the precision) within 0.05 of
    them (4e-3 and 7e-3 here); the default there is float32, the fit of ``"32"`` bit
    for bit."""
    settings = {**SMALL, "validation_fraction": 0.25}
    ref = SequenceAutoencoder(**settings).fit(data)
    same = SequenceAutoencoder(**settings, precision="32").fit(data)
    np.testing.assert_array_equal(same.encode(data), ref.encode(data))
    bf16 = SequenceAutoencoder(**settings, precision="bf16").fit(data)
    assert not np.array_equal(bf16.encode(data), ref.encode(data))
    for got, want in zip(bf16.history_, ref.history_, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-2)
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-2)
    assert bf16.encode(data).dtype == np.float32
    np.testing.assert_allclose(bf16.encode(data), ref.encode(data), atol=5e-2)
    with pytest.raises(ValueError, match="precision"):
        SequenceAutoencoder(precision="fp8").fit(data)
