"""The one reader (`seqae.tables.read_data`) on every kind of input, its errors (file,
column and row named), the streamed chunks against the same table read whole, and the
output tables; each against arrays built by hand here."""

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import seqae
from seqae.errors import DataFileError, SequenceDataError, require_columns
from seqae.stream import ParquetSource
from seqae.tables import (
    DataSpec,
    Texts,
    decodings_table,
    embeddings_table,
    read_data,
    reconstructions_table,
    scores_table,
    sequences_to_table,
)

# two sequences, 'b' first seen; rows out of time order; a text column that is no feature
LONG = {"id": ["b", "a", "b", "a", "b"], "t": [2, 1, 0, 0, 1],
        "x": [2.0, 11.0, 0.0, 10.0, 1.0], "y": [20, 110, 0, 100, 10],
        "site": ["n", "s", "n", "s", "n"], "label": ["B", "A", "B2", "A", "B3"]}
B = np.array([[0, 0], [1, 10], [2, 20]], np.float32)  # 'b' by time
A = np.array([[10, 100], [11, 110]], np.float32)


def _check(seqs, ids, arrays, names):
    assert isinstance(seqs, seqae.Sequences)
    assert seqs.ids.tolist() == ids and seqs.feature_names == names
    assert seqs.lengths.tolist() == [len(a) for a in arrays]
    for got, want in zip(seqs, arrays, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_long_table_orders_by_time_and_keeps_first_row_labels(tmp_path, suffix):
    p = tmp_path / f"d{suffix}"
    (pq.write_table if suffix == ".parquet" else pacsv.write_csv)(pa.table(LONG), p)
    seqs, times, labels = read_data(p, DataSpec(time_col="t", label_col="label"))
    _check(seqs, ["b", "a"], [B, A], ["x", "y"])  # label and text columns left out
    assert times.tolist() == [0, 1, 2, 0, 1]
    assert labels.tolist() == ["B", "A"]  # each sequence's first row in the file
    seqs, times, labels = read_data(p)  # no time column: row order kept, 't' a feature
    assert seqs.feature_names == ["t", "x", "y"] and times is None and labels is None
    np.testing.assert_array_equal(seqs[0][:, 1], [2, 0, 1])
    assert seqae.read_sequences(p, time_col="t").feature_names == ["x", "y"]


def test_list_columns_one_row_per_sequence(tmp_path):
    p = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"id": [7, 3], "x": [[0.0, 1, 2], [10.0, 11]],
                             "y": [[0.0, 10, 20], [100.0, 110]], "label": ["B", "A"]}), p)
    # a time column does not apply: the lists are in order
    seqs, times, labels = read_data(p, DataSpec(time_col="t", label_col="label"))
    _check(seqs, [7, 3], [B, A], ["x", "y"])
    assert times is None and labels.tolist() == ["B", "A"]
    pq.write_table(pa.table({"id": [7, 3], "x": [[0.0, 1, 2], [10.0, 11]],
                             "y": [[0.0, 10, 20], [100.0]]}), p)
    with pytest.raises(DataFileError, match=r"lists.parquet: sequence 1 \(id 3\): list "
                                            r"column 'y' has 1 steps but 'x' has 2"):
        read_data(p)


def test_npz_and_ts(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, values=np.concatenate([B, A]), lengths=[3, 2])
    seqs, times, labels = read_data(p)
    assert seqs.ids is None and times is None and labels is None
    np.testing.assert_array_equal(seqs[0], B)
    np.testing.assert_array_equal(seqs[1], A)
    np.savez(p, values=np.concatenate([B, A]), offsets=[0, 3, 5], ids=["b", "a"],
             feature_names=["x", "y"])
    _check(read_data(p)[0], ["b", "a"], [B, A], ["x", "y"])
    np.savez(p, offsets=[0, 3])
    with pytest.raises(DataFileError, match=r"d.npz: an npz needs 'values'"):
        read_data(p)
    ts = tmp_path / "d.ts"
    ts.write_text("@classLabel true B A\n@data\n0,1,2:0,10,20:B\n10,11:100,110:A\n")
    seqs, times, labels = read_data(ts)
    np.testing.assert_array_equal(seqs[0], B)
    np.testing.assert_array_equal(seqs[1], A)
    assert times is None and labels.tolist() == ["B", "A"]


