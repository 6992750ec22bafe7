import numpy as np
import pytest

from seqae.io import DataFileError, read_ts

TS = """# a comment
@problemName tiny
@univariate false
@equalLength false
@classLabel true a b
@data
1,2,3:4,5,6:a
7:8:b
"""


def test_read_ts_unequal_multivariate(tmp_path):
    p = tmp_path / "tiny.ts"
    p.write_text(TS)
    seqs, labels = read_ts(p)
    assert seqs.lengths.tolist() == [3, 1] and seqs.n_features == 2
    np.testing.assert_array_equal(seqs[0], [[1, 4], [2, 5], [3, 6]])
    assert labels.tolist() == ["a", "b"]


def test_read_ts_errors(tmp_path):
    p = tmp_path / "bad.ts"
    p.write_text(TS.replace("7:8:b", "7,?:8,9:b"))
    with pytest.raises(DataFileError, match=r"bad.ts:8: case 1"):
        read_ts(p)
    p.write_text(TS.replace("7:8:b", "7,1:8:b"))
    with pytest.raises(DataFileError, match="different lengths"):
        read_ts(p)
    with pytest.raises(DataFileError, match="no such file"):
        read_ts(tmp_path / "nope.ts")
