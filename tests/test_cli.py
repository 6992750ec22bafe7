"""Drive the real `seqae` console script in subprocesses, on files the tests write."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.datasets import demo_table

SEQAE = [sys.executable, "-m", "seqae"]
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
FAST = ["--epochs", "2", "--latent-dim", "3", "--hidden-size", "8", "--batch-size", "8"]


def run(*args, ok=True, cwd=None):
    r = subprocess.run([*SEQAE, *map(str, args)], capture_output=True, text=True, env=ENV,
                       cwd=cwd, timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    table = demo_table(n=40, seed=1)  # rows shuffled: the time column orders them
    pq.write_table(table, d / "long.parquet")
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, d / "long.csv")
    return d


@pytest.fixture(scope="module")
def model(files):
    out = files / "model"
    run("train", files / "long.parquet", "--out", out, "--time-col", "t", "--label-col",
        "label", *FAST)
    return out


def test_help_is_fast_and_does_not_import_torch():
    start = time.perf_counter()
    r = run("--help")
    elapsed = time.perf_counter() - start
    assert "demo" in r.stdout and "train" in r.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, seqae.cli; seqae.cli.build_parser(); "
         "print('torch' in sys.modules)"], capture_output=True, text=True)
    assert probe.stdout.strip() == "False"
    assert elapsed < 5  # generous for a loaded machine; the real figure is ~0.15 s


def test_train_writes_model_and_resolved_config(model):
    names = {p.name for p in model.iterdir()}
    assert {"weights.safetensors", "config.json", "metrics.csv", "run.json"} <= names
    run_cfg = json.loads((model / "run.json").read_text())
    assert run_cfg["data"]["time_col"] == "t"
    assert run_cfg["data"]["features"] == ["signal", "rate", "level"]  # label excluded
    assert run_cfg["model"]["max_epochs"] == 2 and run_cfg["model"]["latent_dim"] == 3


def test_encode_keeps_ids_and_their_type(model, files):
    out = files / "emb.parquet"
    run("encode", model, files / "long.parquet", "--out", out)
    t = pq.read_table(out)
    assert t.column_names[:2] == ["id", "label"] and t.column_names[2:] == ["z0", "z1", "z2"]
    assert pa.types.is_string(t.schema.field("id").type)
    assert t.num_rows == 40
    # same embeddings through the library
    from seqae import SequenceAutoencoder, Sequences

    seqs = Sequences.from_table(pq.read_table(files / "long.parquet"), id="id", time="t",
                                features=["signal", "rate", "level"])
    Z = SequenceAutoencoder.load(model).encode(seqs)
    np.testing.assert_allclose(np.stack([t.column(f"z{k}").to_numpy() for k in range(3)], 1),
                               Z, rtol=1e-6)
    assert t.column("id").to_pylist() == seqs.ids.tolist()


def test_csv_and_npy_outputs(model, files):
    run("encode", model, files / "long.csv", "--out", files / "emb.csv")
    lines = (files / "emb.csv").read_text().splitlines()
    assert lines[0].startswith('"id","label","z0"') and len(lines) == 41
    run("encode", model, files / "long.csv", "--out", files / "emb.npy")
    assert np.load(files / "emb.npy").shape == (40, 3)


def test_reconstruct_long_table_with_input_times(model, files):
    out = files / "rec.parquet"
    run("reconstruct", model, files / "long.parquet", "--out", out)
    rec = pq.read_table(out)
    src = pq.read_table(files / "long.parquet")
    assert rec.num_rows == src.num_rows
    assert rec.column_names == ["id", "t", "signal", "rate", "level"]
    def key(tab):
        return sorted(zip(tab.column("id").to_pylist(), tab.column("t").to_pylist(), strict=True))

    assert key(rec) == key(src)


def test_score_with_flags(model, files):
    out = files / "scores.parquet"
    r = run("score", model, files / "long.parquet", "--out", out, "--contamination", "0.25")
    t = pq.read_table(out)
    assert t.column_names == ["id", "length", "score", "anomaly", "label"]
    scores = t.column("score").to_numpy()
    assert (scores >= 0).all() and t.column("anomaly").to_numpy().sum() > 0
    assert "above the threshold" in r.stderr


def test_list_column_parquet_and_npz(model, files):
    from seqae import Sequences

    seqs = Sequences.from_table(pq.read_table(files / "long.parquet"), id="id", time="t",
                                features=["signal", "rate", "level"])
    lists = pa.table({"id": seqs.ids, **{name: pa.array([s[:, j].tolist() for s in seqs])
                                         for j, name in enumerate(seqs.feature_names)}})
    pq.write_table(lists, files / "lists.parquet")
    run("encode", model, files / "lists.parquet", "--out", files / "e_lists.parquet")
    np.savez(files / "data.npz", values=seqs.values, lengths=seqs.lengths)
    run("encode", model, files / "data.npz", "--out", files / "e_npz.parquet")
    a = pq.read_table(files / "e_lists.parquet").column("z0").to_numpy()
    b = pq.read_table(files / "e_npz.parquet").column("z0").to_numpy()
    c = pq.read_table(files / "emb.parquet").column("z0").to_numpy()
    np.testing.assert_allclose(a, c, rtol=1e-6)
    np.testing.assert_allclose(b, c, rtol=1e-6)


def test_plot_writes_pngs(model, files):
    out = files / "plots"
    run("plot", model, files / "long.parquet", "--out", out, "--label-col", "label")
    for name in ["loss.png", "reconstructions.png", "embeddings.png", "scores.png"]:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    import matplotlib.image as mpimg

    img = mpimg.imread(out / "reconstructions.png")
    assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] > 500
    # the table's worst step of each listed sequence: the argmax of its per-step
    # scores, as `score --per-step` writes them
    import re

    page = (out / "report.html").read_text()
    table = page[page.index('<section id="top">'):page.index("</table>", page.index(
        '<section id="top">'))]
    head = re.findall(r"<th>(.*?)</th>", table)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr.*?</tr>", table)]
    rows = [r for r in rows if r]
    assert "worst step" in head and len(rows) == 20
    run("score", model, files / "long.parquet", "--out", out / "steps.parquet", "--per-step")
    steps = pq.read_table(out / "steps.parquet")
    sid, s = steps.column("id").to_numpy(zero_copy_only=False), steps.column("score").to_numpy()
    for r in rows:
        want = np.nanargmax(s[sid.astype(str) == r[head.index("id")]])
        assert int(r[head.index("worst step")]) == want
    assert "Worst step: the step" in page and "Shaded red" in page


def test_a_folder_streams_the_same_tables_and_plots(model, files):
    """A folder of Parquet files: encode and score stream the tables a file read whole
    gives (same columns, same order); plot reads it whole."""
    table = pq.read_table(files / "long.parquet").sort_by([("id", "ascending"),
                                                           ("t", "ascending")])
    ids = table.column("id").to_pylist()
    cut = ids.index(ids[len(ids) // 2])  # a sequence's rows stay in one file
    folder = files / "folder"
    folder.mkdir()
    pq.write_table(table.slice(0, cut), folder / "a.parquet", row_group_size=50)
    pq.write_table(table.slice(cut), folder / "b.parquet", row_group_size=50)
    pq.write_table(table, files / "sorted.parquet")
    for cmd in ("encode", "score"):
        run(cmd, model, folder, "--out", files / f"{cmd}_f.parquet")
        run(cmd, model, files / "sorted.parquet", "--out", files / f"{cmd}_w.parquet")
        streamed = pq.read_table(files / f"{cmd}_f.parquet")
        whole = pq.read_table(files / f"{cmd}_w.parquet")
        assert streamed.column_names == whole.column_names
        assert streamed.column("id").to_pylist() == whole.column("id").to_pylist()
        assert streamed.column("label").to_pylist() == whole.column("label").to_pylist()
    run("plot", model, folder, "--out", files / "plots_f")
    assert (files / "plots_f" / "reconstructions.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, message",
    [
        (["encode", "{model}", "{d}/missing.parquet", "--out", "{d}/x.parquet"],
         "missing.parquet: no such file"),
        (["encode", "{model}", "{d}/garbage.parquet", "--out", "{d}/x.parquet"],
         "garbage.parquet: cannot read it as parquet"),
        (["train", "{d}/long.parquet", "--out", "{d}/m2", "--id-col", "nope"],
         "no id column 'nope'"),
        (["train", "{d}/nan.csv", "--out", "{d}/m3", "--epochs", "1"],
         "nan.csv: column 'x', row 2 (id 'b'): a missing value"),
        (["encode", "{model}", "{d}/two.csv", "--out", "{d}/x.parquet"],
         "no feature column 'rate'"),
        (["encode", "{d}", "{d}/long.parquet", "--out", "{d}/x.parquet"],
         "not a seqae model directory"),
    ],
)
def test_errors_are_one_line_exit_2(model, files, args, message):
    (files / "garbage.parquet").write_bytes(b"this is not parquet")
    (files / "nan.csv").write_text("id,t,x\na,0,1.0\na,1,2.0\nb,0,\nb,1,3.0\n")
    (files / "two.csv").write_text("id,t,signal\na,0,1.0\n")
    argv = [a.format(model=model, d=files) for a in args]
    r = run(*argv, ok=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqae: error:"), r.stderr
    assert message in lines[0]
    assert "Traceback" not in r.stderr
    verbose = run("-v", *argv, ok=False)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr


def test_config_yaml(files):
    cfg = files / "cfg.yaml"
    cfg.write_text("time_col: t\nlatent_dim: 2\nhidden_size: 4\nmax_epochs: 1\n")
    run("train", files / "long.parquet", "--out", files / "m_yaml", "--config", cfg)
    run_cfg = json.loads((files / "m_yaml" / "run.json").read_text())
    assert run_cfg["model"]["latent_dim"] == 2 and run_cfg["data"]["time_col"] == "t"
    cfg.write_text("latent_dimm: 2\n")
    r = run("train", files / "long.parquet", "--out", files / "m_bad", "--config", cfg, ok=False)
    assert r.returncode == 2 and "unknown setting(s) ['latent_dimm']" in r.stderr


def test_normalize_per_sequence_flag(files):
    out = files / "m_seqnorm"
    run("train", files / "long.parquet", "--out", out, "--time-col", "t", "--normalize",
        "sequence", "--threads", "2", *FAST)
    assert json.loads((out / "run.json").read_text())["model"]["normalize"] == "sequence"
    from seqae import SequenceAutoencoder

    assert SequenceAutoencoder.load(out).normalize == "sequence"
    assert SequenceAutoencoder.load(out).threads == 2  # kept with the model
    r = run("train", files / "long.parquet", "--out", out, "--normalize", "minmax", ok=False)
    assert r.returncode == 2 and "--normalize" in r.stderr


def test_progress_lines_when_not_a_terminal(files):
    r = run("train", files / "long.parquet", "--out", files / "m_p", "--time-col", "t", *FAST)
    epochs = [ln for ln in r.stderr.splitlines() if ln.startswith("epoch")]
    assert len(epochs) == 2 and "train" in epochs[0]
    q = run("-q", "train", files / "long.parquet", "--out", files / "m_q", "--time-col", "t",
            *FAST)
    assert q.stderr == ""
    for flags in (("-q", "train", "-v"), ("-v", "train", "-q")):
        both = run(flags[0], flags[1], files / "long.parquet", "--out", files / "m_qv",
                   flags[2], *FAST, ok=False)
        assert both.returncode == 2 and "-q/--quiet and -v/--verbose" in both.stderr
        assert not (files / "m_qv").exists()


def test_progress_bar_on_a_terminal(files):
    """With a real pseudo-terminal on stderr, training shows a rich progress bar instead
    of per-epoch lines."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*SEQAE, "train", str(files / "long.parquet"), "--out", str(files / "m_tty"),
         "--time-col", "t", *FAST],
        stdout=subprocess.DEVNULL, stderr=follower, env={**ENV, "COLUMNS": "100"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen
    assert "fit" in screen and "epoch 2/2" in screen and "left" in screen  # the bar's text
    assert "elapsed," not in screen  # no plain per-epoch lines on a terminal
