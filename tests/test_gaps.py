"""Gaps inside sequences (missing="mask"): observed-only statistics, losses and scores,
the observed indicator, masked imputation, `impute`, per-step scores, the CLI, and the
hostile cases; each number against a numpy reference."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import seqae
from seqae.cli import main
from seqae.errors import DataFileError, ExportError, SequenceDataError
from seqae.losses import masked_mae, masked_mse
from seqae.nn.model import (
    IMPUTE_WEIGHT,
    AutoencoderNet,
    ModelConfig,
    interpolate,
    observed,
    with_indicator,
)
from seqae.sources import DeviceData
from seqae.tasks import HIDE_OBSERVED
from tests.helpers import check_padding_invariance


def _gappy(seed: int = 0, n: int = 40, f: int = 3, share: float = 0.2) -> list[np.ndarray]:
    """Random walks of 4-15 steps with a share of elements missing; sequence 0 misses
    its feature 1 entirely; step 1 of sequence 1 misses every feature."""
    rng = np.random.default_rng(seed)
    out = []
    for length in rng.integers(4, 16, n):
        a = rng.normal(size=(length, f)).cumsum(0).astype(np.float32)
        a[rng.random(a.shape) < share] = np.nan
        a[0, 0] = 0.5  # at least one observed value per sequence
        out.append(a)
    out[0][:, 1] = np.nan
    out[1][1, :] = np.nan
    return out


@pytest.fixture(scope="module")
def data() -> list[np.ndarray]:
    return _gappy()


@pytest.fixture(scope="module")
def ae(data) -> seqae.SequenceAutoencoder:
    return seqae.SequenceAutoencoder(hidden_size=8, latent_dim=4, max_epochs=2, missing="mask",
                                     verbose=0).fit(data)


# ------------------------------------------------------------------------ the container
def test_default_refuses_nan_naming_sequence_step_feature(data):
    with pytest.raises(SequenceDataError, match=r"sequence 0 has a NaN .* step 0, feature 1.*"
                                                r"missing='mask'"):
        seqae.Sequences.from_list(data)
    with pytest.raises(SequenceDataError, match="sequence 0 has a NaN"):
        seqae.SequenceAutoencoder(verbose=0).fit(data)
    masked = seqae.Sequences.from_list(data, missing="mask")
    with pytest.raises(SequenceDataError, match=r"sequence 0 has a NaN \(missing\) value at "
                                                "step 0, feature 1"):
        seqae.SequenceAutoencoder(verbose=0).fit(masked)  # a Sequences that allows gaps


def test_mask_keeps_nan_refuses_inf_and_carries_the_flag(data):
    s = seqae.Sequences.from_list(data, missing="mask")
    assert np.isnan(s.values).sum() == sum(np.isnan(a).sum() for a in data)
    for part in (s[:5], s.take([3, 1]), seqae.Sequences.concat([s[:2], s[2:]]),
                 s.with_values(s.values)):
        assert part.missing == "mask"
    bad = [a.copy() for a in data[:2]]
    bad[1][2, 0] = np.inf
    with pytest.raises(SequenceDataError, match="sequence 1 has an infinite value at step 2"):
        seqae.Sequences.from_list(bad, missing="mask")
    x, lengths = s.pad(value=np.nan)
    back = seqae.Sequences.from_padded(x, lengths, missing="mask")  # lengths decide padding
    assert np.array_equal(back.values, s.values, equal_nan=True)


def test_statistics_use_observed_elements_only(data):
    s = seqae.Sequences.from_list(data, missing="mask")
    v = s.values.astype(np.float64)
    mean, std = s.feature_stats()
    np.testing.assert_allclose(mean, np.nanmean(v, 0), rtol=1e-6)
    np.testing.assert_allclose(std, np.nanstd(v, 0), rtol=1e-6)
    m, sd = s.sequence_stats()
    for i, a in enumerate(data):
        a = a.astype(np.float64)
        for j in range(a.shape[1]):
            col = a[:, j][~np.isnan(a[:, j])]
            if not len(col):  # a feature missing in the whole sequence: 0 and 1
                assert (m[i, j], sd[i, j]) == (0.0, 1.0)
                continue
            assert m[i, j] == pytest.approx(col.mean(), rel=1e-5, abs=1e-6)
            want = col.std() if col.std() > 1e-8 * max(1.0, abs(col.mean())) else 1.0
            assert sd[i, j] == pytest.approx(want, rel=1e-5, abs=1e-6)
    scaler = seqae.scaling.Scaler("global").fit(s)
    z, _ = scaler.transform(s)
    assert np.array_equal(np.isnan(z.values), np.isnan(s.values))  # gaps stay gaps


def test_masked_losses_take_an_element_mask():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(2, 2, 4, 3)).astype(np.float32)
    target[0, 1, 2] = np.nan
    keep = rng.random((2, 4, 3)) < 0.7
    keep[1, 3] = False  # row 1 has 3 steps: its padding is not kept
    keep &= ~np.isnan(target)
    p, t, m = map(torch.from_numpy, (pred, target, keep))
    sq = np.where(keep, (pred - np.nan_to_num(target)) ** 2, 0.0)
    assert masked_mse(p, t, m).item() == pytest.approx(sq.sum() / keep.sum(), rel=1e-6)
    assert masked_mse(p, t, m, reduction="sum").item() == pytest.approx(sq.sum(), rel=1e-6)
    np.testing.assert_allclose(masked_mse(p, t, m, reduction="sequence").numpy(),
                               sq.sum((1, 2)) / keep.sum((1, 2)), rtol=1e-6)
    ab = np.where(keep, np.abs(pred - np.nan_to_num(target)), 0.0)
    assert masked_mae(p, t, m).item() == pytest.approx(ab.sum() / keep.sum(), rel=1e-6)
    p.requires_grad_(True)
    masked_mse(p, t, m).backward()
    assert torch.isfinite(p.grad).all() and (p.grad[~m] == 0).all()
    with pytest.raises(ValueError, match="element mask has shape"):
        masked_mse(p, t, m[:, :, :2])


# ------------------------------------------------------------------------ the model
def _net(hide: float = 0.0, imputer: bool = False, **kw) -> AutoencoderNet:
    torch.manual_seed(0)
    return AutoencoderNet(ModelConfig(n_features=3, latent_dim=4, hidden_size=8,
                                      missing=True, hide_observed=hide, imputer=imputer,
                                      **kw)).eval()


def _np_interpolate(a: np.ndarray) -> np.ndarray:
    """numpy reference: each feature's NaN filled by np.interp over its observed steps
    (flat beyond the ends), 0 where the feature has none."""
    out = a.astype(np.float64, copy=True)
    steps = np.arange(len(a))
    for j in range(a.shape[1]):
        seen = ~np.isnan(a[:, j])
        out[:, j] = np.interp(steps, steps[seen], a[seen, j]) if seen.any() else 0.0
    return out


def test_interpolate_against_numpy_with_any_padding():
    seqs = _gappy(5, n=6, share=0.4)
    seqs[2][:, 2] = np.nan  # a feature with no observation
    seqs.append(np.array([[np.nan, 1.0, np.nan]], np.float32))  # length 1
    for pad in (0.0, np.nan, 1e6):
        t = max(len(a) for a in seqs) + 2
        x = torch.full((len(seqs), t, 3), pad, dtype=torch.float32)
        for b, a in enumerate(seqs):
            x[b, :len(a)] = torch.from_numpy(a)
        n = torch.tensor([len(a) for a in seqs])
        got = interpolate(x, observed(x, n)).numpy()
        for b, a in enumerate(seqs):
            np.testing.assert_allclose(got[b, :len(a)], _np_interpolate(a), rtol=1e-6,
                                       atol=1e-6)
        filled = with_indicator(x, n, "linear").numpy()
        for b, a in enumerate(seqs):
            np.testing.assert_allclose(filled[b, :len(a), :3], got[b, :len(a)])
            assert (filled[b, len(a):] == 0).all()  # padding stays 0, whatever it held


def test_imputer_starts_at_the_interpolation_and_is_padding_invariant():
    seqs = [a.astype(np.float32) for a in _gappy(3, n=5)]
    for kw in ({}, {"encoder": "conv", "depth": 2, "patch": 2}):
        net = _net(hide=0.15, imputer=True, **kw)
        for a in seqs:  # a fresh head adds nothing: the values are the interpolation
            got = net.impute(torch.from_numpy(a[None]), torch.tensor([len(a)]))[0].numpy()
            np.testing.assert_allclose(got, _np_interpolate(a), rtol=1e-6, atol=1e-6)
        torch.nn.init.normal_(net.imputer.weight)
        check_padding_invariance(net.impute, seqs)
        check_padding_invariance(net.encode, seqs)
        one = [np.array([[np.nan, 2.0, 0.5]], np.float32)]
        check_padding_invariance(net.impute, one)


def test_imputer_loss_adds_the_hidden_elements_error():
    net = _net(hide=0.3, imputer=True)
    torch.nn.init.normal_(net.imputer.weight, std=0.3)
    x = torch.randn(2, 6, 3)
    x[0, 1, 2] = x[1, 0, 0] = float("nan")
    x[1, 4:] = float("nan")  # padding
    n = torch.tensor([6, 4])
    seen = observed(x, n)
    net.train()
    losses = {}
    for red in ("sum", "mean", "sequence"):
        torch.manual_seed(7)
        losses[red] = net.loss(x, n, masked_mse, reduction=red)[0].detach()
    torch.manual_seed(7)
    hide = seen & (torch.rand(x.shape) < 0.3)
    shown = torch.where(hide, float("nan"), x)
    net.eval()
    rec = net.decode(net.encode(shown, n), n, x.shape[1])
    imp = net.impute(shown, n)
    w = IMPUTE_WEIGHT / 0.3
    rec_e = torch.where(seen, rec - x, 0.0).square()
    imp_e = torch.where(hide, imp - x, 0.0).square()
    ref = rec_e.sum() + w * imp_e.sum()
    assert hide.any()
    assert losses["sum"].item() == pytest.approx(ref.item(), rel=1e-5)
    assert losses["mean"].item() == pytest.approx(ref.item() / seen.sum().item(), rel=1e-5)
    rows = (rec_e.flatten(1).sum(1) + w * imp_e.flatten(1).sum(1)) / seen.flatten(1).sum(1)
    np.testing.assert_allclose(losses["sequence"].numpy(), rows.numpy(), rtol=1e-5)
    net.eval()  # nothing hidden out of training: the reconstruction alone
    plain = net.loss(x, n, masked_mse, reduction="sum")[0]
    assert plain.item() == pytest.approx(
        torch.where(seen, net.reconstruct(x, n) - x, 0.0).square().sum().item(), rel=1e-5)


def test_indicator_tells_a_real_zero_from_a_gap():
    x = torch.tensor([[[0.0, 1.0], [float("nan"), 2.0]]])
    lengths = torch.tensor([2])
    assert observed(x, lengths).tolist() == [[[True, True], [False, True]]]
    assert with_indicator(x, lengths).tolist() == [[[0.0, 1.0, 1.0, 1.0],
                                                    [0.0, 2.0, 0.0, 1.0]]]
    net = _net()
    a = torch.randn(1, 5, 3)
    gap, zero = a.clone(), a.clone()
    gap[0, 2, 1], zero[0, 2, 1] = float("nan"), 0.0
    n = torch.tensor([5])
    assert not torch.allclose(net.encode(gap, n), net.encode(zero, n))


def test_padding_invariance_with_gaps():
    net = _net()
    seqs = [a.astype(np.float32) for a in _gappy(3, n=4)]
    check_padding_invariance(lambda x, n: net.encode(x, n), seqs)
    check_padding_invariance(lambda x, n: net.reconstruct(x, n), seqs)
    check_padding_invariance(lambda x, n: net.loss(x, n, masked_mse, reduction="sequence")[0],
                             seqs)


def test_loss_counts_observed_elements_and_hides_some_in_training():
    net = _net(hide=0.5)
    x = torch.randn(2, 6, 3)
    x[0, 1, 2] = x[1, 0, 0] = float("nan")
    x[1, 4:] = float("nan")  # padding
    n = torch.tensor([6, 4])
    loss, _, count = net.loss(x, n, masked_mse, reduction="sum")
    seen = observed(x, n)
    rec = net.reconstruct(x, n)
    ref = torch.where(seen, rec - x, 0.0).square().sum()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert int(count) == int(seen.sum()) == 6 * 3 + 4 * 3 - 2
    net.train()
    torch.manual_seed(1)
    hidden, _, _ = net.loss(x, n, masked_mse, reduction="sum")
    assert hidden.item() != pytest.approx(loss.item())  # the encoder saw fewer values
    torch.manual_seed(1)
    again, _, _ = net.loss(x, n, masked_mse, reduction="sum")
    assert again.item() == hidden.item()  # drawn from the seeded global generator
    assert 0.0 < HIDE_OBSERVED < 0.5


def test_training_normalises_by_observed_elements(data):
    s = seqae.Sequences.from_list(data, missing="mask")
    view = DeviceData(s, torch.device("cpu"))
    idx = np.array([0, 1, 5])
    assert view.elements(idx) == int(sum((~np.isnan(data[i])).sum() for i in idx))


# ------------------------------------------------------------------------ the estimator
def test_fit_with_gaps_is_finite_and_deterministic(ae, data):
    assert all(np.isfinite(r["train_loss"]) for r in ae.history_)
    assert ae.model_config_.missing and ae.model_config_.hide_observed == HIDE_OBSERVED
    assert np.isfinite(ae.encode(data)).all()
    twin = seqae.clone(ae).fit(data)
    assert np.array_equal(twin.encode(data), ae.encode(data))


def test_impute_keeps_observed_values_bit_for_bit(ae, data):
    s = seqae.Sequences.from_list(data, missing="mask")
    out = ae.impute(data)
    gap = np.isnan(s.values)
    assert not np.isnan(out.values).any()
    assert np.array_equal(out.values[~gap].view(np.uint32), s.values[~gap].view(np.uint32))
    assert np.array_equal(out.offsets, s.offsets)
    assert ae.model_config_.imputer
    plain = copy.deepcopy(ae)  # the head zeroed: linear interpolation, in input units
    torch.nn.init.zeros_(plain.module_.imputer.weight)
    torch.nn.init.zeros_(plain.module_.imputer.bias)
    ref = np.concatenate([_np_interpolate(a) for a in data])
    ref[:len(data[0]), 1] = plain.mean_[1]  # never observed there: the mean (0 scaled)
    np.testing.assert_allclose(plain.impute(data).values, ref, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out.values[gap], ref[gap], atol=1e-3)  # the trained correction


def test_scores_and_per_step_scores_against_numpy(ae, data):
    s = seqae.Sequences.from_list(data, missing="mask")
    err = (ae.reconstruct(data).values.astype(np.float64) - s.values) ** 2  # input units
    scores = ae.score(data)
    steps = ae.score(data, per_step=True)
    assert isinstance(steps, seqae.Sequences) and steps.feature_names == ["score"]
    np.testing.assert_array_equal(steps.lengths, s.lengths)
    for i in range(len(s)):
        e = err[s.offsets[i]:s.offsets[i + 1]]
        assert scores[i] == pytest.approx(np.nanmean(e), rel=1e-4)
        seen = (~np.isnan(e)).sum(1)
        with np.errstate(invalid="ignore"):  # NaN where a step misses every feature
            want = np.where(seen > 0, np.nansum(e, 1) / seen, np.nan)
        np.testing.assert_allclose(steps[i][:, 0], want, rtol=1e-4, atol=1e-6)
    assert np.isnan(steps[1][1, 0])


def test_per_step_scores_without_gaps_and_for_tokens():
    rng = np.random.default_rng(2)
    full = [rng.normal(size=(n, 2)) for n in (4, 7, 5)]
    m = seqae.SequenceAutoencoder(hidden_size=8, latent_dim=4, max_epochs=1, verbose=0)
    m.fit(full)
    steps = m.score(full, per_step=True)
    rec = m.reconstruct(full)
    ref = ((rec.values.astype(np.float64) - np.concatenate(full)) ** 2).mean(1)
    np.testing.assert_allclose(steps.values[:, 0], ref, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(m.score(full), [ref[:4].mean(), ref[4:11].mean(),
                                               ref[11:].mean()], rtol=1e-4)
    toks = [rng.integers(4, 9, n) for n in (3, 6)]
    t = seqae.SequenceAutoencoder(hidden_size=8, latent_dim=4, max_epochs=1, verbose=0)
    per = t.fit(toks).score(toks, per_step=True)
    assert per.lengths.tolist() == [3, 6] and np.isfinite(per.values).all()


def test_window_policy_stitches_impute_and_per_step(data):
    m = seqae.SequenceAutoencoder(hidden_size=8, latent_dim=4, max_epochs=1, missing="mask",
                                  max_len=6, max_len_policy="window", verbose=0).fit(data)
    out = m.impute(data)
    s = seqae.Sequences.from_list(data, missing="mask")
    assert np.array_equal(out.offsets, s.offsets) and not np.isnan(out.values).any()
    assert m.score(data, per_step=True).lengths.tolist() == s.lengths.tolist()
    trunc = seqae.clone(m).set_params(max_len_policy="truncate").fit(data)
    with pytest.raises(ValueError, match="impute fills every step"):
        trunc.impute(data)
    plain = copy.deepcopy(m)  # the head zeroed: each sequence's own interpolation, across
    torch.nn.init.zeros_(plain.module_.imputer.weight)  # the cuts between its pieces
    torch.nn.init.zeros_(plain.module_.imputer.bias)
    ref = np.concatenate([_np_interpolate(a) for a in data])
    ref[:len(data[0]), 1] = m.mean_[1]  # never observed there: the mean
    assert any(len(a) > 6 and np.isnan(a[5:7]).any() for a in data)  # gaps at the cuts
    np.testing.assert_allclose(plain.impute(data).values, ref, rtol=1e-5, atol=1e-5)


def test_ragged_interpolation_against_numpy_per_sequence():
    from seqae.lengths import interpolate_gaps

    data = _gappy(4, n=9, share=0.4)
    data[2][:, 0] = np.nan
    data.append(np.array([[np.nan, 1.0, 2.0]], np.float32))
    s = seqae.Sequences.from_list(data, missing="mask")
    fill = np.arange(len(data) * 3, dtype=np.float64).reshape(-1, 3) + 100
    got = interpolate_gaps(s, fill)
    for i, a in enumerate(data):
        ref = _np_interpolate(a)
        for j in range(3):
            if np.isnan(a[:, j]).all():
                ref[:, j] = fill[i, j]
        np.testing.assert_allclose(got[s.offsets[i]:s.offsets[i + 1]], ref, rtol=1e-12)


def test_save_load_keeps_the_gaps(ae, data, tmp_path):
    ae.save(tmp_path / "m")
    back = seqae.SequenceAutoencoder.load(tmp_path / "m")
    assert back.missing == "mask" and back.model_config_.missing
    assert np.array_equal(back.impute(data).values, ae.impute(data).values)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["params"]["missing"] == "mask"
    assert config["model"]["hide_observed"] == HIDE_OBSERVED
    assert seqae.model_dir.info(tmp_path / "m")["data"]["missing"] == "mask"
    with pytest.raises(ExportError, match="missing='mask'"):
        ae.export(tmp_path / "enc.onnx")


# ------------------------------------------------------------------------ hostile cases
def test_hostile_inputs(ae, data):
    gone = [a.copy() for a in data[:3]]
    gone[2][:] = np.nan
    with pytest.raises(SequenceDataError, match="sequence 2 has no observed value"):
        seqae.SequenceAutoencoder(missing="mask", verbose=0).fit(gone)
    with pytest.raises(SequenceDataError, match="sequence 2 has no observed value"):
        ae.impute(gone)
    never = [a.copy() for a in data[:4]]
    for a in never:
        a[:, 2] = np.nan
    with pytest.raises(SequenceDataError, match="feature 2 is never observed"):
        seqae.SequenceAutoencoder(missing="mask", verbose=0).fit(never)
    assert np.isfinite(ae.score(never)).all()  # a model takes a feature missing in new data
    with pytest.raises(SequenceDataError, match="missing='mask' is for continuous values"):
        seqae.SequenceAutoencoder(missing="mask", verbose=0).fit(
            [np.array([4, 5, 6]), np.array([5, 7])])
    with pytest.raises(SequenceDataError, match="missing='mask' is for continuous values"):
        seqae.SequenceAutoencoder(missing="mask", verbose=0).fit(["abc", "de"])
    with pytest.raises(ValueError, match="decoder='repeat'"):
        seqae.SequenceAutoencoder(missing="mask", decoder="autoregressive", hidden_size=8,
                                  max_epochs=1, verbose=0).fit(data[:5])
    with pytest.raises(ValueError, match="missing must be one of"):
        seqae.SequenceAutoencoder(missing="drop", verbose=0).fit(data)
    plain = seqae.SequenceAutoencoder(hidden_size=8, latent_dim=4, max_epochs=1, verbose=0)
    plain.fit([np.nan_to_num(a) for a in data[:5]])
    with pytest.raises(ValueError, match="impute needs a model fitted with missing='mask'"):
        plain.impute(data[:5])
    with pytest.raises(SequenceDataError, match=r"sequence 0 has a NaN \(missing\) value"):
        plain.score(seqae.Sequences.from_list(data[:5], missing="mask"))


# ------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("gaps_cli")
    rows = ["id,t,a,b"]
    for i, a in enumerate(_gappy(5, n=24, f=2)):
        for t, (u, v) in enumerate(a):
            rows.append(f"s{i},{t},{'' if np.isnan(u) else u},{'' if np.isnan(v) else v}")
    path = folder / "d.csv"
    path.write_text("\n".join(rows) + "\n")
    return folder, path


def test_cli_impute_and_per_step_scores(csv_file, capsys):
    import pyarrow.parquet as pq

    folder, path = csv_file
    model = folder / "m"
    assert main(["train", str(path), "--time-col", "t", "--out", str(model), "--epochs", "1",
                 "--hidden-size", "8", "--latent-dim", "4", "--missing", "mask",
                 "--threshold-rule", "mad", "-q"]) == 0
    assert main(["info", str(model), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["settings"]["threshold_rule"] == "mad" and facts["data"]["missing"] == "mask"
    out = folder / "imputed.parquet"
    assert main(["impute", str(model), str(path), "--out", str(out), "-q"]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["id", "t", "a", "b"]
    raw = seqae.read_sequences(path, time_col="t", missing="mask")
    got = np.column_stack([table.column(c).to_numpy() for c in ("a", "b")])
    gap = np.isnan(raw.values)
    assert not np.isnan(got).any() and np.array_equal(got[~gap], raw.values[~gap])
    steps = folder / "steps.parquet"
    assert main(["score", str(model), str(path), "--out", str(steps), "--per-step", "-q"]) == 0
    assert pq.read_table(steps).column_names == ["id", "t", "score"]
    assert pq.read_table(steps).num_rows == raw.n_steps
    assert main(["impute", str(model), str(path), "--out", str(path)]) == 2  # never the input
    assert "overwrite the input" in capsys.readouterr().err


def test_cli_missing_error_names_file_column_and_row(csv_file, capsys):
    folder, path = csv_file
    assert main(["train", str(path), "--time-col", "t", "--out", str(folder / "plain"),
                 "--epochs", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: column 'a', row" in err and "(id 's0')" in err and "--missing mask" in err
    with pytest.raises(DataFileError, match=r"list column 'x', row 1, step 2 \(sequence 1"):
        import pyarrow as pa

        from seqae.tables import from_list_columns

        table = pa.table({"id": [0, 1], "x": [[1.0, 2.0], [1.0, 2.0, None]]})
        from_list_columns(table, "id", ["x"], "f.parquet")


# ------------------------------------------------------------------------ thresholds
def test_mad_threshold_rule(ae, data, tmp_path):
    assert ae.threshold_ == pytest.approx(np.quantile(ae.train_scores_, 0.99))  # the default
    mad = seqae.clone(ae).set_params(threshold_rule="mad").fit(data)
    s = mad.train_scores_
    med = np.median(s)
    want = med + 3.5 * 1.4826 * np.median(np.abs(s - med))
    assert mad.threshold_ == pytest.approx(want, rel=1e-12)
    assert mad.threshold_for(0.05) == pytest.approx(np.quantile(s, 0.95))  # still there
    mad.save(tmp_path / "m")
    assert seqae.SequenceAutoencoder.load(tmp_path / "m").threshold_ == mad.threshold_
    assert seqae.model_dir.info(tmp_path / "m")["settings"]["threshold_rule"] == "mad"
    with pytest.raises(ValueError, match="threshold_rule must be one of"):
        seqae.SequenceAutoencoder(threshold_rule="iqr", verbose=0).fit(data)


def test_sequence_scaling_and_what_is_not_supported_yet(data, tmp_path):
    from seqae.stream import ParquetSource
    from tests.helpers import write_parquet_folder

    per_seq = seqae.SequenceAutoencoder(hidden_size=8, latent_dim=4, max_epochs=1,
                                        normalize="sequence", missing="mask", verbose=0)
    per_seq.fit(data[:12])  # sequence 0 misses a whole feature: training stats there
    assert np.isfinite(per_seq.score(data[:12])).all()
    assert not np.isnan(per_seq.impute(data[:12]).values).any()
    folder = write_parquet_folder(tmp_path / "f", n_files=1, per_file=5)
    with pytest.raises(ValueError, match="missing='mask' applies to data in memory"):
        seqae.SequenceAutoencoder(missing="mask", verbose=0).fit(
            ParquetSource(folder, time_col="t"))


def test_npz_and_ts_files_read_gaps_under_mask_only(tmp_path, capsys):
    data = _gappy(7, n=6, f=2)
    npz = tmp_path / "d.npz"
    np.savez(npz, values=np.concatenate(data), lengths=[len(a) for a in data])
    with pytest.raises(SequenceDataError, match=r"d.npz: sequence 0 has a NaN"):
        seqae.read_sequences(npz)
    got = seqae.read_sequences(npz, missing="mask")
    assert np.array_equal(np.isnan(got.values), np.isnan(np.concatenate(data)))
    ts = tmp_path / "d.ts"
    cases = [":".join(",".join("?" if np.isnan(v) else repr(float(v)) for v in a[:, j])
                      for j in range(2)) + ":yes" for a in data]
    ts.write_text("@problemName d\n@univariate false\n@classLabel true yes no\n@data\n"
                  + "\n".join(cases) + "\n")
    first = next(i for i, a in enumerate(data) if np.isnan(a).any())
    j = int(np.isnan(data[first]).any(0).argmax())
    pos = int(np.flatnonzero(np.isnan(data[first][:, j]))[0])
    with pytest.raises(DataFileError, match=rf"d.ts:{5 + first}: case {first}, dimension {j}, "
                                            rf"position {pos}: a missing value"):
        seqae.read_sequences(ts)
    got = seqae.read_sequences(ts, missing="mask")
    assert np.array_equal(np.isnan(got.values), np.isnan(np.concatenate(data)))
    np.testing.assert_array_equal(np.nan_to_num(got.values),
                                  np.nan_to_num(np.concatenate(data)))
    model = tmp_path / "m"
    assert main(["train", str(ts), "--out", str(model), "--epochs", "1", "--hidden-size", "8",
                 "--latent-dim", "4", "--missing", "mask", "-q"]) == 0
    assert main(["impute", str(model), str(ts), "--out", str(tmp_path / "f.parquet"),
                 "-q"]) == 0


def test_imputer_config_and_ts_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="imputer needs missing and hide_observed > 0"):
        AutoencoderNet(ModelConfig(n_features=2, missing=True, imputer=True))
    ts = tmp_path / "inf.ts"
    ts.write_text("@problemName d\n@univariate true\n@classLabel false\n@data\n1.0,inf,2.0\n")
    with pytest.raises(SequenceDataError,
                       match=r"inf.ts: sequence 0 has a NaN or infinite value at step 1"):
        seqae.read_sequences(ts)


def test_sequence_scaling_imputes_a_never_seen_feature_at_its_training_mean(tmp_path):
    data = _gappy(11, n=30)
    data[3][:, 1] = np.nan  # never observed in sequence 3
    ae = seqae.SequenceAutoencoder(hidden_size=8, latent_dim=4, max_epochs=2, missing="mask",
                                   normalize="sequence", verbose=0).fit(data)
    flat = np.concatenate(data)[:, 1]
    mean = flat[~np.isnan(flat)].astype(np.float64).mean()
    plain = copy.deepcopy(ae)  # the head zeroed: the fill alone
    torch.nn.init.zeros_(plain.module_.imputer.weight)
    torch.nn.init.zeros_(plain.module_.imputer.bias)
    np.testing.assert_allclose(plain.impute(data)[3][:, 1], mean, rtol=1e-5)
    ae.save(tmp_path / "m")
    again = seqae.SequenceAutoencoder.load(tmp_path / "m")
    assert np.array_equal(again.impute(data).values, ae.impute(data).values)


def test_mad_threshold_when_over_half_the_scores_tie():
    """MAD 0 (six of nine scores equal): 1.2533 x the mean absolute deviation from the
    median stands in, so the scores just above the tie are not all flagged."""
    from seqae.estimator import _threshold

    scores = np.array([1.0] * 6 + [2.0, 3.0, 10.0])
    # median 1, deviations 0 x 6, 1, 2, 9: mean 12 / 9
    assert _threshold(scores, "mad", 0.01) == pytest.approx(1 + 3.5 * 1.2533 * 12 / 9)
    assert _threshold(np.full(5, 2.0), "mad", 0.01) == 2.0  # all equal: the value itself
    spread = np.array([1.0, 2.0, 3.0, 4.0, 100.0])  # MAD 1: the usual rule
    assert _threshold(spread, "mad", 0.01) == pytest.approx(3 + 3.5 * 1.4826)


def test_per_step_scores_under_truncation_keep_the_input_lengths():
    """max_len_policy="truncate" scores each sequence's first max_len steps: per step,
    those steps' errors (as scoring the truncated input itself gives them), then NaN up
    to the input's own length; the sequence's score is the mean of the scored steps."""
    rng = np.random.default_rng(0)
    raw = [rng.normal(size=(t, 2)) for t in (3, 8, 1, 12)]
    ae = seqae.SequenceAutoencoder(hidden_size=8, latent_dim=4, max_epochs=1, max_len=5,
                                   max_len_policy="truncate", verbose=0)
    ae.fit(seqae.Sequences.from_list(raw))
    steps = ae.score(seqae.Sequences.from_list(raw), per_step=True)
    cut = ae.score(seqae.Sequences.from_list([x[:5] for x in raw]), per_step=True)
    assert steps.lengths.tolist() == [3, 8, 1, 12]
    for got, want, x in zip(steps, cut, raw, strict=True):
        np.testing.assert_array_equal(got[:5, 0], want[:, 0])
        assert np.isnan(got[5:]).all() and len(got) == len(x)
    np.testing.assert_allclose([np.nanmean(s) for s in steps],
                               ae.score(seqae.Sequences.from_list(raw)), rtol=1e-5)
