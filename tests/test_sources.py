"""Where the data live (seqae.sources): sequences in memory and folders of Parquet files,
their splits, statistics, fingerprints and the length policy, against references
computed here (numpy, a permutation drawn anew, the files read with pyarrow)."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from helpers import write_parquet_folder
from seqae import SequenceDataError, Sequences
from seqae.lengths import LengthPolicy
from seqae.scaling import Scaler
from seqae.sources import (
    ChunkPart,
    FolderSource,
    MemoryPart,
    MemorySource,
    chunks_of,
    from_input,
)
from seqae.stream import ParquetSource
from seqae.tasks import ContinuousTask, TextTask, TokenTask

FEATURES = ["f0", "f1"]


def _memory(rng, n=10, f=2, lo=1, hi=9) -> Sequences:
    lengths = rng.integers(lo, hi, size=n)
    return Sequences.from_list([rng.normal(size=(k, f)).astype(np.float32) * (1 + np.arange(f))
                                for k in lengths], ids=[f"m{i}" for i in range(n)])


def _write_folder(folder: Path, n_files=3, per_file=8, rows_per_group=12, seed=0,
                  n_features=2) -> Path:
    """Short sequences (1-9 steps) whose row groups cut through them."""
    return write_parquet_folder(folder, n_files, per_file, rows_per_group, seed, lo=1, hi=10,
                                n_features=n_features)


def _read_directly(folder: Path, features=FEATURES) -> list[tuple[str, np.ndarray]]:
    """``(id, (T, F) values in time order)`` of every sequence, file by file, in the
    order the sequences appear in the file."""
    out = []
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path).to_pydict()
        order = list(dict.fromkeys(table["id"]))
        for sid in order:
            rows = [r for r, i in enumerate(table["id"]) if i == sid]
            rows.sort(key=lambda r: table["t"][r])
            out.append((sid, np.array([[table[c][r] for c in features] for r in rows],
                                      np.float32)))
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("sources") / "data")


@pytest.fixture
def source(folder) -> ParquetSource:
    return ParquetSource(folder, time_col="t")


# ------------------------------------------------------------------ in memory
def test_samples_hold_the_steps_asked_at_least_least_sequences_in_order(rng, folder):
    seqs = _memory(rng, n=200)
    part = MemoryPart(seqs)
    total = int(seqs.lengths.sum())
    a = part.sample(total // 4, 10, np.random.default_rng(1))
    b = part.sample(total // 4, 10, np.random.default_rng(1))
    assert list(a.seqs.ids) == list(b.seqs.ids)  # seeded
    order = {sid: i for i, sid in enumerate(seqs.ids)}
    assert np.all(np.diff([order[s] for s in a.seqs.ids]) > 0)  # in the part's order
    held = int(a.lengths.sum())
    assert total // 4 <= held < total // 4 + seqs.lengths.max() and len(a.seqs) < 200
    assert len(part.sample(0, 30, np.random.default_rng(1)).seqs) == 30
    assert len(part.sample(10 * total, 1, np.random.default_rng(1)).seqs) == 200
    src = ParquetSource(folder, time_col="t")
    whole = ChunkPart(src, list(range(len(src.index()))))
    some = whole.sample(1, 5, np.random.default_rng(2))  # whole chunks, in index order
    assert some.ids == sorted(some.ids) and len(some.lengths) >= 5
    assert len(some.ids) < len(whole.ids)


@pytest.mark.parametrize("seed, n_val", [(0, 3), (7, 1), (3, 9)])
def test_memory_split_holds_out_the_first_n_val_of_a_seeded_permutation(rng, seed, n_val):
    seqs = _memory(rng)
    train, val = MemorySource(seqs).split(n_val, np.random.default_rng(seed))
    perm = np.random.default_rng(seed).permutation(len(seqs))  # drawn anew, independently
    assert val.seqs.ids.tolist() == [f"m{i}" for i in perm[:n_val]]
    assert train.seqs.ids.tolist() == [f"m{i}" for i in perm[n_val:]]
    for part in (train, val):
        np.testing.assert_array_equal(part.lengths, [len(seqs[int(i[1:])])
                                                     for i in part.seqs.ids])
        for sid, s in zip(part.seqs.ids, part.seqs, strict=True):
            np.testing.assert_array_equal(s, seqs[int(sid[1:])])


def test_memory_split_without_validation_trains_on_everything(rng):
    seqs = _memory(rng)
    train, val = MemorySource(seqs).split(0, np.random.default_rng(0))
    assert val is None and train.seqs is seqs


def test_given_validation_is_used_whole_and_the_training_data_too(rng):
    seqs, other = _memory(rng), _memory(rng, n=4)
    src = MemorySource(seqs, other)
    train, val = src.split(3, np.random.default_rng(0))
    assert train.seqs is seqs and val.seqs is other
    assert len(src) == 10
    np.testing.assert_array_equal(src.lengths, seqs.lengths)


def test_validation_that_does_not_match_the_training_data_is_refused(rng):
    seqs = _memory(rng)
    with pytest.raises(SequenceDataError, match="do not match the training data"):
        MemorySource(seqs, Sequences.from_list([np.array([4, 5, 6])]))  # tokens
    with pytest.raises(SequenceDataError, match="do not match the training data"):
        MemorySource(seqs, _memory(rng, n=3, f=3))  # another feature count
    tokens = Sequences.from_list([np.array([4, 5]), np.array([9, 4, 4])])
    with pytest.raises(SequenceDataError, match="do not match the training data"):
        MemorySource(tokens, seqs)


def test_fingerprint_moves_with_any_value_and_with_the_cuts_and_not_otherwise(rng):
    seqs = _memory(rng)
    fp = MemorySource(seqs).fingerprint()
    assert fp["sequences"] == 10 and fp["validation"] is None
    same = Sequences(seqs.values.copy(), seqs.offsets.copy())  # equal data, another object
    assert MemorySource(same).fingerprint() == fp
    changed = seqs.values.copy()
    changed[5, 1] = np.nextafter(changed[5, 1], np.float32(np.inf))  # one value, one ulp
    assert MemorySource(Sequences(changed, seqs.offsets)).fingerprint()["data_sha256"] != \
        fp["data_sha256"]
    cut = Sequences(np.arange(12, dtype=np.float32).reshape(6, 2), [0, 2, 6])
    recut = Sequences(cut.values, [0, 3, 6])  # the same values cut into other sequences
    assert MemorySource(cut).fingerprint()["data_sha256"] != \
        MemorySource(recut).fingerprint()["data_sha256"]
    with_val = MemorySource(seqs, _memory(rng, n=2)).fingerprint()
    assert with_val["validation"] == 2 and with_val["data_sha256"] != fp["data_sha256"]


def test_memory_part_stats_equal_numpy_over_the_valid_steps(rng):
    arrays = [rng.normal(size=(k, 3)) * [1.0, 100.0, 0.01] + [5.0, -1.0, 0.0]
              for k in (1, 7, 3, 12)]
    arrays[2][:, 2] = 4.0  # no spread within a sequence: its std is 1
    part = MemoryPart(Sequences.from_list(arrays))
    mean, std, seq_std = part.stats()
    flat = np.concatenate([a.astype(np.float32) for a in arrays]).astype(np.float64)
    np.testing.assert_array_equal(mean, flat.mean(axis=0).astype(np.float32))
    np.testing.assert_array_equal(std, flat.std(axis=0).astype(np.float32))
    assert mean.dtype == std.dtype == seq_std.dtype == np.float32
    for i, a in enumerate(arrays):
        ref = a.astype(np.float32).astype(np.float64).std(axis=0)
        ref[ref == 0] = 1.0
        np.testing.assert_allclose(seq_std[i], ref.astype(np.float32), rtol=1e-6)
    assert seq_std[0].tolist() == [1.0, 1.0, 1.0] and seq_std[2][2] == 1.0


def test_memory_part_view_chunks_and_check(rng):
    seqs = _memory(rng, n=5)
    part = MemoryPart(seqs)
    task = ContinuousTask(Scaler("global"), 2, None).fit(lambda: 0, part.stats)
    mean, std = task.scaler.mean_, task.scaler.std_
    view = part.view(task, torch.device("cpu"))
    x, lens = view.batch(np.arange(5))
    np.testing.assert_array_equal(lens.numpy(), seqs.lengths)
    for i, s in enumerate(seqs):  # model units, padding zero
        np.testing.assert_allclose(x[i, : len(s)].numpy(), (s - mean) / std, rtol=1e-5,
                                   atol=1e-6)
        assert (x[i, len(s):] == 0).all()
    assert [c is seqs for c in part.chunks()] == [True]
    part.check(task)
    with pytest.raises(SequenceDataError, match="has token 9 at step 1"):
        MemoryPart(Sequences.from_list([np.array([4, 9])])).check(TokenTask(6))


def test_data_max_is_the_largest_value(rng):
    tokens = Sequences.from_list([np.array([4, 17, 5]), np.array([6])])
    assert MemorySource(tokens).data_max() == 17


# ------------------------------------------------------------------ from_input
def test_from_input_truncates_to_max_len_when_asked(rng):
    seqs = _memory(rng, n=8, lo=1, hi=12)
    src, task = from_input(seqs, None, "global", "error", LengthPolicy(5, "truncate"))
    assert isinstance(src, MemorySource) and isinstance(task, ContinuousTask)
    np.testing.assert_array_equal(src.lengths, np.minimum(seqs.lengths, 5))
    for got, s in zip(src.seqs, seqs, strict=True):
        np.testing.assert_array_equal(got, s[:5])


def test_from_input_refuses_a_long_sequence_naming_it():
    seqs = Sequences.from_list([np.zeros((3, 1)), np.ones((4, 1)), np.ones((9, 1))],
                               ids=["a", "b", "c"])
    with pytest.raises(SequenceDataError, match=r"sequence 2 \(id 'c'\) has 9 steps, more "
                                                r"than max_len=4") as e:
        from_input(seqs, None, "auto", "error", LengthPolicy(4, "refuse"))
    assert (e.value.index, e.value.seq_id) == (2, "c")
    val = Sequences.from_list([np.zeros((6, 1))])
    with pytest.raises(SequenceDataError, match="sequence 0 has 6 steps"):  # validation too
        from_input(seqs[:2], val, "auto", "error", LengthPolicy(4, "refuse"))


def test_from_input_applies_the_policy_to_validation_and_reads_texts_with_the_vocab():
    src, task = from_input(["abcab", "ba"], ["cbacb", "a"], "auto", "error",
                           LengthPolicy(3, "truncate"))
    assert isinstance(task, TextTask)
    assert task.vocab.decode(src.seqs) == ["abc", "ba"]
    assert task.vocab.decode(src.validation) == ["cba", "a"]
    with pytest.raises(SequenceDataError, match="has character 'z'"):
        from_input(["ab"], ["az"], "auto", "error", LengthPolicy(None))


def test_from_input_window_cuts_long_sequences_into_pieces(rng):
    seqs = _memory(rng, n=4, lo=6, hi=12)
    src, _ = from_input(seqs, None, "auto", "error", LengthPolicy(4, "window"))
    assert src.lengths.max() <= 4 and src.lengths.sum() == seqs.lengths.sum()
    np.testing.assert_array_equal(src.seqs.values, seqs.values)  # cut, not changed


# ------------------------------------------------------------------ folders
def test_folder_split_holds_out_whole_chunks_of_a_seeded_permutation(source):
    chunks = source.index()
    k = len(chunks)
    assert k >= 6  # enough chunks for the split to choose among
    sizes = [len(c.lengths) for c in chunks]
    for seed, n_val in [(0, 1), (1, 5), (2, 12)]:
        folder = FolderSource(source)
        train, val = folder.split(n_val, np.random.default_rng(seed))
        ref, held = [], 0  # reference: whole chunks in a permutation drawn anew
        for c in np.random.default_rng(seed).permutation(k)[:-1]:
            ref.append(int(c))
            held += sizes[c]
            if held >= n_val:
                break
        assert val.ids == ref and folder.held_out == ref
        assert folder.fingerprint()["held_out_chunks"] == ref
        assert sorted(train.ids + val.ids) == list(range(k))  # a partition
        assert not set(train.ids) & set(val.ids)
        np.testing.assert_array_equal(val.lengths,
                                      np.concatenate([chunks[c].lengths for c in ref]))


def test_folder_split_never_holds_out_every_chunk(source):
    k = len(source.index())
    train, val = FolderSource(source).split(10_000, np.random.default_rng(0))
    assert len(val.ids) == k - 1 and len(train.ids) == 1
    assert sorted(train.ids + val.ids) == list(range(k))
    train, val = FolderSource(source).split(0, np.random.default_rng(0))
    assert val is None and train.ids == list(range(k))


def test_one_chunk_is_never_split(tmp_path):
    one = _write_folder(tmp_path / "one", n_files=1, per_file=3, rows_per_group=1000)
    src = ParquetSource(one, time_col="t")
    assert len(src.index()) == 1
    train, val = FolderSource(src).split(2, np.random.default_rng(0))
    assert val is None and train.ids == [0]


def test_chunk_part_stats_equal_numpy_over_the_same_rows_read_with_pyarrow(source):
    chunks = source.index()
    for ids in ([0], [1, 4], list(range(len(chunks)))):
        tables = []
        for c in ids:
            ch = chunks[c]
            table = pq.read_table(source.files[ch.file]).slice(ch.start, ch.stop - ch.start)
            tables.append(table)
        table = pa.concat_tables(tables)
        values = np.stack([table.column(f).to_numpy() for f in FEATURES], 1).astype(np.float64)
        mean, std, seq_std = ChunkPart(source, ids).stats()
        np.testing.assert_allclose(mean, values.mean(axis=0).astype(np.float32), rtol=1e-6)
        np.testing.assert_allclose(std, values.std(axis=0).astype(np.float32), rtol=1e-6)
        sid = np.asarray(table.column("id").to_pylist())
        order = list(dict.fromkeys(sid.tolist()))
        ref = []
        for s in order:
            r = values[sid == s].std(axis=0)
            r[r == 0] = 1.0
            ref.append(r)
        np.testing.assert_allclose(seq_std, np.array(ref, np.float32), rtol=1e-5)


def test_chunk_part_chunks_are_its_chunks_sequences_in_order(source):
    chunks = source.index()
    ids = [3, 0, 5]
    part = ChunkPart(source, ids)
    got = Sequences.concat(list(part.chunks()))
    assert got.ids.tolist() == [i for c in ids for i in chunks[c].ids.tolist()]
    np.testing.assert_array_equal(part.lengths, got.lengths)
    direct = dict(_read_directly(source.path))
    for sid, s in zip(got.ids, got, strict=True):
        np.testing.assert_array_equal(s, direct[sid])


def test_folder_validation_must_be_a_folder_of_the_same_features(source, folder, tmp_path):
    with pytest.raises(TypeError, match="validation must be a ParquetSource too, not "
                                        "Sequences"):
        FolderSource(source, Sequences.from_list([np.zeros((2, 2))]))
    with pytest.raises(TypeError, match="validation is a ParquetSource and the training "
                                        "data are in memory"):
        from_input([np.ones((3, 2))], source, "auto", "error", LengthPolicy(None))
    other = ParquetSource(_write_folder(tmp_path / "three", n_files=1, n_features=3),
                          time_col="t")
    with pytest.raises(SequenceDataError, match="do not match the training data"):
        FolderSource(source, other).split(3, np.random.default_rng(0))
    val_src = ParquetSource(_write_folder(tmp_path / "val", n_files=1, seed=5), time_col="t")
    fs = FolderSource(source, val_src)
    train, val = fs.split(3, np.random.default_rng(0))
    assert train.ids == list(range(len(source.index())))
    assert val.source is val_src and val.ids == list(range(len(val_src.index())))
    assert fs.fingerprint()["validation"] == val_src.signature()


def test_check_lengths_applies_only_the_refuse_policy(source):
    fs = FolderSource(source)
    for policy in ("truncate", "window"):
        with pytest.raises(ValueError, match=f"max_len_policy='{policy}' applies to data in "
                                             "memory"):
            fs.check_lengths(LengthPolicy(4, policy))
    fs.check_lengths(LengthPolicy(None, "truncate"))  # no limit: nothing to apply
    longest = int(source.lengths.max())
    fs.check_lengths(LengthPolicy(longest, "refuse"))
    first = int(np.argmax(source.lengths > longest - 1))
    with pytest.raises(SequenceDataError, match=f"sequence '{source.ids[first]}' has "
                                                f"{longest} steps") as e:
        fs.check_lengths(LengthPolicy(longest - 1, "refuse"))
    assert e.value.seq_id == source.ids[first]


def test_from_input_with_a_folder_gives_a_folder_source_and_a_continuous_task(source):
    fs, task = from_input(source, None, "global", "error", LengthPolicy(100, "refuse"))
    assert isinstance(fs, FolderSource) and isinstance(task, ContinuousTask)
    assert (task.n_features, task.feature_names, task.scaler.mode) == (2, FEATURES, "global")
    assert len(fs) == 24 and fs.n_features == 2
    with pytest.raises(TypeError, match="token ids are not read from folders"):
        fs.data_max()
    with pytest.raises(ValueError, match="applies to data in memory"):
        from_input(source, None, "global", "error", LengthPolicy(4, "truncate"))


def test_chunks_of_a_folder_yields_every_sequence_in_index_order(source, folder):
    got = Sequences.concat(list(chunks_of(source)))
    direct = _read_directly(folder)
    assert got.ids.tolist() == [sid for sid, _ in direct] == source.ids.tolist()
    for s, (_, ref) in zip(got, direct, strict=True):
        np.testing.assert_array_equal(s, ref)


def test_chunks_of_data_in_memory_is_none(rng):
    assert chunks_of(_memory(rng)) is None
    assert chunks_of([np.zeros((2, 1))]) is None
    assert chunks_of(["abc"]) is None
