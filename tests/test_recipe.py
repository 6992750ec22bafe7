"""Every "auto" resolved in one place (seqae.recipe): pure functions of the parameters
and of what the training data look like, checked against the rules written by hand."""

import numpy as np
import pytest

import seqae
from seqae.nn.encoders import conv_depth_for
from seqae.recipe import (
    INFERENCE_SPEEDUP,
    LONG,
    MAX_VALIDATION,
    MIN_VALIDATION,
    ONE_THREAD_HIDDEN,
    PATCH_LENGTH,
    POST_SHARE,
    precision,
    resolve,
    scored_steps,
    threads,
    train_budget,
    validation_size,
)

CONTINUOUS = {"vocab_size": 0}


def _params(**kw):
    return seqae.SequenceAutoencoder(**kw).get_params()


def test_short_sequences_get_the_recurrent_recipe_with_reasons():
    r = resolve(_params(), np.array([20, LONG, LONG]), 120, 3, CONTINUOUS)  # median LONG
    m = r.model
    assert (m.encoder, m.pooling, m.contrastive, m.contrast) == ("rnn", "last", 0.0, "instance")
    assert (m.latent_dim, m.patch, m.pooled_latent, m.bottleneck) == (32, 1, False, 0)
    assert m.n_features == 3 and m.longest_predicted == 4 * 120 and m.vocab_size == 0
    assert (r.train.lr, r.train.schedule) == (3e-3, "plateau")
    assert r.reasons["encoder"] == f"median training length {LONG:g} <= {LONG}"
    assert set(r.reasons) == {"encoder", "pooling", "contrastive", "contrast", "latent_dim",
                              "patch", "lr", "schedule"}


def test_long_sequences_get_the_convolutional_recipe():
    lengths = np.array([1400, 1460, 1500])
    r = resolve(_params(hidden_size=48, max_time=60), lengths, 1500, 2, CONTINUOUS)
    m = r.model
    patch = round(1460 / PATCH_LENGTH)
    assert (m.encoder, m.pooling, m.contrastive, m.contrast) == ("conv", "max", 1.0,
                                                                  "hierarchical")
    assert (m.latent_dim, m.patch, m.pooled_latent, m.bottleneck) == (48, patch, True, 24)
    assert m.depth == conv_depth_for(-(-1500 // patch))
    assert (r.train.lr, r.train.schedule) == (1e-3, "budget")  # a cosine over the budget
    no_budget = resolve(_params(), lengths, 1500, 2, CONTINUOUS)
    assert no_budget.train.schedule == "plateau"  # no max_time: no known end


def test_what_the_user_set_is_kept_and_has_no_reason():
    r = resolve(_params(encoder="rnn", pooling="mean", contrastive=0.5, latent_dim=7,
                        lr=0.05, schedule="budget"), np.array([500]), 500, 1, CONTINUOUS)
    m = r.model
    assert (m.encoder, m.pooling, m.contrastive, m.latent_dim) == ("rnn", "mean", 0.5, 7)
    assert (r.train.lr, r.train.schedule) == (0.05, "budget")
    assert not {"encoder", "pooling", "contrastive", "latent_dim", "lr", "schedule"} & set(
        r.reasons)


def test_tokens_read_one_step_at_a_time_and_set_the_head():
    head = {"vocab_size": 30, "copies": 0.5}
    m = resolve(_params(encoder="conv"), np.array([2000]), 2000, 1, head).model
    assert m.patch == 1 and m.vocab_size == 30 and m.copies == 0.5


def test_blocks_pooling_makes_every_blocks_channels_the_embedding():
    m = resolve(_params(encoder="conv", pooling="blocks", hidden_size=8, depth=3),
                np.array([200]), 200, 1, CONTINUOUS).model
    assert (m.latent_dim, m.bottleneck, m.depth) == (24, 4, 3)


def test_validation_size():
    assert validation_size("auto", 10 * MIN_VALIDATION - 11) == 0  # 10 % is under 50
    assert validation_size("auto", 10 * MIN_VALIDATION) == MIN_VALIDATION
    assert validation_size(0.25, 40) == 10 and validation_size(0.01, 40) == 1
    assert validation_size(0.5, 9) == 0 and validation_size(0, 1000) == 0
    # "auto" holds out at most MAX_VALIDATION (every epoch evaluates them); a fraction
    # given is taken as it is
    assert validation_size("auto", 100 * MAX_VALIDATION) == MAX_VALIDATION
    assert validation_size(0.1, 100 * MAX_VALIDATION) == 10 * MAX_VALIDATION


def test_the_budget_of_the_whole_call_is_shared_out():
    assert train_budget(None, 5.0) is None
    # what reading took comes off, and POST_SHARE of the budget is kept for the scores
    assert train_budget(100.0, 5.0) == pytest.approx(100 - 5 - 100 * POST_SHARE)
    assert train_budget(10.0, 20.0) == 0.0
    # a floor for the scoring pass longer than that share is kept instead (issue 29)
    assert train_budget(100.0, 5.0, floor=30.0) == pytest.approx(65.0)
    assert train_budget(100.0, 5.0, floor=1.0) == pytest.approx(100 - 5 - 100 * POST_SHARE)
    # every step scored when it fits at INFERENCE_SPEEDUP x the training pace (or no
    # budget), else the steps that fit: a small fit computes what it always did
    assert scored_steps(1000, 100, 1.0, None) is None
    assert scored_steps(1000, 100, 1.0, 1000 / (100 * INFERENCE_SPEEDUP)) is None
    assert scored_steps(1000, 100, 1.0, 2.0) == int(2.0 * 100 * INFERENCE_SPEEDUP)
    assert scored_steps(1000, 100, 1.0, -3.0) == 0


@pytest.mark.parametrize("policy, device, hidden, encoder, want", [
    ("PASSIVE", "cpu", ONE_THREAD_HIDDEN, "rnn", 1),
    ("passive ", "cpu", 64, "rnn", 1),
    ("PASSIVE", "cpu", ONE_THREAD_HIDDEN + 1, "rnn", None),
    ("PASSIVE", "cpu", 64, "conv", None),
    ("PASSIVE", "cuda", 64, "rnn", None),
    ("ACTIVE", "cpu", 64, "rnn", None),
    (None, "cpu", 64, "rnn", None),
])
def test_threads_auto(monkeypatch, policy, device, hidden, encoder, want):
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    cfg = seqae.nn.ModelConfig(n_features=1, hidden_size=hidden, encoder=encoder,
                               pooling="max" if encoder == "conv" else "last")
    assert threads("auto", cfg, device) == want
    assert threads(3, cfg, device) == 3 and threads(None, cfg, device) is None


def test_precision_auto_is_float32_on_every_device():
    """``precision="auto"``: float32 on GPUs too (bf16 made every measured fit slower:
    benchmarks/RESULTS.md), with that reason; a set value is kept as set."""
    for device in ("cuda", "cpu", "mps"):
        value, why = precision("auto", device)
        assert value == "32" and "slower" in why and device in why
    for value in ("32", "bf16", "16"):
        assert precision(value, "cuda") == (value, "set")
        assert precision(value, "cpu") == (value, "set")
    assert _params()["precision"] == "auto"
