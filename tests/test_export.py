"""Exported encoders, decoders and scorers (ONNX run by onnxruntime, TorchScript loaded by
`torch.jit.load`) give what `encode`, `decode` and `score` give, on batches unlike the
export's example: a lone step, a single sequence as long as the longest seen in training,
4 x longer, NaN (or junk ids) in the padding; and the hostile cases write nothing."""

import json

import numpy as np
import pytest
import torch

import seqae
from seqae.cli import main
from seqae.errors import ExportError

ort = pytest.importorskip("onnxruntime", reason="the export tests need onnxruntime "
                          "(pip install 'seqae[export]')")
pytest.importorskip("onnx", reason="ONNX export needs the onnx package (seqae[export])")

# The exported graph against the model, float32 both: the stated tolerance
RTOL, ATOL = 1e-4, 1e-5
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
SMALL = dict(latent_dim=4, hidden_size=8, max_epochs=2, verbose=0, validation_fraction=0,
             batch_size=8)
WORDS = ["cat", "dog", "bird", "a", "zebra", "at", "tac", "god", "do", "go", "cab", "dab",
         "horse", "ox"]


def _continuous(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return seqae.Sequences.from_list(
        [(rng.normal(size=(k, 2)) * [5.0, 0.1] + [3.0, -1.0]).astype(np.float32)
         for k in rng.integers(2, 16, n)])


@pytest.fixture(scope="module")
def models():
    """Every encoder family the defaults pick, the scaler's modes, texts; fitted once."""
    seqs = _continuous()
    fits = {
        "gru": (dict(), seqs),  # bidirectional GRU, global scaling
        "lstm": (dict(cell="lstm", num_layers=2, normalize="sequence"), seqs),
        "conv": (dict(encoder="conv", patch=3), seqs),  # dilated convolutions, patches
        "texts": (dict(), WORDS),
        "ar_texts": (dict(decoder="autoregressive"), WORDS),
    }
    return {name: seqae.SequenceAutoencoder(**SMALL, **kw).fit(data)
            for name, (kw, data) in fits.items()}


def _inputs(ae, rng):
    """Batches unlike the example (2 rows of 7 steps): one step alone; one sequence as
    long as the longest seen in training; four of mixed lengths up to 4 x that."""
    longest = ae.max_length_

    def one(k):
        if ae.vocab_size_:
            return rng.integers(4, ae.vocab_size_, k)
        return (rng.normal(size=(k, 2)) * [5.0, 0.1] + [3.0, -1.0]).astype(np.float32)

    return [[one(1)], [one(longest)], [one(4 * longest), one(1), one(5), one(longest)]]


def _padded(ae, batch, extra=3):
    """``(x, lengths)`` with ``extra`` padded steps past the longest row and NaN (junk
    ids for tokens, out of the vocabulary) in all of the padding."""
    lengths = np.array([len(s) for s in batch], np.int64)
    t = int(lengths.max()) + extra
    if ae.vocab_size_:
        x = np.full((len(batch), t), ae.vocab_size_ + 5, np.int64)
    else:
        x = np.full((len(batch), t, batch[0].shape[1]), np.nan, np.float32)
    for i, s in enumerate(batch):
        x[i, : len(s)] = s
    return x, lengths


def _runner(path, fmt):
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return lambda a, b: session.run(None, dict(zip(names, (a, b), strict=True)))[0]
    module = torch.jit.load(str(path))
    return lambda a, b: module(torch.from_numpy(a), torch.from_numpy(b)).numpy()


CASES = [(m, p) for m in ("gru", "lstm", "conv", "texts") for p in ("encoder", "decoder",
                                                                     "scorer")]
CASES += [("ar_texts", "encoder"), ("ar_texts", "scorer")]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name,part", CASES)
def test_export_gives_what_the_model_gives(models, name, part, fmt, tmp_path):
    ae = models[name]
    path = ae.export(tmp_path / f"{part}{FORMATS[fmt]}", part=part, format=fmt)
    run = _runner(path, fmt)
    rng = np.random.default_rng(1)
    for batch in _inputs(ae, rng):
        if part == "decoder":
            seqs = seqae.Sequences.from_list(batch)
            z = ae.encode(seqs)
            lengths = seqs.lengths.astype(np.int64)
            want = ae.decode(z, lengths=lengths)
            got = run(z, lengths)
            assert got.shape[:2] == (len(batch), lengths.max())
            for i, k in enumerate(lengths):
                if ae.vocab_size_:
                    np.testing.assert_array_equal(got[i, :k], want[i])
                    assert (got[i, k:] == 0).all()  # PAD past each length
                else:
                    np.testing.assert_allclose(got[i, :k], want[i], rtol=RTOL, atol=ATOL)
                    assert (got[i, k:] == 0).all()
            continue
        x, lengths = _padded(ae, batch)
        got = run(x, lengths)
        seqs = seqae.Sequences.from_list(batch)
        want = ae.encode(seqs) if part == "encoder" else ae.score(seqs)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        # the same rows with less padding (none past the longest), zeros in it: the same
        x0, _ = _padded(ae, batch, extra=0)
        np.testing.assert_allclose(run(np.where(np.isnan(x0), 0, x0) if not ae.vocab_size_
                                       else x0, lengths), got, rtol=RTOL, atol=ATOL)


def test_settings_beside_and_inside_the_files(models, tmp_path):
    ae = models["texts"]
    onnx_path = ae.export(tmp_path / "enc.onnx")
    pt_path = ae.export(tmp_path / "scorer.pt", part="scorer")
    beside = json.loads((tmp_path / "enc.onnx.json").read_text())
    assert beside["vocab"]["chars"] == ae.vocab_.chars
    assert beside["vocab"]["size"] == ae.vocab_size_ and beside["vocab"]["eos"] == 2
    assert [i["name"] for i in beside["inputs"]] == ["x", "lengths"]
    assert beside["inputs"][0]["dtype"] == "int64" and beside["latent_dim"] == 4
    meta = ort.InferenceSession(str(onnx_path)).get_modelmeta().custom_metadata_map
    inside = json.loads(meta["seqae"])
    assert inside == {k: v for k, v in beside.items() if k not in ("sha256", "checked")}
    extra = {"settings.json": ""}
    torch.jit.load(str(pt_path), _extra_files=extra)
    scorer = json.loads(extra["settings.json"])
    assert scorer["part"] == "scorer" and scorer["threshold"] == pytest.approx(ae.threshold_)
    cont = json.loads((models["gru"].export(tmp_path / "dec.onnx", part="decoder")
                       .with_name("dec.onnx.json")).read_text())
    assert cont["normalize"]["mode"] == "global" and cont["n_features"] == 2
    assert cont["outputs"][0]["shape"] == ["batch", "max(lengths)", 2]


# ---------------------------------------------------------------- hostile cases
@pytest.fixture(scope="module")
def model_dir(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("export") / "model"
    models["gru"].save(d)
    return d


def _listing(folder):
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())


def test_cli_export_writes_a_file_and_its_settings(model_dir, tmp_path, capsys):
    out = tmp_path / "scorer.pt"
    assert main(["export", str(model_dir), "--part", "scorer", "--out", str(out), "-q"]) == 0
    assert json.loads((tmp_path / "scorer.pt.json").read_text())["format"] == "torchscript"
    # seqae's own export is overwritten; the model folder is untouched
    before = _listing(model_dir)
    assert main(["export", str(model_dir), "--part", "scorer", "--out", str(out), "-q"]) == 0
    assert _listing(model_dir) == before


@pytest.mark.parametrize("args,message", [
    (["--out", "{model}"], "inside the model folder"),
    (["--out", "{model}/enc.onnx"], "inside the model folder"),
    (["--out", "{tmp}/mine.onnx"], "not written by seqae"),
    (["--out", "{tmp}/other.onnx"], "not written by seqae"),  # its .json is the user's
    (["--out", "{tmp}/enc.onnx", "--format", "torchscript"], "is for onnx"),
    (["--out", "{tmp}/enc.json"], "not .json"),
    (["--out", "{tmp}"], "is a folder"),
])
def test_cli_export_refuses_and_writes_nothing(model_dir, tmp_path, capsys, args, message):
    (tmp_path / "mine.onnx").write_text("the user's file")
    (tmp_path / "other.onnx.json").write_text("{}")
    before, inside = _listing(tmp_path), _listing(model_dir)
    args = [a.format(model=model_dir, tmp=tmp_path) for a in args]
    assert main(["export", str(model_dir), *args]) == 2
    assert message in capsys.readouterr().err
    assert _listing(tmp_path) == before and _listing(model_dir) == inside
    assert (tmp_path / "mine.onnx").read_text() == "the user's file"


def test_cli_export_refuses_bad_names_a_foreign_folder_and_unexportable_parts(
        models, model_dir, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    for flag, value in (("--part", "latent"), ("--format", "tflite")):
        with pytest.raises(SystemExit) as e:
            main(["export", str(model_dir), flag, value, "--out", str(out)])
        assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"kind": "Forecaster", "format_version": 9}))
    assert main(["export", str(other), "--out", str(out)]) == 2
    assert "Forecaster" in capsys.readouterr().err
    ar = tmp_path / "ar"
    models["ar_texts"].save(ar)
    assert main(["export", str(ar), "--part", "decoder", "--out", str(out)]) == 2
    assert "not exportable" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ar", "other"]


