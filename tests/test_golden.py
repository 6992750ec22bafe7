"""Golden results: fixed-seed fits give the stored weights and outputs, bit for bit.

The store (tests/golden/) was written before the redesign of issue 23 at d14de26. On
the platform it was written on (same torch version and CPU kernels) every array must be
identical to the last bit; elsewhere the kernels may round differently, and the arrays
are compared to a tolerance instead (the test says which). A commit that changes results
on purpose rewrites the store (``python tests/golden/cases.py --write``) and says why.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from golden import cases

# Names changed on purpose since the store was written (values must not): the encoder's
# body was `encoder.rnn`, which also held the convolutional encoder (format 2).
RENAMED = {"w/encoder.rnn.": "w/encoder.body."}


def _new_name(key: str) -> str:
    for old, new in RENAMED.items():
        key = key.replace(old, new)
    return key


STORED = {_new_name(k): v for k, v in load_file(str(cases.STORE)).items()}
META = json.loads(cases.META.read_text())
META["digests"] = {_new_name(k): v for k, v in META["digests"].items()}
EXACT = META["platform"] == cases.platform_key()


@pytest.mark.parametrize("name", list(cases.CASES))
def test_the_golden_case_gives_the_stored_results(name, tmp_path):
    out = cases.run(name, tmp_path)
    stored = {k.split(":", 1)[1]: v for k, v in STORED.items() if k.startswith(name + ":")}
    assert sorted(out) == sorted(stored), "the case's outputs changed names"
    for key, want in stored.items():
        got = np.asarray(out[key])
        assert got.shape == want.shape and got.dtype == want.dtype, key
        if EXACT:
            assert cases.digest(got) == META["digests"][f"{name}:{key}"], (
                f"{name}: {key} differs from the stored result "
                f"(largest difference {np.abs(got.astype(float) - want).max()})")
        elif want.dtype.kind in "iub":
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, err_msg=key)


@pytest.mark.parametrize("name, data", [("gru", cases._demo), ("texts", lambda: cases.WORDS)])
def test_a_model_folder_saved_by_d14de26_still_loads_and_gives_its_results(name, data):
    import seqae

    ae = seqae.SequenceAutoencoder.load(cases.HERE / f"model-{name}-d14de26", device="cpu")
    ae.set_params(threads=1)
    want = STORED[f"{name}:encode"]
    got = ae.encode(data())
    if EXACT:
        assert cases.digest(got) == META["digests"][f"{name}:encode"]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(ae.train_scores_, STORED[f"{name}:train_scores"])
    assert ae.threshold_ == float(STORED[f"{name}:threshold"][0])
