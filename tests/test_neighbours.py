"""anomaly_score="neighbours": the distance of a sequence's embedding to the nearest
training embedding, against per-query loops in numpy; its reference sample, its folder
file and its refusals."""
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

import seqae
from helpers import write_parquet_folder
from seqae.errors import ExportError, IncompatibleModelError
from seqae.neighbours import Neighbours, Reservoir
from seqae.stream import ParquetSource

SMALL = dict(hidden_size=8, latent_dim=4, max_epochs=2, batch_size=8, verbose=0)


def _standardised_nearest(queries, reference, leave_out_self=False):
    """Per query, by a loop: the smallest Euclidean distance to a reference row, every
    dimension standardised by the reference's mean and std (std 0: 1)."""
    ref = np.asarray(reference, np.float64)
    mean, std = ref.mean(0), ref.std(0)
    std = np.where(std > 0, std, 1.0)
    scaled = (ref - mean) / std
    out = []
    for i, q in enumerate(np.asarray(queries, np.float64)):
        d = np.sqrt((((q - mean) / std - scaled) ** 2).sum(1))  # to every reference row
        if leave_out_self:
            d = np.delete(d, i)
        out.append(d.min() if len(d) else 0.0)
    return np.array(out)


def test_distances_and_leave_one_out_against_a_loop():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 5)) * [1, 10, 0.1, 1, 1]
    ref[:, 3] = 2.5  # constant: only centred
    ref[7] = ref[8]  # a duplicate: leave-one-out distance 0
    ref = ref.astype(np.float32)  # embeddings are float32, and the reference keeps them so
    queries = rng.normal(size=(270, 5))  # more than one block of queries
    nb = Neighbours(ref)
    np.testing.assert_allclose(nb.distances(queries), _standardised_nearest(queries, ref),
                               rtol=1e-9, atol=1e-9)
    loo = nb.leave_one_out()
    np.testing.assert_allclose(loo, _standardised_nearest(ref, ref, leave_out_self=True),
                               rtol=1e-9, atol=1e-9)
    assert loo[7] == loo[8] == 0.0
    assert Neighbours(ref[:1]).leave_one_out().tolist() == [0.0]
    with pytest.raises(ValueError, match="4 dimensions|5 dimensions"):
        nb.distances(queries[:, :4])
    # a dimension that varies by float32 noise only is centred, not blown up
    flat = np.c_[ref, 1.0 + 1e-7 * np.random.default_rng(1).normal(size=len(ref))]
    np.testing.assert_allclose(Neighbours(flat).distances(np.c_[queries, np.full(270, 1.0)]),
                               nb.distances(queries), rtol=1e-6)


def test_the_reservoir_keeps_all_in_order_then_a_uniform_sample():
    rows = np.arange(40)[:, None]
    r = Reservoir(50, np.random.default_rng(0))
    for chunk in np.array_split(rows, 3):
        r.add(chunk)
    assert r.rows is not None and r.rows[:, 0].tolist() == list(range(40)) and r.seen == 40
    # past its size every row is kept with the same chance, whatever the chunks
    hits = np.zeros(20)
    for seed in range(2000):
        r = Reservoir(5, np.random.default_rng(seed))
        for chunk in np.array_split(np.arange(20)[:, None], [3, 4, 11]):
            r.add(chunk)
        assert r.rows is not None and len(set(r.rows[:, 0])) == 5
        hits[r.rows[:, 0]] += 1
    np.testing.assert_allclose(hits / 2000, 5 / 20, atol=0.035)  # sd about 0.01


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    train = [np.sin(np.linspace(0, 6, n) + rng.uniform(0, 1))[:, None]
             + 0.05 * rng.normal(size=(n, 1)) for n in rng.integers(8, 30, 40)]
    test = train[:3] + [rng.normal(size=(n, 1)) for n in (12, 1, 20)]  # length 1 too
    return train, test


