import os

# The Keras front end is tested on the torch backend (no TensorFlow here); set before
# anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from fixed seeds."""
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
