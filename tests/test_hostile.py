"""Hostile input that used to pass silently, and files that follow the umask (issue 12
items; the rest of the catalogue is in test_data.py, test_io.py and test_cli.py)."""

import os
import stat
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import seqae
from seqae.errors import SequenceDataError

CSV = """id,t,temp,site,rate
a,0,1.5,north,3
a,1,2.5,north,4
a,2,1.2.3,north,5
b,0,0.5,south,6
b,1,0.7,south,7
"""


def test_a_stray_text_cell_in_a_numeric_column_is_an_error_not_a_dropped_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(CSV)
    with pytest.raises(SequenceDataError) as e:
        seqae.read_sequences(p, time_col="t")
    msg = str(e.value)
    assert f"{p}, column 'temp', row 2: '1.2.3' is not a number" in msg
    assert "4 of the column's 5 values are" in msg
    r = subprocess.run([sys.executable, "-m", "seqae", "train", str(p), "--out",
                        str(tmp_path / "m"), "--time-col", "t", "--epochs", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "column 'temp', row 2: '1.2.3' is not a number" in r.stderr
    assert not (tmp_path / "m").exists()  # nothing trained on the other columns


def test_text_columns_that_are_text_are_still_left_out(tmp_path):
    p = tmp_path / "ok.csv"
    p.write_text(CSV.replace("1.2.3", "1.25"))
    seqs = seqae.read_sequences(p, time_col="t")
    assert seqs.feature_names == ["temp", "rate"]  # 'site' is text: not a feature
    np.testing.assert_allclose(seqs[0][:, 0], [1.5, 2.5, 1.25])


def test_numbers_nan_and_missing_cells_are_not_stray_text(tmp_path):
    table = pa.table({"id": ["a", "a", "b"], "t": [0, 1, 0],
                      "x": ["1e-3", None, " -inf "], "y": [1.0, 2.0, 3.0]})
    from seqae.data import numeric_columns

    # x holds numbers only, stored as text: named in an error, not dropped (issue 24)
    with pytest.raises(SequenceDataError, match=r"column 'x' holds numbers stored as text "
                                                r"\(row 0: '1e-3'\)"):
        numeric_columns(table, exclude=("id", "t"))
    assert numeric_columns(table, exclude=("id", "t", "x")) == ["y"]


def test_a_named_feature_that_is_not_numeric(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(CSV.replace("1.2.3", "1.25"))
    with pytest.raises(SequenceDataError, match=r"column 'site', row 0: 'north' is not a"):
        seqae.read_sequences(p, time_col="t", features=["temp", "site"])
    table = pacsv.read_csv(p)
    with pytest.raises(SequenceDataError, match="column 'site', row 0"):
        seqae.Sequences.from_table(table, id="id", time="t", features=["site"])


def test_written_files_follow_the_umask(tmp_path):
    """Model folders, tables and figures are created 0666 less the umask, like any
    other program's files (mkstemp alone would make them 0600)."""
    code = (
        "import os, sys, numpy as np, seqae\n"
        "os.umask(int(sys.argv[2], 8))\n"
        "s = seqae.Sequences.from_list([np.ones((4, 1)), np.zeros((3, 1))])\n"
        "seqae.SequenceAutoencoder(latent_dim=2, hidden_size=4, max_epochs=1, verbose=0)"
        ".fit(s).save(sys.argv[1])\n"
    )
    for umask, mode in (("022", 0o644), ("077", 0o600), ("002", 0o664)):
        out = tmp_path / f"m{umask}"
        subprocess.run([sys.executable, "-c", code, str(out), umask], check=True,
                       timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
        files = sorted(out.iterdir())
        assert {f.name for f in files} >= {"weights.safetensors", "config.json"}
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == mode, (f.name, oct(f.stat().st_mode))


def test_reading_the_umask_never_changes_it_under_another_thread(tmp_path):
    """Writing a model reads the umask; a thread creating files meanwhile (a server, a
    notebook) must never see it changed. Setting it and putting it back did that to
    about a third of 3,000 files."""
    code = (
        "import os, stat, sys, threading\n"
        "sys.setswitchinterval(1e-6)\n"
        "from seqae.io import current_umask\n"
        "os.umask(0o077)\n"
        "assert current_umask() == 0o077\n"
        "stop = []\n"
        "t = threading.Thread(target=lambda: [current_umask()\n"
        "                                     for _ in iter(lambda: bool(stop), True)])\n"
        "t.start()\n"
        "bad = 0\n"
        "for i in range(3000):\n"
        "    p = os.path.join(sys.argv[1], f'f{i}')\n"
        "    open(p, 'w').close()\n"
        "    bad += stat.S_IMODE(os.stat(p).st_mode) != 0o600\n"
        "stop.append(1)\n"
        "t.join()\n"
        "print(bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, timeout=120, check=True)
    assert r.stdout.strip() == "0", r.stdout


# ------------------------------------------------------------------ the catalogue
def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "seqae", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("name, text, message", [
    ("empty.csv", "", "empty.csv: cannot read it as csv"),
    ("header.csv", "id,t,x\n", "no rows"),
    ("cols.csv", "key,t,x\na,0,1\n", "no id column 'id'"),
    ("dup.csv", "id,t,x\na,0,1\na,0,2\n", "has two rows at t=0"),
    ("nan.csv", "id,t,x\na,0,1\na,1,nan\nb,0,2\n", "NaN"),
])
def test_bad_files_are_one_line_errors_that_name_the_problem(tmp_path, name, text, message):
    p = tmp_path / name
    p.write_text(text)
    r = _cli("train", p, "--out", tmp_path / "m", "--time-col", "t", "--epochs", "1")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "m" / "weights.safetensors").exists()


def test_single_sequence_and_one_step_sequences_train():
    one = seqae.Sequences.from_list([np.arange(6, dtype=np.float32)[:, None]])
    steps = seqae.Sequences.from_list([np.full((1, 2), i, np.float32) for i in range(5)])
    for s in (one, steps):
        ae = seqae.SequenceAutoencoder(latent_dim=2, hidden_size=4, max_epochs=2,
                                       verbose=0).fit(s)
        assert ae.encode(s).shape == (len(s), 2) and np.isfinite(ae.score(s)).all()


def test_token_ids_beyond_the_vocabulary_and_overflow(tmp_path):
    tok = seqae.Sequences.from_list([np.array([4, 5, 6]), np.array([5, 7])])
    ae = seqae.SequenceAutoencoder(latent_dim=2, hidden_size=4, max_epochs=1,
                                   verbose=0).fit(tok)
    big = seqae.Sequences.from_list([np.array([4, 2**40])])
    with pytest.raises(SequenceDataError, match=r"token 1099511627776 at step 1, outside "
                                                r"the vocabulary \(0..7\)"):
        ae.encode(big)


def test_a_model_folder_from_a_newer_format_is_refused(tmp_path):
    import json

    s = seqae.Sequences.from_list([np.ones((3, 1)), np.zeros((4, 1))])
    out = seqae.SequenceAutoencoder(latent_dim=2, hidden_size=4, max_epochs=1,
                                    verbose=0).fit(s).save(tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    cfg["format_version"] = 99
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(seqae.IncompatibleModelError, match="format 99.*reads "
                                                           "SequenceAutoencoder formats 1, 2"):
        seqae.SequenceAutoencoder.load(out)
