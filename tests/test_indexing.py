"""Issue 29 item 2: the columnar index of a folder against the general reader and the
data read whole, its cache (hits, invalidation, damage, off), and under torchrun rank 0
indexing while the others wait for its cache."""

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seqae
from seqae import indexing
from seqae.distributed import Context
from seqae.stream import ParquetSource


def _plain(folder: Path, kind: str) -> Path:
    """Three files of long tables whose sequences are runs of rows in time order (the
    columnar path), row groups cutting through sequences; ``kind`` picks the id, time
    and feature types, and ``"mixed"`` shuffles one sequence's rows (the general path)."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    k = 0
    for f in range(3):
        ids, ts, vals = [], [], []
        for _ in range(20):
            n = int(rng.integers(1, 30))  # lengths 1 included
            t = np.arange(n) * 2 + 5
            if kind == "mixed" and k % 7 == 3:
                t = rng.permutation(t)
            ids += [k] * n
            ts += t.tolist()
            vals.append(rng.normal(size=(n, 3)) * [1, 100, 1e-3] + [0, 1e4, 5])
            k += 1
        v = np.concatenate(vals)
        cols: dict = {"id": ids, "t": ts}
        if kind == "strings":  # string ids, timestamps, float64 and int features
            cols = {"id": [f"u{i:03d}" for i in ids],
                    "t": pa.array(np.array(ts, "datetime64[s]")),
                    "a": v[:, 0], "b": np.round(v[:, 1]).astype(np.int64), "c": v[:, 2]}
        else:
            cols.update({"a": v[:, 0].astype(np.float32), "b": v[:, 1].astype(np.float32),
                         "c": v[:, 2].astype(np.float32)})
        pq.write_table(pa.table(cols), folder / f"p{f}.parquet", row_group_size=41)
    return folder


def _general(monkeypatch, source: ParquetSource):
    """The index made by the general reader alone (every chunk read as a file is)."""
    with monkeypatch.context() as m:
        m.setattr(indexing, "_fill_fast", lambda *a, **k: False)
        m.setenv("SEQAE_CACHE_DIR", "off")
        return source.index(stats=True)


@pytest.mark.parametrize("kind", ["ints", "strings", "mixed"])
def test_the_columnar_pass_equals_the_general_reader_and_the_data_read_whole(
        tmp_path, monkeypatch, kind):
    folder = _plain(tmp_path / kind, kind)
    fast = []
    real = indexing._fill_fast
    monkeypatch.setattr(indexing, "_fill_fast", lambda *a, **k: fast.append(real(*a, **k))
                        or fast[-1])
    src = ParquetSource(folder, time_col="t")
    chunks = src.index(stats=True)
    monkeypatch.setattr(indexing, "_fill_fast", real)
    # plain chunks are counted column by column; a shuffled sequence's chunk is not
    assert all(fast) if kind != "mixed" else (any(fast) and not all(fast))
    want = _general(monkeypatch, ParquetSource(folder, time_col="t"))
    assert [(c.file, c.start, c.stop) for c in chunks] == [(c.file, c.start, c.stop)
                                                            for c in want]
    assert any(len(c.row_groups) > 1 for c in chunks)  # sequences cross row groups
    for a, b in zip(chunks, want, strict=True):
        np.testing.assert_array_equal(a.ids, b.ids)
        assert a.ids.dtype == b.ids.dtype
        np.testing.assert_array_equal(a.lengths, b.lengths)
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
        np.testing.assert_allclose(a.m2, b.m2, rtol=1e-9)
        np.testing.assert_allclose(a.seq_std, b.seq_std, rtol=2e-6)
    whole = seqae.Sequences.concat([seqae.read_sequences(f, time_col="t")
                                    for f in sorted(folder.glob("*.parquet"))])
    np.testing.assert_array_equal(src.ids, whole.ids)
    np.testing.assert_array_equal(src.lengths, whole.lengths)
    mean, std, seq_std = src.stats()
    want_mean, want_std = whole.feature_stats()
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(std, want_std, rtol=1e-6)
    np.testing.assert_allclose(seq_std, whole.sequence_stats()[1], rtol=2e-6)


def test_an_id_in_two_runs_of_a_chunk_is_read_as_a_file_is(tmp_path):
    """Not plain: the general reader groups the rows (as a file read whole does)."""
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"id": [1, 1, 2, 1, 3], "x": [1.0, 2, 3, 4, 5]}),
                   tmp_path / "d" / "a.parquet")
    src = ParquetSource(tmp_path / "d")
    np.testing.assert_array_equal(src.lengths, [3, 1, 1])
    np.testing.assert_allclose(src.stats()[0], [3.0])


def _reads(monkeypatch) -> list:
    """The chunks each pass over the files counted (none: the index came from the
    cache)."""
    seen: list = []
    real = indexing._scan

    def scan(*args):
        chunks = real(*args)
        seen.extend(chunks)
        return chunks

    monkeypatch.setattr(indexing, "_scan", scan)
    return seen


def test_the_cache_skips_the_pass_until_a_file_changes(tmp_path, monkeypatch, caplog):
    folder = _plain(tmp_path / "d", "ints")
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEQAE_CACHE_DIR", str(cache))
    reads = _reads(monkeypatch)
    first = ParquetSource(folder, time_col="t").index(stats=True)
    assert len(reads) == len(first) and len(list(cache.glob("index-*.parquet"))) == 1
    del reads[:]
    again = ParquetSource(folder, time_col="t")
    chunks = again.index(stats=True)
    assert reads == []  # from the cache: no file read
    for a, b in zip(chunks, first, strict=True):
        assert (a.file, a.start, a.stop, a.row_groups) == (b.file, b.start, b.stop,
                                                           b.row_groups)
        np.testing.assert_array_equal(a.ids, b.ids)
        assert a.ids.dtype == b.ids.dtype and a.lengths.dtype == np.int64
        np.testing.assert_array_equal(a.mean, b.mean)  # exact: JSON keeps every bit
        np.testing.assert_array_equal(a.m2, b.m2)
        np.testing.assert_array_equal(a.seq_std, b.seq_std)
    # an index with the statistics serves one without them; other columns do not share
    assert ParquetSource(folder, time_col="t").index() and reads == []
    ParquetSource(folder, time_col="t", features=["a"]).index(stats=True)
    assert reads and len(list(cache.glob("index-*.parquet"))) == 2
    del reads[:]
    # a file rewritten (another modification time) is indexed again
    p = folder / "p1.parquet"
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    ParquetSource(folder, time_col="t").index(stats=True)
    assert len(reads) == len(first)
    del reads[:]
    # a damaged cache file is said, ignored and replaced
    for f in cache.glob("index-*.parquet"):
        f.write_bytes(b"not parquet")
    with caplog.at_level("WARNING", logger="seqae"):
        ParquetSource(folder, time_col="t").index(stats=True)
    assert "ignoring the index cache" in caplog.text and len(reads) == len(first)
    del reads[:]
    ParquetSource(folder, time_col="t").index(stats=True)
    assert reads == []


def test_an_index_without_statistics_is_not_enough_for_training(tmp_path, monkeypatch):
    folder = _plain(tmp_path / "d", "ints")
    monkeypatch.setenv("SEQAE_CACHE_DIR", str(tmp_path / "cache"))
    reads = _reads(monkeypatch)
    ParquetSource(folder, time_col="t").index()  # inference: ids and times only
    del reads[:]
    src = ParquetSource(folder, time_col="t")
    assert src.index() and reads == []
    assert src.stats()[0].shape == (3,) and len(reads) == len(src.index())


def test_the_cache_can_be_off_or_unwritable(tmp_path, monkeypatch, caplog):
    folder = _plain(tmp_path / "d", "ints")
    monkeypatch.setenv("SEQAE_CACHE_DIR", "off")
    assert indexing.cache_dir() is None
    ParquetSource(folder, time_col="t").index(stats=True)
    monkeypatch.delenv("SEQAE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert indexing.cache_dir() == tmp_path / "xdg" / "seqae"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("SEQAE_CACHE_DIR", str(blocker / "sub"))  # cannot be made
    with caplog.at_level("WARNING", logger="seqae"):
        got = ParquetSource(folder, time_col="t").index(stats=True)
    assert "could not cache the index" in caplog.text and len(got) > 3
    assert sorted(p.name for p in folder.iterdir()) == ["p0.parquet", "p1.parquet",
                                                         "p2.parquet"]  # nothing beside


class _Ranks(Context):
    """Rank ``rank`` of 2; ``wait`` runs at the barrier (what the other rank does)."""

    def __init__(self, rank, wait=lambda: None):
        super().__init__(rank, 2)
        self.wait, self.waited = wait, 0

    def barrier(self):
        self.waited += 1
        self.wait()


def test_under_torchrun_rank_0_indexes_and_the_others_read_its_cache(tmp_path, monkeypatch):
    folder = _plain(tmp_path / "d", "ints")
    monkeypatch.setenv("SEQAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    reads = _reads(monkeypatch)
    zero = _Ranks(0)
    monkeypatch.setattr("seqae.distributed.context", lambda: zero)
    chunks = ParquetSource(folder, time_col="t").index(stats=True)
    assert zero.waited == 1 and len(reads) == len(chunks)
    # rank 1: no cache yet when it looks; rank 0 writes it while rank 1 waits
    for f in (tmp_path / "cache").glob("*"):
        f.rename(tmp_path / f.name)
    one = _Ranks(1, wait=lambda: [f.rename(tmp_path / "cache" / f.name)
                                  for f in tmp_path.glob("index-*.parquet")])
    monkeypatch.setattr("seqae.distributed.context", lambda: one)
    del reads[:]
    got = ParquetSource(folder, time_col="t").index(stats=True)
    assert one.waited == 1 and reads == []  # waited, then read rank 0's file
    np.testing.assert_array_equal(np.concatenate([c.ids for c in got]),
                                  np.concatenate([c.ids for c in chunks]))
    # rank 0 meets bad data: it still reaches the barrier (nobody waits forever), then
    # raises; rank 1, finding no cache, indexes and raises the same error itself
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "t": [0, 0], "x": [1.0, float("inf")]}),
                   bad / "a.parquet")
    for ctx in (_Ranks(0), _Ranks(1)):
        monkeypatch.setattr("seqae.distributed.context", lambda c=ctx: c)
        with pytest.raises(seqae.DataFileError, match=r"a.parquet, rows 0-1 \(row group 0\): "
                           r"sequence 1 \(id 2\) has a NaN or infinite value") as e:
            ParquetSource(bad, time_col="t").index(stats=True)
        assert ctx.waited == 1 and str(e.value).count("a.parquet") == 1
