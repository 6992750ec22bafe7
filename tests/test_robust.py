"""Nothing lost, nothing silently wrong (issue 24): a catalogue of unusual inputs, each
refused with a message that names the problem, through the library and the command line
alike, and never leaving a file changed.

A case is a row of `CASES`: the files it writes into a fresh folder, a library call
and/or command-line arguments, and the message expected. The command line runs
in-process (`seqae.cli.main`), and every failing command is checked to leave every file
of its folder as it was (bytes and mtimes). The cases that are not errors (ids kept as
text, a BOM, U+2028, features in another order...) are tests of their own below.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seqae
from seqae.cli import main
from seqae.errors import SeqaeError

TINY = ["--epochs", "1", "--latent-dim", "2", "--hidden-size", "4", "--batch-size", "4", "-q"]


def _long(n: int = 8, steps: int = 4, **extra: Any) -> pa.Table:
    rng = np.random.default_rng(0)
    cols = {"id": np.repeat([f"s{i}" for i in range(n)], steps),
            "t": np.tile(np.arange(steps), n),
            "x": rng.normal(size=n * steps), "y": rng.normal(size=n * steps)}
    cols.update({k: (v(n * steps) if callable(v) else v) for k, v in extra.items()})
    return pa.table(cols)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """One tiny model (1 epoch), trained by the command line; cases copy its folder."""
    d = tmp_path_factory.mktemp("robust")
    pq.write_table(_long(), d / "data.parquet")
    assert main(["train", str(d / "data.parquet"), "--out", str(d / "m"), "--time-col", "t",
                 *TINY]) == 0
    return d / "m"


# --------------------------------------------------------------------------- files
def parquet(table: pa.Table) -> Callable[[Path], None]:
    return lambda p: pq.write_table(table, p)


def text(s: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda p: p.write_bytes(s.encode(encoding))


def npz(**arrays: Any) -> Callable[[Path], None]:
    return lambda p: np.savez(p, **arrays)


def model_copy(edit: Callable[[dict], Any] | None = None,
               weights: Callable[[Path], None] | None = None) -> str:
    """A marker: the case's folder gets a copy of the tiny model as ``m``, its config
    edited by ``edit`` and its weights file replaced by ``weights``."""
    return _ModelCopy(edit, weights)  # type: ignore[return-value]


@dataclass
class _ModelCopy:
    edit: Callable[[dict], Any] | None
    weights: Callable[[Path], None] | None


def _cfg(**changes: Any) -> Callable[[dict], None]:
    def edit(c: dict) -> None:
        for key, value in changes.items():
            *path, last = key.split(".")
            target = c
            for k in path:
                target = target[k]
            if value is _DROP:
                del target[last]
            else:
                target[last] = value
    return edit


_DROP = object()


def _symlink_to_dev_zero(p: Path) -> None:
    p.unlink()
    p.symlink_to("/dev/zero")


def _partial(c: dict) -> None:
    c.update(train_scores=None, threshold=None,
             partial={"epoch": 1, "note": "written during fit"})


@dataclass
class Case:
    """A row of the catalogue: ``files`` to write ({name: writer}, "m" a model copy),
    a library call ``lib(folder)`` and/or command-line ``cli`` arguments ({d} is the
    folder), the error type and a regular expression of its message."""

    name: str
    files: dict[str, Any]
    lib: Callable[[Path], Any] | None
    cli: list[str] | None
    message: str
    error: type[Exception] = SeqaeError
    cli_message: str | None = None
    extra: dict = field(default_factory=dict)


def _ae(**kw: Any) -> seqae.SequenceAutoencoder:
    return seqae.SequenceAutoencoder(**{"latent_dim": 2, "hidden_size": 4, "max_epochs": 1,
                                        "verbose": 0, **kw})


def _fit(path: str, **kw: Any) -> Callable[[Path], Any]:
    return lambda d: _ae(**kw).fit(seqae.read_sequences(d / path, time_col="t"))


def _load(d: Path) -> Any:
    return seqae.SequenceAutoencoder.load(d / "m", device="cpu")


def _read(name: str, **kw: Any) -> Callable[[Path], Any]:
    return lambda d: seqae.read_sequences(d / name, **kw)


def _npz_to(name: str, fn: Callable[[Any, Any], Any]) -> Callable[[Path], Any]:
    return lambda d: fn(_load(d), seqae.io.read_npz(d / name))


SEQS2 = seqae.Sequences.from_list([np.zeros((3, 2)), np.ones((4, 2))])
DATA = {"data.parquet": parquet(_long())}
FOREIGN = {"data.parquet": parquet(_long()), "other/config.json": text("{}"),
           "other/metrics.csv": text("mine\n")}
TRAIN = ["train", "{d}/data.parquet", "--out", "{d}/new", "--time-col", "t", *TINY]
BAD_ROWS = pa.table({"id": ["a", "a", "b"], "t": [0, 1, 0]})

CASES = [
    # ---------------------------------------------------------------- outputs
    Case("encode onto its input", {**DATA, "m": model_copy()}, None,
         ["encode", "{d}/m", "{d}/data.parquet", "--out", "{d}/data.parquet"],
         r"would overwrite the input"),
    Case("encode onto the model's weights", {**DATA, "m": model_copy()}, None,
         ["encode", "{d}/m", "{d}/data.parquet", "--out", "{d}/m/weights.safetensors"],
         r"inside the input folder"),
    Case("encode into another model folder", {**DATA, "m": model_copy(),
                                              "m2": model_copy()}, None,
         ["encode", "{d}/m", "{d}/data.parquet", "--out", "{d}/m2/e.parquet"],
         r"into the model folder"),
    Case("score over a Parquet file seqae did not write",
         {**DATA, "m": model_copy(), "mine.parquet": parquet(BAD_ROWS)}, None,
         ["score", "{d}/m", "{d}/data.parquet", "--out", "{d}/mine.parquet"],
         r"mine.parquet exists and is not an output seqae wrote.*--overwrite"),
    Case("reconstruct over a CSV file", {**DATA, "m": model_copy(), "r.csv": text("a,b\n")},
         None, ["reconstruct", "{d}/m", "{d}/data.parquet", "--out", "{d}/r.csv"],
         r"r.csv exists and is not an output seqae wrote"),
    Case("decode onto its embeddings", {"e.parquet": parquet(pa.table(
        {"id": ["a"], "z0": [0.1], "z1": [0.2]})), "m": model_copy()}, None,
         ["decode", "{d}/m", "{d}/e.parquet", "--out", "{d}/e.parquet", "--length", "3"],
         r"would overwrite the input"),
    Case("train into a folder of other files", FOREIGN,
         lambda d: _ae().fit(SEQS2, checkpoint_dir=d / "other"),
         ["train", "{d}/data.parquet", "--out", "{d}/other", "--time-col", "t", *TINY],
         r"other is not empty and is not a seqae model folder"),
    Case("save into a folder of other files", {**FOREIGN, "m": model_copy()},
         lambda d: _load(d).save(d / "other"), None,
         r"other is not empty and is not a seqae model folder"),
    Case("train onto a file", {**DATA, "f.txt": text("keep me\n")},
         lambda d: _ae().fit(SEQS2).save(d / "f.txt"),
         ["train", "{d}/data.parquet", "--out", "{d}/f.txt", "--time-col", "t", *TINY],
         r"f.txt is a file, not a folder"),
    Case("train onto its data", DATA, None,
         ["train", "{d}/data.parquet", "--out", "{d}/data.parquet", "--time-col", "t", *TINY],
         r"would replace the data"),
    Case("plot into the model folder", {"m": model_copy()}, None,
         ["plot", "{d}/m", "--out", "{d}/m"], r"is a model folder"),
    # ---------------------------------------------------------------- reading
    Case("times stored as text", {"d.parquet": parquet(_long(t=lambda n: [
        str(i % 4 * 5) for i in range(n)]))}, _read("d.parquet", time_col="t"),
         ["train", "{d}/d.parquet", "--out", "{d}/new", "--time-col", "t", *TINY],
         r"time column 't' holds string \(e.g. '0'\), not numbers or timestamps"),
    Case("dates that are not ISO", {"d.csv": text("id,t,x\na,31/01/2024,1\na,01/02/2024,2\n"
                                                  "b,01/01/2024,3\n")},
         _read("d.csv", time_col="t"),
         ["train", "{d}/d.csv", "--out", "{d}/new", "--time-col", "t", *TINY],
         r"time column 't' holds string \(e.g. '31/01/2024'\).*strptime"),
    Case("a NaN time", {"d.parquet": parquet(_long(t=lambda n: [math.nan] + [
        float(i) for i in range(1, n)]))}, _read("d.parquet", time_col="t"),
         ["train", "{d}/d.parquet", "--out", "{d}/new", "--time-col", "t", *TINY],
         r"time column 't', row 0: a missing or NaN time"),
    Case("numbers stored as text", {"d.parquet": parquet(_long(w=lambda n: [
        str(i / 3) for i in range(n)]))}, _read("d.parquet", time_col="t"),
         ["train", "{d}/d.parquet", "--out", "{d}/new", "--time-col", "t", *TINY],
         r"column 'w' holds numbers stored as text \(row 0: '0.0'\)"),
    Case("a bool column", {"d.parquet": parquet(_long(flag=lambda n: [
        i % 2 == 0 for i in range(n)]))}, _read("d.parquet", time_col="t"),
         ["train", "{d}/d.parquet", "--out", "{d}/new", "--time-col", "t", *TINY],
         r"column 'flag' holds true/false values"),
    Case("a stray text cell", {"d.csv": text("id,t,x\na,0,1\na,1,2\nb,0,1.2.3\nb,1,4\n"
                                             "c,0,5\n")}, _read("d.csv", time_col="t"),
         ["train", "{d}/d.csv", "--out", "{d}/new", "--time-col", "t", *TINY],
         r"column 'x', row 2: '1.2.3' is not a number"),
    Case("latin-1 ids", {"d.csv": text("id,t,x\ncafé,0,1\ncafé,1,2\n", "latin-1")},
         _read("d.csv", time_col="t"),
         ["train", "{d}/d.csv", "--out", "{d}/new", "--time-col", "t", *TINY],
         r"d.csv: not UTF-8 text"),
    Case("latin-1 in a text column", {"d.csv": text("id,t,x,site\na,0,1,café\n"
                                                    "a,1,2,café\n", "latin-1")},
         _read("d.csv", time_col="t"),
         ["train", "{d}/d.csv", "--out", "{d}/new", "--time-col", "t", *TINY],
         r"column 'site': not UTF-8 text"),
    Case("NPZ features named otherwise", {"f.npz": npz(
        values=np.zeros((6, 2), np.float32), offsets=[0, 3, 6], feature_names=["a", "x"]),
        "m": model_copy()}, _npz_to("f.npz", lambda ae, s: ae.encode(s)),
         ["encode", "{d}/m", "{d}/f.npz", "--out", "{d}/e.parquet"],
         r"the data's features \['a', 'x'\] are not the model's \['x', 'y'\]"),
    Case("Sequences named otherwise", {"m": model_copy()},
         lambda d: _load(d).score(seqae.Sequences.from_list(
             [np.zeros((3, 2))], feature_names=["x", "z"])), None,
         r"the data's features \['x', 'z'\] are not the model's \['x', 'y'\]"),
    Case("float offsets", {"f.npz": npz(values=np.zeros((10, 2), np.float32),
                                        offsets=[0.0, 5.5, 10.0])},
         lambda d: seqae.io.read_npz(d / "f.npz"),
         ["train", "{d}/f.npz", "--out", "{d}/new", *TINY],
         r"f.npz: offsets must be whole numbers; position 1 holds 5.5"),
    Case("float lengths", {"f.npz": npz(values=np.zeros((10, 2), np.float32),
                                        lengths=[4.5, 5.5])},
         lambda d: seqae.io.read_npz(d / "f.npz"),
         ["train", "{d}/f.npz", "--out", "{d}/new", *TINY],
         r"offsets must be whole numbers; position 1 holds 4.5"),
    Case("a null list row", {"d.parquet": parquet(pa.table(
        {"id": ["a", "b"], "x": pa.array([[1.0, 2.0], None])}))}, _read("d.parquet"),
         ["train", "{d}/d.parquet", "--out", "{d}/new", *TINY],
         r"sequence 1 \(id 'b'\): list column 'x' is null \(row 1\)"),
    Case("nested lists", {"d.parquet": parquet(pa.table(
        {"id": ["a", "b"], "x": pa.array([[[1.0, 2.0]], [[3.0]]])}))}, _read("d.parquet"),
         ["train", "{d}/d.parquet", "--out", "{d}/new", *TINY],
         r"list column 'x' holds nested lists"),
    Case("1e308", {"d.csv": text("id,t,x\na,0,1e308\na,1,1\nb,0,1\n")},
         _read("d.csv", time_col="t"),
         ["train", "{d}/d.csv", "--out", "{d}/new", "--time-col", "t", *TINY],
         r"d.csv: sequence 0 \(id 'a'\) has 1e\+308 at step 0, feature x: beyond float32's"),
    Case("1e308 in a list", None, lambda d: seqae.Sequences.from_list(
        [np.array([[1.0], [-1e308]])]), None, r"has -1e\+308 at step 1, feature 0: beyond"),
    Case("a label named 'anomaly'", {"d.parquet": parquet(_long(anomaly=lambda n: ["x"] * n)),
                                     "m": model_copy()},
         lambda d: seqae.tables.scores_table(np.zeros(1), 0.5, ["a"], [3], labels=["x"],
                                             label_col="anomaly"),
         ["score", "{d}/m", "{d}/d.parquet", "--out", "{d}/s.parquet", "--label-col",
          "anomaly"], r"the label column 'anomaly' has the name of a column seqae writes"),
    Case("a label named 'z0'", {"d.parquet": parquet(_long(z0=lambda n: ["x"] * n)),
                                "m": model_copy()},
         lambda d: seqae.tables.embeddings_table(np.zeros((1, 2)), ["a"], labels=["x"],
                                                 label_col="z0"),
         ["encode", "{d}/m", "{d}/d.parquet", "--out", "{d}/e.parquet", "--label-col", "z0"],
         r"the label column 'z0' has the name of a column seqae writes"),
    Case("an id column named 'score'", {"d.parquet": parquet(_long().rename_columns(
        ["score", "t", "x", "y"]))}, None,
         ["train", "{d}/d.parquet", "--out", "{d}/new", "--id-col", "score", "--time-col",
          "t", *TINY], r"the id column 'score' has the name of a column seqae writes"),
    # ---------------------------------------------------------------- model folders
    Case("no checksum key", {"m": model_copy(_cfg(weights_sha256=_DROP))}, _load,
         ["info", "{d}/m"],
         r"missing key\(s\) \['weights_sha256'\]"),
    Case("an extra key", {"m": model_copy(_cfg(extra=1))}, _load, ["info", "{d}/m"],
         r"unknown key\(s\) \['extra'\]"),
    Case("an extra parameter", {"m": model_copy(_cfg(**{"params.colour": "red"}))}, _load,
         ["info", "{d}/m"], r"unknown parameter\(s\) \['colour'\]"),
    Case("a parameter of the wrong type", {"m": model_copy(_cfg(**{
        "model.hidden_size": "4"}))}, _load, ["info", "{d}/m"],
         r"model.hidden_size must be an int in 1..16,384 .*SEQAE_LIMIT_HIDDEN_SIZE.*got '4'"),
    Case("hidden_size 200,000", {"m": model_copy(_cfg(**{"model.hidden_size": 200_000}))},
         _load, ["info", "{d}/m"], r"model.hidden_size must be an int in 1..16,384"),
    Case("an unknown cell", {"m": model_copy(_cfg(**{"model.cell": "rnn"}))}, _load,
         ["info", "{d}/m"], r"model.cell must be one of \('gru', 'lstm'\), got 'rnn'"),
    Case("a config that is a list", {"m": model_copy(lambda c: [c])}, _load,
         ["info", "{d}/m"], r"expected a JSON object, got list"),
    Case("a scaler std of 0", {"m": model_copy(_cfg(**{"scaler.std": [0.0, 1.0]}))}, _load,
         ["info", "{d}/m"], r"scaler.std\[0\] must be a number > 0"),
    Case("feature names of another length", {"m": model_copy(_cfg(feature_names=["x"]))},
         _load, ["info", "{d}/m"], r"feature_names must be a list of 2 names"),
    Case("weights that are not safetensors", {"m": model_copy(weights=lambda p: p.write_bytes(
        b"\x80\x04\x95pickle" * 10))}, _load, ["info", "{d}/m"],
         r"weights.safetensors is not a safetensors file"),
    Case("weights cut short", {"m": model_copy(weights=lambda p: p.write_bytes(
        p.read_bytes()[:-8]))}, _load, ["info", "{d}/m"],
         r"holds [\d,]+ bytes of tensors; the architecture in config.json needs"),
    Case("weights symlinked to /dev/zero", {"m": model_copy(weights=_symlink_to_dev_zero)},
         _load, ["info", "{d}/m"], r"weights.safetensors is not a regular file"),
    Case("no weights", {"m": model_copy(weights=lambda p: p.unlink())}, _load,
         ["info", "{d}/m"], r"weights.safetensors is missing"),
    # ---------------------------------------------------------------- bounds
    Case("decode at a length of 10^9", {"e.parquet": parquet(pa.table(
        {"id": ["a"], "z0": [0.1], "z1": [0.2]})), "m": model_copy()},
         lambda d: _load(d).decode(np.zeros((1, 2)), lengths=10**9),
         ["decode", "{d}/m", "{d}/e.parquet", "--out", "{d}/o.parquet", "--length",
          "1000000000"], r"decode length of 1,000,000,000 is above seqae's limit of "
                         r"1,000,000; set the environment variable SEQAE_LIMIT_DECODE_LENGTH"),
    Case("a token id of 10^9", {"t.npz": npz(values=np.array([5, 10**9, 4, 6]),
                                             offsets=[0, 2, 4])},
         lambda d: _ae().fit(seqae.io.read_npz(d / "t.npz")),
         ["train", "{d}/t.npz", "--out", "{d}/new", *TINY],
         r"token id 1,000,000,000 at step 1: token ids are below seqae's limit of 1,000,000"),
    Case("--hidden-size 200000", DATA, lambda d: _ae(hidden_size=200_000).fit(SEQS2),
         [*TRAIN, "--hidden-size", "200000"], r"hidden_size must be an int in 1..16,384",
         ValueError),
    # ---------------------------------------------------------------- up-front checks
    Case("--epochs 0", DATA, lambda d: _ae(max_epochs=0).fit(SEQS2), [*TRAIN, "--epochs", "0"],
         r"max_epochs must be an int >= 1, got 0", ValueError),
    Case("--contamination 1.5", DATA, lambda d: _ae(contamination=1.5).fit(SEQS2),
         [*TRAIN, "--contamination", "1.5"], r"contamination must be a number in \[0, 1\)",
         ValueError),
    Case("a device that does not exist", {**DATA, "c.yaml": text("device: gpu0\n")},
         lambda d: _ae(device="gpu0").fit(SEQS2), [*TRAIN, "--config", "{d}/c.yaml"],
         r"device must be 'auto' or a torch device name", ValueError),
    Case("--latent-dim 0", DATA, lambda d: _ae(latent_dim=0).fit(SEQS2),
         [*TRAIN, "--latent-dim", "0"], r"latent_dim must be 'auto' or an int in 1", ValueError),
    Case("--max-time -1", DATA, lambda d: _ae(max_time=-1.0).fit(SEQS2),
         [*TRAIN, "--max-time", "-1"], r"max_time must be a number in \[0, inf\)", ValueError),
    Case("--max-time nan", DATA, lambda d: _ae(max_time=math.nan).fit(SEQS2),
         [*TRAIN, "--max-time", "nan"], r"max_time must be .* got nan", ValueError),
    Case("--val-fraction -0.5", DATA, lambda d: _ae(validation_fraction=-0.5).fit(SEQS2),
         [*TRAIN, "--val-fraction", "-0.5"], r"validation_fraction must be a number in \[0, 1\)",
         ValueError),
    Case("score --contamination 1.5", {**DATA, "m": model_copy()},
         lambda d: _load(d).threshold_for(1.5),
         ["score", "{d}/m", "{d}/data.parquet", "--out", "{d}/s.parquet", "--contamination",
          "1.5"], r"contamination must be in \[0, 1\)", ValueError),
    Case("a folder written during fit", {**DATA, "m": model_copy(_partial)},
         lambda d: _load(d).is_anomaly(SEQS2),
         ["score", "{d}/m", "{d}/data.parquet", "--out", "{d}/s.parquet"],
         r"written during fit.*before its", ValueError),
]


# --------------------------------------------------------------------------- running
def _write(d: Path, files: dict[str, Any] | None, model: Path) -> None:
    for name, writer in (files or {}).items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(writer, _ModelCopy):
            shutil.copytree(model, p)
            if writer.edit is not None:
                cfg = json.loads((p / "config.json").read_text())
                new = writer.edit(cfg)
                (p / "config.json").write_text(json.dumps(cfg if new is None else new))
            if writer.weights is not None:
                writer.weights(p / "weights.safetensors")
        else:
            writer(p)


def snapshot(d: Path) -> dict[str, tuple[int, bytes]]:
    """Every file (and link) under ``d``: its mtime and bytes."""
    out = {}
    for root, dirs, files in os.walk(d):
        for name in files + [x for x in dirs if os.path.islink(os.path.join(root, x))]:
            p = Path(root, name)
            if p.is_symlink():
                out[str(p.relative_to(d))] = (0, os.readlink(p).encode())
            else:
                out[str(p.relative_to(d))] = (p.stat().st_mtime_ns, p.read_bytes())
        for name in dirs:
            out[str(Path(root, name).relative_to(d)) + "/"] = (0, b"")
    return out


def run_cli(case: Case, d: Path, capsys, extra: tuple[str, ...] = ()) -> str:
    """Run ``case.cli`` in folder ``d``: it must fail with exit code 2 and one line, and
    leave every file as it was; returns the line."""
    before = snapshot(d)
    capsys.readouterr()
    rc = main([a.format(d=d) for a in case.cli or []] + list(extra))
    err = capsys.readouterr().err
    assert rc == 2, f"{case.name}: exit code {rc}, {err}"
    assert err.startswith("seqae: error: ") and err.count("\n") == 1, err
    assert snapshot(d) == before, f"{case.name}: the failed command changed files"
    return err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_catalogue(case: Case, model: Path, tmp_path: Path, capsys) -> None:
    assert case.lib is not None or case.cli is not None
    _write(tmp_path, case.files, model)
    if case.lib is not None:
        before = snapshot(tmp_path)
        with pytest.raises(case.error) as e:
            case.lib(tmp_path)
        assert re.search(case.message, str(e.value)), str(e.value)
        assert snapshot(tmp_path) == before, f"{case.name}: the failed call changed files"
    if case.cli is not None:
        err = run_cli(case, tmp_path, capsys)
        assert re.search(case.cli_message or case.message, err), err


def test_the_catalogue_holds_enough_cases() -> None:
    both = [c for c in CASES if c.lib is not None and c.cli is not None]
    assert len(CASES) >= 40 and len(both) >= 25


CLI_CASES = [c for c in CASES if c.cli is not None]


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=st.sampled_from(CLI_CASES), quiet=st.booleans(),
       overwrite=st.booleans())
def test_no_failing_command_leaves_or_changes_a_file(case: Case, quiet: bool, overwrite: bool,
                                                     model: Path, capsys) -> None:
    """Whatever fails, the folder's files are as they were, byte for byte and mtime
    (``--overwrite`` never lets a command replace its input or write into a model
    folder)."""
    extra = ("-q",) if quiet else ()
    if overwrite and case.cli and case.cli[0] in ("encode", "score", "reconstruct", "decode"):
        extra += ("--overwrite",)
    if overwrite and "exists and is not an output seqae wrote" in case.message:
        return  # --overwrite is what lets that one through
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _write(d, case.files, model)
        run_cli(case, d, capsys, extra)


# --------------------------------------------------------------------------- not errors
def test_ids_keep_their_exact_text(tmp_path: Path, model: Path, capsys) -> None:
    p = tmp_path / "ids.csv"
    p.write_text("id,t,x,y\n01,0,1,1\n01,1,2,2\n1,0,3,3\n1,1,4,4\n007,0,5,5\n007,1,6,6\n")
    seqs = seqae.read_sequences(p, time_col="t")
    assert seqs.ids.tolist() == ["01", "1", "007"]
    assert main(["encode", str(model), str(p), "--out", str(tmp_path / "e.csv")]) == 0
    assert (tmp_path / "e.csv").read_text().splitlines()[1:] and [
        line.split(",")[0] for line in (tmp_path / "e.csv").read_text().splitlines()[1:]
    ] == ['"01"', '"1"', '"007"']


def test_a_text_file_bom_and_u2028(tmp_path: Path) -> None:
    p = tmp_path / "w.txt"
    p.write_text("\ufeffhello\r\nwor\u2028ld\nx\n", encoding="utf-8")
    texts = seqae.tables.read_data(p)[0]
    assert list(texts) == ["hello", "wor\u2028ld", "x"]  # no BOM, U+2028 inside a text


def test_decimals_are_features_and_dates_are_times(tmp_path: Path) -> None:
    days = [datetime.date(2024, 1, 10), datetime.date(2024, 1, 2), datetime.date(2024, 1, 1)]
    table = pa.table({"id": ["a", "a", "b"], "t": pa.array(days, pa.date32()),
                      "d": pa.array([Decimal("1.5"), Decimal("2.5"), Decimal("3")])})
    pq.write_table(table, tmp_path / "d.parquet")
    seqs = seqae.read_sequences(tmp_path / "d.parquet", time_col="t")
    assert seqs.feature_names == ["d"]
    np.testing.assert_array_equal(seqs[0].ravel(), [2.5, 1.5])  # sorted by date


def test_features_in_another_order_are_matched_by_name(model: Path, tmp_path: Path) -> None:
    ae = seqae.SequenceAutoencoder.load(model, device="cpu")
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(5, 2)) for _ in range(3)]
    ordered = seqae.Sequences.from_list(xs, feature_names=["x", "y"])
    swapped = seqae.Sequences.from_list([a[:, ::-1] for a in xs], feature_names=["y", "x"])
    np.testing.assert_array_equal(ae.encode(ordered), ae.encode(swapped))
    np.savez(tmp_path / "f.npz", values=np.concatenate([a[:, ::-1] for a in xs]),
             lengths=[5, 5, 5], feature_names=["y", "x"])
    np.testing.assert_array_equal(ae.encode(seqae.io.read_npz(tmp_path / "f.npz")),
                                  ae.encode(ordered))


def test_outputs_seqae_wrote_are_replaced_and_overwrite_replaces_others(
        model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.parquet"
    pq.write_table(_long(), data)
    out = tmp_path / "e.parquet"
    for _ in range(2):  # the second run replaces the first's output: seqae wrote it
        assert main(["encode", str(model), str(data), "--out", str(out), "-q"]) == 0
    csv = tmp_path / "e.csv"
    csv.write_text("mine\n")
    assert main(["encode", str(model), str(data), "--out", str(csv), "-q", "--overwrite"]) == 0
    assert csv.read_text().startswith('"id","z0"')
    retrain = ["train", str(data), "--out", str(tmp_path / "m"), "--time-col", "t", *TINY]
    assert main(retrain) == 0 and main(retrain) == 0  # a model folder seqae wrote


def test_a_folder_written_during_fit_is_scored_and_refuses_only_the_threshold(
        model: Path, tmp_path: Path) -> None:
    shutil.copytree(model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    _partial(cfg)
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    ae = seqae.SequenceAutoencoder.load(tmp_path / "m", device="cpu")
    assert ae.score(SEQS2).shape == (2,)
    assert ae.is_anomaly(SEQS2, threshold=1e9).tolist() == [False, False]


@pytest.mark.parametrize("args, message", [
    (["train", "x.parquet", "--out", "o", "--window", "0"], "--window: must be >= 1, got 0"),
    (["train", "x.parquet", "--out", "o", "--workers", "-1"], "--workers: must be >= 0"),
    (["train", "x.parquet", "--out", "o", "--checkpoint-every", "-3"],
     "--checkpoint-every: must be >= 0, got -3"),
    (["encode", "m", "x.parquet", "--out", "o", "--window", "many"],
     "--window: 'many' is not a whole number"),
    (["demo", "--out", "o", "--n", "5"], "--n: must be >= 10, got 5"),
])
def test_stream_and_demo_flags_are_checked_while_parsing(args, message, tmp_path, capsys,
                                                        monkeypatch) -> None:
    """--window, --workers, --checkpoint-every and the demo's --n are refused while the
    command line is parsed, before any file is read or written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_demo_writes_only_into_a_folder_of_its_own(tmp_path: Path, capsys) -> None:
    """`seqae demo --out` refuses a file and a non-empty folder the demo did not write
    (it marks its own with seqae-demo.json), leaving both as they were."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.html").write_text("my report")
    (tmp_path / "afile").write_text("x")
    before = snapshot(tmp_path)
    for out, message in (("mine", "a folder that the demo did not write"),
                         ("afile", "is a file")):
        assert main(["demo", "--out", str(tmp_path / out)]) == 2
        assert message in capsys.readouterr().err
    assert snapshot(tmp_path) == before
