"""Loss normalisation (``loss_normalize``) and per-sequence ``sample_weight``: the loss of
a batch against numpy, weights against duplicated sequences, equal weights against no
weights (exactly), bad weights refused before any training, the setting saved."""

import numpy as np
import pytest
import torch

import seqae
from seqae.losses import get_loss
from seqae.nn import AutoencoderNet, ModelConfig
from seqae.sources import DeviceData, check_weights
from seqae.train import Callback, evaluate

SMALL = dict(hidden_size=8, latent_dim=3, max_epochs=2, batch_size=8, device="cpu",
             threads=1, verbose=0, validation_fraction=0.0)


def _seqs(n=12, seed=0, features=2):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(k), features)).astype(np.float32)
            for k in rng.integers(2, 30, n)]


def _net(features=2):
    torch.manual_seed(0)
    return AutoencoderNet(ModelConfig(n_features=features, latent_dim=3, hidden_size=8,
                                      longest_predicted=30)).eval()


def _batch_loss(net, seqs, normalize, weights=None):
    """``(loss / normaliser, per-sequence squared errors)`` of the whole list as one
    batch, through `DeviceData` as the training loop reads it."""
    data = DeviceData(seqae.Sequences.from_list(seqs), torch.device("cpu"), normalize,
                      check_weights(weights, len(seqs)))
    idx = np.arange(len(seqs))
    x, lens = data.batch(idx)
    w = data.weights(idx)
    with torch.no_grad():
        loss, _, _ = net.loss(x, lens, get_loss("mse"), reduction="sum",
                              weights=None if w is None else torch.as_tensor(w))
        out, _ = net(x, lens)
    err = [((out[i, :k] - x[i, :k]) ** 2).double().numpy() for i, k in enumerate(lens.tolist())]
    return float(loss) / data.elements(idx), err


def test_sequence_loss_is_the_mean_of_sequence_means():
    seqs, net = _seqs(), _net()
    value, err = _batch_loss(net, seqs, "sequence")
    assert value == pytest.approx(np.mean([e.mean() for e in err]), rel=1e-5)
    value, err = _batch_loss(net, seqs, "element")
    assert value == pytest.approx(np.concatenate([e.ravel() for e in err]).mean(), rel=1e-5)
    # the validation loss is the same figure, over batches of any size
    data = DeviceData(seqae.Sequences.from_list(seqs), torch.device("cpu"), "sequence")
    ref = np.mean([e.mean() for e in _batch_loss(net, seqs, "sequence")[1]])
    assert evaluate(net, data, get_loss("mse"), 5, "count") == pytest.approx(ref, rel=1e-5)


def test_weights_against_numpy_and_duplicates():
    seqs, net = _seqs(), _net()
    w = np.arange(1, len(seqs) + 1, dtype=np.float64)
    value, err = _batch_loss(net, seqs, "element", w)
    ref = (sum(wi * e.sum() for wi, e in zip(w, err, strict=True))
           / sum(wi * e.size for wi, e in zip(w, err, strict=True)))
    assert value == pytest.approx(ref, rel=1e-5)
    value, err = _batch_loss(net, seqs, "sequence", w)
    assert value == pytest.approx(np.average([e.mean() for e in err], weights=w), rel=1e-5)
    # weight 2 on sequence 0 = sequence 0 twice, under "sequence" (and under "element")
    twice = [seqs[0], *seqs]
    w2 = np.ones(len(seqs))
    w2[0] = 2
    for normalize in ("sequence", "element"):
        assert _batch_loss(net, seqs, normalize, w2)[0] == pytest.approx(
            _batch_loss(net, twice, normalize)[0], rel=1e-5)


def test_equal_weights_give_the_default_exactly_and_sequence_differs():
    seqs = _seqs(16)
    plain = seqae.SequenceAutoencoder(**SMALL).fit(seqs)
    ones = seqae.SequenceAutoencoder(**SMALL).fit(seqs, sample_weight=np.full(len(seqs), 3.0))
    assert [r["train_loss"] for r in plain.history_] == [r["train_loss"] for r in ones.history_]
    assert np.array_equal(plain.transform(seqs), ones.transform(seqs))
    per_seq = seqae.SequenceAutoencoder(loss_normalize="sequence", **SMALL).fit(seqs)
    assert not np.array_equal(plain.transform(seqs), per_seq.transform(seqs))
    w = np.linspace(0.0, 2.0, len(seqs))  # zeros allowed, as long as not all
    weighted = seqae.SequenceAutoencoder(loss_normalize="sequence", **SMALL).fit(
        seqs, sample_weight=w)
    assert np.isfinite(weighted.history_[-1]["train_loss"])


class _Began(Callback):
    began = False

    def on_train_begin(self, model, config):
        _Began.began = True


@pytest.mark.parametrize("weights, match", [
    (lambda n: -np.ones(n), r"sequence 0 is -1\.0"),
    (lambda n: np.r_[np.ones(n - 1), np.nan], rf"sequence {8 - 1} is nan"),
    (lambda n: np.ones(n + 1), r"one weight per sequence \(8\)"),
    (lambda n: np.zeros(n), "zero for every sequence"),
])
def test_bad_weights_are_refused_before_training(weights, match):
    seqs = _seqs(8)
    with pytest.raises(ValueError, match=match):
        seqae.SequenceAutoencoder(**SMALL).fit(seqs, sample_weight=weights(len(seqs)),
                                               callbacks=[_Began()])
    assert not _Began.began


def test_the_setting_is_validated_and_saved(tmp_path):
    with pytest.raises(ValueError, match="loss_normalize"):
        seqae.SequenceAutoencoder(loss_normalize="token", **SMALL).fit(_seqs(4))
    ae = seqae.SequenceAutoencoder(loss_normalize="sequence", **{**SMALL, "max_epochs": 1})
    ae.fit(_seqs(8))
    ae.save(tmp_path / "m")
    back = seqae.SequenceAutoencoder.load(tmp_path / "m", device="cpu")
    assert back.get_params()["loss_normalize"] == "sequence"