@pytest.fixture(scope="module")
def fitted(data):
    train, _ = data
    return seqae.SequenceAutoencoder(anomaly_score="neighbours", **SMALL).fit(train)


def test_scores_are_distances_to_the_nearest_training_embedding(fitted, data):
    train, test = data
    z_train = fitted.encode(train)
    got = fitted.score(test)
    np.testing.assert_allclose(got, _standardised_nearest(fitted.encode(test), z_train),
                               rtol=1e-4, atol=1e-4)
    assert np.abs(got[:3]).max() < 1e-3  # training sequences are in the reference
    np.testing.assert_allclose(
        fitted.train_scores_, _standardised_nearest(z_train, z_train, leave_out_self=True),
        rtol=1e-4, atol=1e-4)
    assert fitted.threshold_ == pytest.approx(np.quantile(fitted.train_scores_, 0.99))
    assert fitted.neighbours_ is not None and fitted.neighbours_.reference.shape == (40, 4)
    assert fitted.n_train_sequences_ == 40
    # alone or in a batch: the same score
    alone = np.concatenate([fitted.score([s]) for s in test])
    np.testing.assert_allclose(alone, got, rtol=1e-5, atol=1e-5)  # float32 embeddings
    assert fitted.is_anomaly(test).tolist() == (got > fitted.threshold_).tolist()


def test_what_it_refuses(fitted, data, tmp_path):
    train, test = data
    with pytest.raises(ValueError, match="no per-step scores"):
        fitted.score(test, per_step=True)
    from seqae.cli.figures import _step_scores

    seqs = seqae.Sequences.from_list(test)  # the report draws no per-step scores then
    assert _step_scores(fitted, seqs, fitted.score(seqs)) is None
    with pytest.raises(ValueError, match="max_len_policy='window'"):
        seqae.SequenceAutoencoder(anomaly_score="neighbours", max_len_policy="window").fit(
            train)
    with pytest.raises(ValueError, match="anomaly_score must be"):
        seqae.SequenceAutoencoder(anomaly_score="knn").fit(train)
    with pytest.raises(ExportError, match="export the encoder"):
        fitted.export(tmp_path / "scorer.pt", part="scorer")
    assert not list(tmp_path.iterdir())
    changed = seqae.clone(fitted).set_params(anomaly_score="reconstruction")
    changed._commit(fitted._fitted())
    with pytest.raises(ValueError, match="fitted with 'neighbours'"):
        changed.score(test)
    with pytest.raises(ValueError, match="fitted with 'neighbours'"):
        changed.save(tmp_path / "m")
    windowed = seqae.clone(fitted).set_params(max_len_policy="window")
    windowed._commit(fitted._fitted())
    with pytest.raises(ValueError, match="set it back"):
        windowed.score(test)
    assert not (tmp_path / "m").exists()


def test_past_its_size_the_reference_is_a_sample_and_the_folder_keeps_it(
        data, tmp_path, monkeypatch):
    train, test = data
    monkeypatch.setattr(seqae.estimator, "REFERENCE", 10)
    monkeypatch.setattr(seqae.model_dir, "REFERENCE", 10)
    ae = seqae.SequenceAutoencoder(anomaly_score="neighbours", **{**SMALL, "max_epochs": 1})
    ae.fit(train)
    ref = ae.neighbours_.reference
    z_train = ae.encode(train)
    assert ref.shape == (10, 4) and len(ae.train_scores_) == 10
    assert ae.n_train_sequences_ == 40
    # the 10 kept are training embeddings, distinct ones
    kept = [int(np.abs(z_train - r).max(1).argmin()) for r in ref]
    assert len(set(kept)) == 10
    np.testing.assert_allclose(ref, z_train[kept], atol=1e-5)
    np.testing.assert_allclose(ae.score(test), _standardised_nearest(ae.encode(test), ref),
                               rtol=1e-4, atol=1e-4)
    back = seqae.SequenceAutoencoder.load(ae.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.score(test), ae.score(test))
    assert back.n_train_sequences_ == 40