def test_texts_from_lines_and_from_a_column(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("apple\nkiwi\n")
    texts, times, labels = read_data(p)
    assert isinstance(texts, Texts) and texts == ["apple", "kiwi"]
    assert texts.ids.tolist() == [0, 1] and texts.where(1) == f"{p}, line 2"
    p.write_text("apple\n\nkiwi\n")
    with pytest.raises(DataFileError, match=r"w.txt, line 2: empty line"):
        read_data(p)
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(DataFileError, match=r"w.txt: not UTF-8"):
        read_data(p)
    t = tmp_path / "w.csv"
    pacsv.write_csv(pa.table({"key": ["k1", "k2"], "word": ["ab", "cd"], "g": [1, 2]}), t)
    texts, _, labels = read_data(t, DataSpec(id_col="key", text_col="word", label_col="g"))
    assert texts == ["ab", "cd"] and texts.ids.tolist() == ["k1", "k2"]
    assert labels.tolist() == [1, 2] and texts.where(1) == f"{t}, column 'word', row 1"
    assert read_data(t, DataSpec(text_col="word"))[0].ids.tolist() == [0, 1]  # no 'id'
    with pytest.raises(DataFileError, match=r"w.csv: no text column 'text'; its columns "
                                            r"are \['key', 'word', 'g'\]"):
        read_data(t, DataSpec(text_col="text"))
    pq.write_table(pa.table({"word": ["ab", None]}), tmp_path / "n.parquet")
    with pytest.raises(DataFileError, match=r"n.parquet, column 'word', row 1: the text is "
                                            "missing"):
        read_data(tmp_path / "n.parquet", DataSpec(text_col="word"))


@pytest.mark.parametrize("spec, message", [
    (DataSpec(id_col="key"), "no id column 'key'"),
    (DataSpec(time_col="when"), "no time column 'when'"),
    (DataSpec(label_col="class"), "no label column 'class'"),
    (DataSpec(features=["x", "z"]), "no feature column 'z'"),
])
def test_a_missing_column_names_the_file_the_role_and_the_columns(tmp_path, spec, message):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table(LONG), p)
    with pytest.raises(DataFileError) as e:
        read_data(p, spec)
    assert str(e.value) == (f"{p}: {message}; its columns are "
                            "['id', 't', 'x', 'y', 'site', 'label']")


def test_an_optional_label_column_may_be_absent(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table(LONG), p)
    spec = DataSpec(time_col="t", label_col="class", label_optional=True)
    seqs, _, labels = read_data(p, spec)
    assert labels is None and seqs.feature_names == ["x", "y"]
    folder = tmp_path / "f"
    folder.mkdir()
    pq.write_table(pa.table(LONG), folder / "a.parquet")
    assert ParquetSource.from_spec(folder, spec).label_col is None
    assert ParquetSource.from_spec(folder, replace(spec, label_col="label")).label_col == "label"


