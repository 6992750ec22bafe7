"""The parameter table (seqae.params): it is the estimator's signature, every value it
accepts is accepted by fit, and every value it refuses is refused before any data are
read, naming the parameter, the value and what is allowed."""

import inspect
import math

import numpy as np
import pytest

import seqae
from seqae.params import PARAMS, cli_flags, param_of_flag, validate


def test_the_table_is_the_estimators_signature_with_its_defaults():
    sig = inspect.signature(seqae.SequenceAutoencoder.__init__)
    names = [n for n in sig.parameters if n != "self"]
    assert names == list(PARAMS)
    for name in names:
        assert sig.parameters[name].default == PARAMS[name].default, name
    validate(seqae.SequenceAutoencoder().get_params())  # the defaults pass


BAD = [
    ("latent_dim", 0, "latent_dim must be 'auto' or an int in 1..16,384 (set "
                    "SEQAE_LIMIT_LATENT_DIM to raise the limit), got 0"),
    ("hidden_size", 2.5, "hidden_size must be an int in 1..16,384 (set "
                     "SEQAE_LIMIT_HIDDEN_SIZE to raise the limit), got 2.5"),
    ("max_epochs", 0, "max_epochs must be an int >= 1, got 0"),
    ("max_time", -1, "max_time must be a number in [0, inf) or None, got -1"),
    ("max_time", math.nan, "max_time must be a number in [0, inf) or None, got nan"),
    ("validation_fraction", -0.5, "validation_fraction must be a number in [0, 1) or "
                                  "'auto', got -0.5"),
    ("contamination", 1.5, "contamination must be a number in [0, 1), got 1.5"),
    ("cell", "rnn", "cell must be one of ('gru', 'lstm'), got 'rnn'"),
    ("bidirectional", 1, "bidirectional must be one of (True, False), got 1"),
    ("pooling", "mean+median", "pooling must be 'auto', 'blocks' or '+'-joined parts"),
    ("threads", 0, "threads must be 'auto', None or a positive int, got 0"),
    ("verbose", 3, "verbose must be 0, 1 or 2, got 3"),
    ("max_len", 0, "max_len must be an int >= 1 or None, got 0"),
    ("seed", -1, "seed must be an int >= 0, got -1"),
]


@pytest.mark.parametrize("name, value, message", BAD)
def test_a_bad_value_is_refused_naming_it_before_any_data_are_read(name, value, message):
    with pytest.raises(ValueError) as e:
        validate({name: value})
    assert str(e.value).startswith(message)
    # through fit: the data are never touched (an object that fails on any use)
    class Untouchable:
        def __getattr__(self, attr):
            raise AssertionError(f"fit read the data ({attr}) before validating")

    with pytest.raises(ValueError, match=name):
        seqae.SequenceAutoencoder(**{name: value}).fit(Untouchable())


def test_unknown_names_are_refused_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"invalid parameter 'latentdim'; valid: \["):
        validate({"latentdim": 3})


def test_every_value_the_table_accepts_fits():
    """The table is no stricter than the estimator: non-default values it accepts train."""
    rng = np.random.default_rng(0)
    seqs = seqae.Sequences.from_list([rng.normal(size=(n, 2)) for n in (3, 1, 6, 4)])
    ae = seqae.SequenceAutoencoder(latent_dim=2, hidden_size=4, max_epochs=1, verbose=0,
                                   threads=None, normalize=False, max_time=0, lr=0.0,
                                   pooling="mean+max", validation_fraction=0,
                                   max_len=None, cell="lstm", bidirectional=False)
    validate(ae.get_params())
    assert ae.fit(seqs).encode(seqs).shape == (4, 2)


def test_cli_flags_come_from_the_table():
    flags = cli_flags()
    assert param_of_flag("epochs") == "max_epochs" and flags["epochs"] is PARAMS["max_epochs"]
    assert param_of_flag("val-fraction") == "validation_fraction"
    for flag, spec in flags.items():
        assert spec.help and spec.cli_type is not None, flag
        if spec.cli_choices:  # every choice offered is a value the table accepts
            for choice in spec.cli_choices:
                assert spec.check(spec.cli_type(choice)), (flag, choice)
    with pytest.raises(KeyError):
        param_of_flag("no-such-flag")
