import atexit
import os
import shutil
import tempfile

# The Keras front end is tested on the torch backend (no TensorFlow here); set before
# anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "torch")

# Folder indexes are cached (seqae.indexing); the tests (and the commands they run)
# cache in a folder of their own, removed at the end, never in the user's cache.
_CACHE = tempfile.mkdtemp(prefix="seqae-test-cache-")
os.environ["SEQAE_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from fixed seeds."""
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