def test_a_folder_is_read_whole_or_streamed_with_the_same_spec(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    table = pa.table(LONG).sort_by("id")
    pq.write_table(table.slice(0, 2), folder / "a.parquet")
    pq.write_table(table.slice(2), folder / "b.parquet")
    spec = DataSpec(time_col="t", label_col="label", window=4)
    seqs, times, labels = read_data(folder, spec)  # whole: the files as one table
    _check(seqs, ["a", "b"], [A, B], ["x", "y"])
    source = ParquetSource.from_spec(folder, spec)
    assert source.window == 4 and source.features == ["x", "y"]
    parts = list(source.windows())
    _check(seqae.Sequences.concat([s for s, _ in parts]), ["a", "b"], [A, B], ["x", "y"])
    assert np.concatenate([lab for _, lab in parts]).tolist() == labels.tolist() == ["A", "B"]


def test_a_stray_value_in_a_feature_column_names_file_column_and_row(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("id,x,y\na,1,2\na,2,oops\nb,3,4\n")
    with pytest.raises(SequenceDataError, match=rf"^{p}, column 'y', row 1: 'oops' is not a"):
        read_data(p, DataSpec(features=["x", "y"]))
    p.write_text("id,x,y\na,1,2\na,2,oops\nb,3,4\nb,3,5\n")
    with pytest.raises(SequenceDataError, match=rf"^{p}, column 'y', row 1: 'oops'"):
        read_data(p)


def test_require_columns_is_the_one_message():
    with pytest.raises(DataFileError) as e:
        require_columns(["a", "b"], [("id", "a"), ("time", None), ("label", "c")], "f.csv")
    assert str(e.value) == "f.csv: no label column 'c'; its columns are ['a', 'b']"
    with pytest.raises(KeyError, match=r"^\"no column 'c' \(see\); its columns are"):
        require_columns(("a",), [("", "c")], error=KeyError, note=" (see)")


@pytest.mark.parametrize("lists", [False, True])
def test_streamed_chunks_are_the_table_read_whole(tmp_path, lists):
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(int(n), 2)).astype(np.float32) for n in rng.integers(1, 9, 30)]
    ids = [f"s{i}" for i in range(len(arrays))]
    if lists:
        table = pa.table({"id": ids, "f0": [a[:, 0].tolist() for a in arrays],
                          "f1": [a[:, 1].tolist() for a in arrays],
                          "label": [i % 3 for i in range(len(arrays))]})
        group = 7
    else:
        table = pa.table({"id": np.repeat(ids, [len(a) for a in arrays]),
                          "f0": np.concatenate([a[:, 0] for a in arrays]),
                          "f1": np.concatenate([a[:, 1] for a in arrays]),
                          "label": np.repeat(np.arange(len(arrays)) % 3,
                                             [len(a) for a in arrays])})
        group = 13  # row groups cut through sequences
    p = tmp_path / "d.parquet"
    pq.write_table(table, p, row_group_size=group)
    whole, _, labels = read_data(p, DataSpec(label_col="label"))
    _check(whole, ids, arrays, ["f0", "f1"])
    source = ParquetSource(p, label_col="label", window=20)
    parts = list(source.windows())
    assert len(parts) > 2
    streamed = seqae.Sequences.concat([s for s, _ in parts])
    _check(streamed, ids, arrays, ["f0", "f1"])
    np.testing.assert_array_equal(np.concatenate([lab for _, lab in parts]), labels)
    assert labels.tolist() == [i % 3 for i in range(len(arrays))]


def test_output_tables():
    Z = np.arange(6, dtype=np.float32).reshape(3, 2)
    e = embeddings_table(Z, np.array(["p", "q", "r"]), "key", np.array([1, 2, 1]), "g")
    assert e.column_names == ["key", "g", "z0", "z1"]
    assert e.column("z1").to_pylist() == [1.0, 3.0, 5.0]
    s = scores_table(np.array([0.1, 0.5, 0.3]), 0.3, [0, 1, 2], [4, 5, 6])
    assert s.column_names == ["id", "length", "score", "anomaly"]
    assert s.column("anomaly").to_pylist() == [False, True, False]
    seqs = seqae.Sequences.from_list([B, A], ids=["b", "a"], feature_names=["x", "y"])
    t = sequences_to_table(seqs, np.array([5, 6, 7, 0, 1]), "key", "when")
    assert t.column_names == ["key", "when", "x", "y"]
    assert t.column("key").to_pylist() == ["b"] * 3 + ["a"] * 2
    assert t.column("when").to_pylist() == [5, 6, 7, 0, 1]
    assert t.column("y").to_pylist() == [0, 10, 20, 100, 110]
    assert reconstructions_table(seqs, seqs).column("t").to_pylist() == [0, 1, 2, 0, 1]
    texts = Texts(["ab", "cd"], np.array([3, 4]), "w.txt")
    r = reconstructions_table(texts, ["ab", "cx"])
    assert r.column_names == ["id", "text", "reconstruction", "exact"]
    assert r.column("exact").to_pylist() == [True, False]
    d = decodings_table(["ab"], [9], "key")
    assert d.column_names == ["key", "text"] and d.column("text").to_pylist() == ["ab"]
    d = decodings_table(seqs, np.array([8, 9]), "key", "when")
    assert d.column("key").to_pylist() == [8, 8, 8, 9, 9]
    assert d.column("when").to_pylist() == [0, 1, 2, 0, 1]
