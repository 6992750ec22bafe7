"""The model folder (seqae.model_dir): write and read back exactly, what `info` says
against values worked out here, format-1 folders read with their weights renamed,
folders of another kind, format or checksum refused, and the model written while a fit
runs (the best weights, the history merged on resume)."""

import copy
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import seqae
from seqae import IncompatibleModelError, Sequences
from seqae.model_dir import (
    FORMAT_VERSION,
    RUN_FILE,
    Fitted,
    PartialWriter,
    info,
    read,
    read_data_settings,
    read_history,
    write,
    write_data_settings,
)

KIND = "SequenceAutoencoder"
GOLDEN = Path(__file__).parent / "golden"
GRU_V1 = GOLDEN / "model-gru-d14de26"
TEXTS_V1 = GOLDEN / "model-texts-d14de26"
TINY = dict(latent_dim=3, hidden_size=8, max_epochs=2, batch_size=8, threads=1, verbose=0,
            device="cpu", seed=0, normalize="global", patience=100)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return Sequences.from_list([rng.normal(size=(k, 2)).astype(np.float32)
                                for k in rng.integers(1, 12, 24)], feature_names=["u", "v"])


@pytest.fixture(scope="module")
def ae(data):
    val = Sequences.from_list([np.ones((3, 2), np.float32), np.zeros((5, 2), np.float32)])
    return seqae.SequenceAutoencoder(**TINY).fit(data, validation=val)


def _fitted(ae, net=None, history=None) -> Fitted:
    return Fitted(net or ae.module_, ae.model_config_, ae.task_, ae.max_length_,
                  list(ae.history_) if history is None else history, ae.train_scores_,
                  ae.threshold_)


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            config[outer][inner] = value
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ write and read
def test_write_then_read_gives_the_same_model_exactly(ae, tmp_path):
    folder = write(tmp_path / "m", _fitted(ae), ae.get_params(), KIND)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metrics.csv",
                                                        "weights.safetensors"]
    params, fitted = read(folder, KIND, device="cpu")
    assert params == ae.get_params()
    mine, theirs = fitted.net.state_dict(), ae.module_.state_dict()
    assert mine.keys() == theirs.keys()
    for k, v in theirs.items():
        assert torch.equal(mine[k], v), k
    assert not fitted.net.training
    assert fitted.config == ae.model_config_
    assert fitted.task.to_config() == ae.task_.to_config()
    assert fitted.max_length == ae.max_length_
    assert fitted.history == ae.history_  # the floats survive the CSV exactly
    assert fitted.threshold == ae.threshold_
    np.testing.assert_array_equal(fitted.train_scores, ae.train_scores_)
    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION == 2 and config["partial"] is None


def test_info_says_what_the_folder_holds(ae, data, tmp_path):
    folder = write(tmp_path / "m", _fitted(ae), ae.get_params(), KIND)
    out = info(folder)
    assert list(out) == ["model", "versions", "data", "architecture", "parameters", "training",
                         "threshold", "settings"]
    assert out["model"] == str(folder)
    assert out["versions"] == {"format": 2, "seqae": seqae.__version__,
                               "torch": torch.__version__}
    assert out["data"] == {"kind": "continuous", "features": 2, "feature_names": ["u", "v"],
                           "vocabulary": None, "vocab_size": None, "training_sequences": 24,
                           "scored_sequences": 24,
                           "longest": int(data.lengths.max()), "normalize": "global",
                           "missing": "error", "source": None}
    arch = out["architecture"]
    assert (arch["encoder"], arch["hidden_size"], arch["latent_dim"]) == ("rnn", 8, 3)
    assert "depth" not in arch  # a recurrent encoder has no depth
    assert out["parameters"] == sum(p.numel() for p in ae.module_.parameters())
    history = ae.history_
    best = min(history, key=lambda r: r["val_loss"])  # the validation loss decides
    assert out["training"] == {"epochs": 2, "seconds": history[-1]["time"],
                               "best_epoch": best["epoch"],
                               "best_train_loss": best["train_loss"],
                               "best_val_loss": best["val_loss"]}
    assert out["threshold"] == ae.threshold_
    assert out["settings"] == ae.get_params()
    write_data_settings(folder, {"data": {"source": "train.parquet", "time_col": "t"}})
    assert info(folder)["data"]["source"] == "train.parquet"