def test_the_folder_keeps_the_reference_and_checks_it(fitted, data, tmp_path):
    _, test = data
    folder = fitted.save(tmp_path / "m")
    back = seqae.SequenceAutoencoder.load(folder)
    np.testing.assert_array_equal(back.score(test), fitted.score(test))
    np.testing.assert_array_equal(back.train_scores_, fitted.train_scores_)
    assert back.anomaly_score == "neighbours" and back.threshold_ == fitted.threshold_
    config = json.loads((folder / "config.json").read_text())
    assert len(config["neighbours_sha256"]) == 64
    # a changed reference, or one the config no longer names, is refused
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    blob = bytearray((bad / "neighbours.safetensors").read_bytes())
    blob[-1] ^= 1
    (bad / "neighbours.safetensors").write_bytes(bytes(blob))
    with pytest.raises(IncompatibleModelError, match="checksum"):
        seqae.SequenceAutoencoder.load(bad)
    del config["neighbours_sha256"]
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(IncompatibleModelError, match="names no reference"):
        seqae.SequenceAutoencoder.load(bad)
    # a reconstruction model saved over it leaves no reference behind
    plain = seqae.SequenceAutoencoder(**{**SMALL, "max_epochs": 1}).fit(data[0])
    plain.save(folder)
    assert not (folder / "neighbours.safetensors").exists()
    assert seqae.SequenceAutoencoder.load(folder).neighbours_ is None


def test_a_parquet_folder_is_scored_as_the_data_read_whole(tmp_path):
    folder = write_parquet_folder(tmp_path / "data", n_files=2, per_file=20)
    src = ParquetSource(folder, time_col="t")
    ae = seqae.SequenceAutoencoder(anomaly_score="neighbours", **SMALL).fit(src)
    whole = seqae.Sequences.concat([seqae.read_sequences(f, time_col="t")
                                    for f in sorted(folder.glob("*.parquet"))])
    assert ae.neighbours_ is not None and len(ae.neighbours_.reference) == 40
    np.testing.assert_allclose(ae.score(src), ae.score(whole), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ae.neighbours_.distances(ae.encode(whole)), ae.score(whole))


def test_the_command_line_trains_and_scores_with_it(tmp_path, capsys):
    from seqae.cli import main
    from seqae.datasets import demo_table

    data = tmp_path / "long.parquet"
    pq.write_table(demo_table(n=30, seed=2), data)
    assert main(["train", str(data), "--out", str(tmp_path / "m"), "--time-col", "t",
                 "--label-col", "label", "--anomaly-score", "neighbours", "--epochs", "1",
                 "--latent-dim", "3", "--hidden-size", "8", "--batch-size", "8", "-q"]) == 0
    assert main(["info", str(tmp_path / "m"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["anomaly_score"] == "neighbours"
    assert main(["score", str(tmp_path / "m"), str(data), "--out",
                 str(tmp_path / "s.parquet"), "-q"]) == 0
    ae = seqae.SequenceAutoencoder.load(tmp_path / "m")
    got = pq.read_table(tmp_path / "s.parquet")
    seqs = seqae.Sequences.from_table(pq.read_table(data), id="id", time="t",
                                      features=["signal", "rate", "level"])
    order = {i: k for k, i in enumerate(seqs.ids)}
    want = ae.score(seqs)[[order[i] for i in got.column("id").to_pylist()]]
    np.testing.assert_allclose(got.column("score").to_numpy(), want, rtol=1e-5, atol=1e-6)
    assert main(["score", str(tmp_path / "m"), str(data), "--out",
                 str(tmp_path / "steps.parquet"), "--per-step", "-q"]) != 0
    assert "no per-step scores" in capsys.readouterr().err
    assert not (tmp_path / "steps.parquet").exists()