def test_library_refuses_bad_arguments_before_writing(models, tmp_path):
    ae = models["ar_texts"]
    for kwargs, message in ((dict(part="latent"), "part must be one of"),
                            (dict(format="tflite"), "format must be one of"),
                            (dict(part="decoder"), "decoder='repeat'")):
        with pytest.raises(ExportError, match=message):
            ae.export(tmp_path / "x.onnx", **kwargs)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="not fitted"):
        seqae.SequenceAutoencoder().export(tmp_path / "x.onnx")


def test_parser_offers_the_library_parts_and_formats():
    from seqae.cli.parser import build_parser
    from seqae.export import FORMATS as formats
    from seqae.export import PARTS

    sub = build_parser()._subparsers._group_actions[0].choices["export"]
    choices = {a.dest: tuple(a.choices) for a in sub._actions if a.choices}
    assert choices == {"part": PARTS, "format": formats}


# ---------------------------------------------------------------- a service without torch
def _bare_python(tmp_path):
    """A venv without pip whose path holds numpy and onnxruntime (and what they import),
    linked from this environment: no torch, no seqae, nothing downloaded."""
    import importlib.metadata as md
    import subprocess
    import sys

    env_dir, site = tmp_path / "venv", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    site.mkdir()
    for dist in ("numpy", "onnxruntime", "flatbuffers", "packaging", "protobuf"):
        d = md.distribution(dist)
        for top in {f.parts[0] for f in d.files or [] if ".." not in f.parts}:
            src = d.locate_file(top)
            if src.exists() and not (site / top).exists():
                (site / top).symlink_to(src)
    return env_dir / "bin" / "python", site


def test_docs_service_runs_with_onnxruntime_alone(models, tmp_path):
    """docs/deploy.md's service block runs where torch cannot be imported."""
    import os
    import re
    import subprocess
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    service = [b for b in blocks if "import onnxruntime" in b and "import seqae" not in b]
    assert len(service) == 1
    python, site = _bare_python(tmp_path)
    models["gru"].export(tmp_path / "encoder.onnx")
    (tmp_path / "service.py").write_text(service[0])
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(site),
           "OMP_WAIT_POLICY": "PASSIVE"}
    probe = subprocess.run([str(python), "-c", "import torch"], env=env, capture_output=True,
                           text=True, cwd=tmp_path)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    done = subprocess.run([str(python), "service.py"], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