# ------------------------------------------------------------------ format 1
def test_a_format_1_folder_reads_with_its_weights_under_encoder_body():
    config = json.loads((GRU_V1 / "config.json").read_text())
    assert config["format_version"] == 1 and "max_length" in config["model"]
    raw = load_file(str(GRU_V1 / "weights.safetensors"))
    assert any(k.startswith("encoder.rnn.") for k in raw)
    params, fitted = read(GRU_V1, KIND, device="cpu")
    state = fitted.net.state_dict()
    assert not any(k.startswith("encoder.rnn.") for k in state)
    assert any(k.startswith("encoder.body.") for k in state)
    assert len(state) == len(raw)
    for k, v in raw.items():
        assert torch.equal(state[k.replace("encoder.rnn.", "encoder.body.", 1)], v), k
    assert fitted.config.longest_predicted == config["model"]["max_length"] == 420
    assert params == config["params"]
    assert fitted.threshold == config["threshold"]
    np.testing.assert_array_equal(fitted.train_scores, config["train_scores"])
    rows = _csv_rows(GRU_V1 / "metrics.csv")
    assert [r["epoch"] for r in fitted.history] == [int(r["epoch"]) for r in rows]
    assert [r["train_loss"] for r in fitted.history] == [float(r["train_loss"]) for r in rows]
    np.testing.assert_array_equal(fitted.task.scaler.mean_,
                                  np.float32(config["scaler"]["mean"]))
    assert info(GRU_V1)["versions"]["format"] == 1


def test_a_format_1_texts_folder_reads_its_vocabulary():
    config = json.loads((TEXTS_V1 / "config.json").read_text())
    out = info(TEXTS_V1)
    assert out["data"]["kind"] == "texts"
    assert out["data"]["vocabulary"] == "".join(config["vocab"]["chars"])
    assert out["data"]["vocab_size"] == config["vocab_size"] == 4 + len(config["vocab"]["chars"])
    assert out["data"]["features"] is None
    assert out["training"]["epochs"] == len(_csv_rows(TEXTS_V1 / "metrics.csv")) == 2


def test_a_format_1_setting_this_seqae_no_longer_has_is_refused(tmp_path):
    folder = _copy(GRU_V1, tmp_path)
    _edit_config(folder, **{"model.conv_output": 16})
    with pytest.raises(IncompatibleModelError, match="sets model.conv_output, which this seqae "
                                                     "no longer has"):
        read(folder, KIND, device="cpu")


# ------------------------------------------------------------------ refused
@pytest.mark.parametrize("change, named", [({"format_version": 99}, "'SequenceAutoencoder' "
                                                                    "model in format 99"),
                                           ({"kind": "Other"}, "'Other' model in format 1"),
                                           ({"format_version": None}, "model in format None")])
def test_another_format_or_kind_is_refused_naming_the_formats_read(tmp_path, change, named):
    folder = _copy(GRU_V1, tmp_path)
    _edit_config(folder, **change)
    with pytest.raises(IncompatibleModelError,
                       match=rf"{named}; this seqae \(.*\) reads SequenceAutoencoder formats "
                             r"1, 2"):
        read(folder, KIND, device="cpu")
    with pytest.raises(IncompatibleModelError, match="formats 1, 2"):
        info(folder)


def test_a_folder_of_the_right_format_for_another_kind_is_refused():
    with pytest.raises(IncompatibleModelError, match="reads Other formats 1, 2"):
        read(GRU_V1, "Other", device="cpu")


def test_a_changed_weight_byte_is_refused_by_the_checksum(tmp_path):
    folder = _copy(GRU_V1, tmp_path)
    blob = bytearray((folder / "weights.safetensors").read_bytes())
    blob[-5] ^= 0x01  # one bit of the last tensor's data
    (folder / "weights.safetensors").write_bytes(bytes(blob))
    with pytest.raises(IncompatibleModelError, match="does not match config.json \\(checksum "
                                                     "differs\\)"):
        read(folder, KIND, device="cpu")


