"""The command line on texts (train, encode, reconstruct, score), `decode` and `info`:
the real console script in subprocesses, checked against the library in this process."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from test_cli import FAST, run

import seqae

WORDS = ["apple", "banana", "cherry", "apricot", "blueberry", "avocado", "grape", "kiwi",
         "lemon", "mango", "melon", "nectarine", "orange", "papaya", "peach", "pear", "plum",
         "quince", "raspberry", "strawberry"]


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    d = tmp_path_factory.mktemp("texts")
    (d / "words.txt").write_text("\n".join(WORDS) + "\n")
    run("train", d / "words.txt", "--out", d / "m", *FAST)
    return d


def test_train_on_a_text_file_makes_a_text_model(texts):
    ae = seqae.SequenceAutoencoder.load(texts / "m")
    assert ae.vocab_ is not None and set("".join(WORDS)) <= set(ae.vocab_.chars)
    assert len(ae.train_scores_) == len(WORDS) and ae.max_length_ == max(map(len, WORDS))


def test_encode_reconstruct_score_texts_equal_the_library(texts):
    ae = seqae.SequenceAutoencoder.load(texts / "m")
    run("encode", texts / "m", texts / "words.txt", "--out", texts / "e.parquet")
    t = pq.read_table(texts / "e.parquet")
    assert t.column("id").to_pylist() == list(range(len(WORDS)))  # line numbers from 0
    Z = np.column_stack([t.column(f"z{k}").to_numpy() for k in range(3)])
    np.testing.assert_allclose(Z, ae.encode(WORDS), rtol=1e-5, atol=1e-6)
    run("reconstruct", texts / "m", texts / "words.txt", "--out", texts / "r.csv")
    r = pacsv.read_csv(texts / "r.csv")
    assert r.column("text").to_pylist() == WORDS
    assert r.column("reconstruction").to_pylist() == ae.reconstruct(WORDS)
    assert r.column("exact").to_pylist() == [a == b for a, b in zip(WORDS, ae.reconstruct(
        WORDS), strict=True)]
    run("score", texts / "m", texts / "words.txt", "--out", texts / "s.parquet")
    s = pq.read_table(texts / "s.parquet")
    np.testing.assert_allclose(s.column("score").to_numpy(), ae.score(WORDS), rtol=1e-6)
    assert s.column("length").to_pylist() == [len(w) for w in WORDS]


def test_text_column_of_a_table(texts, tmp_path):
    tab = pa.table({"word_id": [f"w{i}" for i in range(len(WORDS))], "word": WORDS,
                    "n": list(range(len(WORDS)))})
    pq.write_table(tab, tmp_path / "w.parquet")
    run("train", tmp_path / "w.parquet", "--text-col", "word", "--id-col", "word_id",
        "--out", tmp_path / "m", *FAST)
    run("encode", tmp_path / "m", tmp_path / "w.parquet", "--out", tmp_path / "e.parquet")
    e = pq.read_table(tmp_path / "e.parquet")  # text column remembered from training
    assert e.column("word_id").to_pylist() == tab.column("word_id").to_pylist()
    ae = seqae.SequenceAutoencoder.load(tmp_path / "m")
    np.testing.assert_allclose(e.column("z0").to_numpy(), ae.encode(WORDS)[:, 0], rtol=1e-5,
                               atol=1e-6)


def test_decode_texts_at_eos_and_at_a_length(texts):
    ae = seqae.SequenceAutoencoder.load(texts / "m")
    run("encode", texts / "m", texts / "words.txt", "--out", texts / "e2.parquet")
    Z = ae.encode(WORDS)
    run("decode", texts / "m", texts / "e2.parquet", "--out", texts / "d.parquet")
    d = pq.read_table(texts / "d.parquet")
    assert d.column("id").to_pylist() == list(range(len(WORDS)))
    assert d.column("text").to_pylist() == ae.vocab_.decode(ae.decode(Z))
    run("decode", texts / "m", texts / "e2.parquet", "--out", texts / "d4.csv", "--length", 4)
    got = pacsv.read_csv(texts / "d4.csv").column("text").to_pylist()
    assert [len(w) for w in got] == [4] * len(WORDS)
    assert got == ae.vocab_.decode(ae.decode(Z, lengths=4))


@pytest.fixture(scope="module")
def cont(tmp_path_factory):
    from seqae.datasets import demo_table

    d = tmp_path_factory.mktemp("cont")
    pq.write_table(demo_table(n=30, seed=2), d / "long.parquet")
    run("train", d / "long.parquet", "--out", d / "m", "--time-col", "t", *FAST)
    run("encode", d / "m", d / "long.parquet", "--out", d / "e.parquet")
    return d


def test_decode_continuous_at_chosen_lengths(cont):
    """Seed 001's question from the shell: vectors decoded at lengths other than the
    inputs', equal to the library's decode, as a long table with the training columns."""
    ae = seqae.SequenceAutoencoder.load(cont / "m")
    e = pq.read_table(cont / "e.parquet")
    lengths = np.arange(len(e)) % 7 + 1
    pq.write_table(e.append_column("n", pa.array(lengths)), cont / "e_n.parquet")
    run("decode", cont / "m", cont / "e_n.parquet", "--length-col", "n", "--out",
        cont / "d.parquet")
    d = pq.read_table(cont / "d.parquet")
    assert d.column_names == ["id", "t", "signal", "rate", "level"]
    Z = np.column_stack([e.column(f"z{k}").to_numpy() for k in range(3)])
    ref = ae.decode(Z, lengths=lengths)
    np.testing.assert_allclose(d.column("signal").to_numpy(), ref.values[:, 0], rtol=1e-5,
                               atol=1e-6)
    ids = e.column("id").to_numpy(zero_copy_only=False)
    assert d.column("id").to_pylist() == np.repeat(ids, lengths).tolist()
    assert d.column("t").to_pylist() == [t for n in lengths for t in range(n)]
    run("decode", cont / "m", cont / "e.parquet", "--out", cont / "d_auto.parquet")
    auto = pq.read_table(cont / "d_auto.parquet")  # the length head chooses
    assert auto.num_rows == int(ae.decode(Z).lengths.sum())


@pytest.mark.parametrize("case, message", [
    (["--length", "0"], "--length must be >= 1"),
    (["--length-col", "nope"], "no length column 'nope'"),
    (["--length-col", "bad"], "row 1, column 'bad': 2.5 is not a length"),
    (["--id-col", "nope"], "no id column 'nope'"),
])
def test_decode_errors_are_one_line(cont, case, message):
    e = pq.read_table(cont / "e.parquet")
    bad = np.ones(len(e))
    bad[1] = 2.5
    pq.write_table(e.append_column("bad", pa.array(bad)), cont / "e_bad.parquet")
    r = run("decode", cont / "m", cont / "e_bad.parquet", "--out", cont / "x.parquet", *case,
            ok=False)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (cont / "x.parquet").exists()


def test_decode_refuses_wrong_embedding_columns(cont):
    e = pq.read_table(cont / "e.parquet")
    pq.write_table(e.drop(["z1"]), cont / "gap.parquet")
    r = run("decode", cont / "m", cont / "gap.parquet", "--out", cont / "x.parquet", ok=False)
    assert r.returncode == 2 and "z1 is missing" in r.stderr
    pq.write_table(e.drop(["z2"]), cont / "short.parquet")
    r = run("decode", cont / "m", cont / "short.parquet", "--out", cont / "x.parquet", ok=False)
    assert r.returncode == 2 and "2 embedding columns" in r.stderr and "has 3" in r.stderr


def test_text_errors_name_the_line(texts, tmp_path):
    (tmp_path / "blank.txt").write_text("apple\nbanana\n\ncherry\n")
    r = run("train", tmp_path / "blank.txt", "--out", tmp_path / "m", *FAST, ok=False)
    assert r.returncode == 2 and "blank.txt, line 3: empty line" in r.stderr
    (tmp_path / "new.txt").write_text("apple\nzebra\n")  # 'z' never seen in training
    r = run("encode", texts / "m", tmp_path / "new.txt", "--out", tmp_path / "e.parquet",
            ok=False)
    assert r.returncode == 2 and "new.txt, line 2" in r.stderr and "'z'" in r.stderr
    r = run("encode", texts / "m", texts / "e.parquet", "--out", tmp_path / "x.parquet",
            ok=False)
    assert r.returncode == 2 and "is a text model" in r.stderr
    pq.write_table(pa.table({"word": ["ab", None]}), tmp_path / "null.parquet")
    r = run("train", tmp_path / "null.parquet", "--text-col", "word", "--out",
            tmp_path / "m2", *FAST, ok=False)
    assert r.returncode == 2 and "column 'word', row 1: the text is missing" in r.stderr


def test_info_reports_what_the_folder_holds(texts, cont):
    from safetensors.numpy import load_file

    r = run("info", cont / "m", "--json")
    info = json.loads(r.stdout)
    weights = load_file(cont / "m" / "weights.safetensors")
    assert info["parameters"] == sum(v.size for v in weights.values())
    config = json.loads((cont / "m" / "config.json").read_text())
    assert info["versions"]["seqae"] == seqae.__version__ == config["seqae_version"]
    assert info["data"]["kind"] == "continuous" and info["data"]["features"] == 3
    assert info["data"]["feature_names"] == ["signal", "rate", "level"]
    metrics = (cont / "m" / "metrics.csv").read_text().strip().splitlines()
    assert info["training"]["epochs"] == len(metrics) - 1 == 2
    assert info["architecture"]["latent_dim"] == 3
    t = json.loads(run("info", texts / "m", "--json").stdout)
    assert t["data"]["kind"] == "texts" and t["data"]["training_sequences"] == len(WORDS)
    table = run("info", texts / "m").stdout  # the human table
    assert "texts" in table and "best_epoch" in table and "parameters" in table
    r = run("info", texts / "nope", ok=False)
    assert r.returncode == 2 and "no such model directory" in r.stderr