def test_a_folder_without_a_readable_config_is_refused(tmp_path):
    with pytest.raises(IncompatibleModelError, match="is not a seqae model directory"):
        read(tmp_path, KIND)
    folder = _copy(GRU_V1, tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(IncompatibleModelError, match="config.json is not valid JSON"):
        read(folder, KIND)


# ------------------------------------------------------------------ written during fit
def test_the_partial_writer_keeps_the_best_state_not_the_current_weights(ae, tmp_path):
    net = copy.deepcopy(ae.module_)
    best = {k: v.clone() for k, v in net.state_dict().items()}
    writer = PartialWriter(_fitted(ae, net, []), ae.get_params(), KIND, tmp_path)
    writer.on_best(1, best)
    with torch.no_grad():  # a worse epoch 2: the folder keeps epoch 1's weights
        for p in net.parameters():
            p.add_(1.0)
    writer.on_epoch_end(1, {"epoch": 1, "train_loss": 1.0})
    writer.on_epoch_end(2, {"epoch": 2, "train_loss": 2.0})
    _, fitted = read(tmp_path, KIND, device="cpu")
    state = fitted.net.state_dict()
    for k, v in state.items():
        assert torch.equal(v, best[k]), k
    for k, p in net.named_parameters():  # and none of the newest
        assert not torch.equal(state[k], p), k
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["partial"]["epoch"] == 2
    assert config["train_scores"] is None and config["threshold"] is None
    assert fitted.threshold is None and len(fitted.train_scores) == 0
    assert fitted.history == [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 2.0}]


def test_the_partial_writer_without_a_best_state_writes_the_current_weights(ae, tmp_path):
    net = copy.deepcopy(ae.module_)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(-1.0)
    PartialWriter(_fitted(ae, net, []), ae.get_params(), KIND, tmp_path).on_epoch_end(
        1, {"epoch": 1, "train_loss": 3.0})
    _, fitted = read(tmp_path, KIND, device="cpu")
    for k, v in net.state_dict().items():
        assert torch.equal(fitted.net.state_dict()[k], v), k


def _history(epochs, loss):
    return [{"epoch": e, "train_loss": loss + e / 8, "val_loss": loss + e / 4} for e in epochs]


@pytest.mark.parametrize("written", [[1, 2, 3], [1, 2, 3, 4, 5]])
def test_a_resumed_writer_merges_the_history_in_the_folder(ae, tmp_path, written):
    # the folder of the interrupted run: its epochs' records (those at or after the
    # epoch the resumed run starts again give way to the new ones)
    write(tmp_path, _fitted(ae, history=_history(written, 1.0)), ae.get_params(), KIND,
          partial_epoch=written[-1])
    fitted = _fitted(ae, copy.deepcopy(ae.module_), [])  # resumed: nothing in memory yet
    writer = PartialWriter(fitted, ae.get_params(), KIND, tmp_path)
    writer.on_epoch_end(4, _history([4], 7.0)[0])
    expected = _history([1, 2, 3], 1.0) + _history([4], 7.0)
    assert read_history(tmp_path / "metrics.csv") == expected
    assert fitted.history == expected
    writer.on_epoch_end(5, _history([5], 7.0)[0])
    assert read_history(tmp_path / "metrics.csv") == expected + _history([5], 7.0)
    assert json.loads((tmp_path / "config.json").read_text())["partial"]["epoch"] == 5


def test_a_partial_write_has_no_scores_or_threshold_even_when_known(ae, tmp_path):
    write(tmp_path, _fitted(ae), ae.get_params(), KIND, partial_epoch=2)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["train_scores"] is None and config["threshold"] is None
    assert config["partial"]["epoch"] == 2
    _, fitted = read(tmp_path, KIND, device="cpu")
    assert fitted.threshold is None and fitted.train_scores.shape == (0,)
    assert info(tmp_path)["data"]["training_sequences"] == 0


# ------------------------------------------------------------------ run.json, metrics.csv
def test_data_settings_round_trip_and_are_empty_without_run_json(tmp_path):
    assert read_data_settings(tmp_path) == {}
    settings = {"data": {"source": "x.parquet", "id_col": "id", "time_col": None},
                "command": "fit"}
    write_data_settings(tmp_path, settings)
    assert json.loads((tmp_path / RUN_FILE).read_text()) == settings
    assert read_data_settings(tmp_path) == settings["data"]


def test_read_history_types_and_missing_file(tmp_path):
    assert read_history(tmp_path / "metrics.csv") == []
    (tmp_path / "metrics.csv").write_text("epoch,train_loss,val_loss\n1,0.5,\n2,0.25,0.75\n")
    assert read_history(tmp_path / "metrics.csv") == [
        {"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25, "val_loss": 0.75}]
    assert isinstance(read_history(tmp_path / "metrics.csv")[0]["epoch"], int)
