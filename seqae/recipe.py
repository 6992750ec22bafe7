"""Every ``"auto"`` setting resolved in one place, by pure functions, with its reasons.

`resolve` turns the estimator's parameters and what the training data look like (their
lengths, feature count, the task's head) into one `Recipe`: the model's architecture
and the training settings. `validation_size` (how many sequences to hold out) is needed
before the split, and `threads` (CPU threads) at every call on the device the model is
on, so they are functions of their own. Nothing here reads an estimator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .nn.encoders import conv_depth_for
from .nn.model import ModelConfig
from .train import TrainConfig

__all__ = ["Recipe", "resolve", "validation_size", "threads", "precision", "LONG", "PATCH_LENGTH",
           "MIN_VALIDATION", "MAX_VALIDATION", "ONE_THREAD_HIDDEN", "POST_SHARE",
           "INFERENCE_SPEEDUP", "MIN_SCORED", "train_budget", "scored_steps"]

# validation_fraction="auto" holds out 10 % only when that is at least this many
# sequences: early stopping on 4 or 5 held-out sequences follows noise, not the model.
MIN_VALIDATION = 50
# ... and at most this many: the held-out loss of 5,000 sequences is as steady a signal
# for early stopping as that of more, and validation runs every epoch (issue 29: 10 % of
# 204,000 sequences took longer per epoch than a 90 s budget allowed).
MAX_VALIDATION = 5_000
# With max_time, the whole fit call keeps to it (issue 29): training gets what is left of
# the budget after the data are read, less this share of the budget, kept for the pass
# after training (training scores for the threshold, latents for the length head).
POST_SHARE = 0.1
# That pass runs forward only, with larger batches: its valid steps per second are taken
# as this many times those of training (measured: 3-4 x for the default GRU on 2 CPU
# cores; 2 leaves a margin) to size a sample that fits what is left of the budget.
INFERENCE_SPEEDUP = 2.0
# The sample scores at least this many training sequences (or all of them), whatever
# the budget: a threshold needs some scores.
MIN_SCORED = 1_000
# encoder="auto": a median length above this many steps picks the convolutional encoder.
LONG = 100
# contrast="auto" with the convolutional encoder
CONV_CONTRAST = "hierarchical"
# patch="auto": the convolutional encoder reads patches of about median length / this
# many steps, so that a typical sequence is about this many patches long.
PATCH_LENGTH = 512
# threads="auto": on the CPU with OpenMP's threads sleeping between parallel regions
# (OMP_WAIT_POLICY=PASSIVE), a recurrent encoder this wide or narrower computes on one
# thread. Its per-step products are too small to split, and waking the sleeping threads
# for each of them costs more than it gains: a whole fit of the default GRU 64 took 2.9 x
# as long on 2 threads as on 1 (GRU 256: 1.25 x; GRU 512 and the convolutions: no gain
# from one thread). With threads that spin while they wait (OpenMP's default policy) the
# second thread costs nothing and gains up to 1.6 x, so torch's setting stays
# (benchmarks/threads.py, benchmarks/RESULTS.md).
ONE_THREAD_HIDDEN = 256


@dataclass
class Recipe:
    """The resolved settings of one fit: the model (``model``) and the training loop
    (``train``), with a reason for each choice that was ``"auto"``."""

    model: ModelConfig
    train: TrainConfig
    reasons: dict[str, str] = field(default_factory=dict)


def validation_size(fraction: Any, n: int) -> int:
    """How many of ``n`` training sequences to hold out for early stopping."""
    if fraction == "auto":
        n_val = int(round(0.1 * n))
        return min(n_val, MAX_VALIDATION) if n_val >= MIN_VALIDATION else 0
    if not fraction or n < 10:
        return 0
    return max(1, int(round(float(fraction) * n)))


def train_budget(max_time: float | None, spent: float, floor: float = 0.0) -> float | None:
    """The training loop's time budget (`seqae.train.TrainConfig.max_time`) when the
    whole fit has ``max_time`` seconds and ``spent`` of them are gone (reading and
    indexing the data, statistics): the rest, less what is kept for the pass after
    training: `POST_SHARE` of ``max_time``, or ``floor`` seconds when that pass needs
    more (its `MIN_SCORED` sequences, timed: long sequences, a short budget). Never
    below 0 (the loop then makes one optimizer step)."""
    if max_time is None:
        return None
    return max(0.0, float(max_time) - spent - max(POST_SHARE * float(max_time), floor))


def scored_steps(total: int, train_steps: int, train_seconds: float,
                 seconds_left: float | None) -> int | None:
    """How many valid steps the pass after training may score so that the fit ends
    within its budget: None (every training sequence) without a budget or when all of
    ``total`` steps fit in ``seconds_left`` at `INFERENCE_SPEEDUP` times the training
    rate (``train_steps`` valid steps in ``train_seconds``); else the steps that fit.
    A pure function of what was measured, so that a fit whose budget holds every score
    computes exactly what it would without a budget."""
    if seconds_left is None or train_seconds <= 0 or train_steps <= 0:
        return None
    rate = INFERENCE_SPEEDUP * train_steps / train_seconds  # valid steps per second
    fits = int(max(0.0, seconds_left) * rate)
    return None if fits >= total else fits


def threads(param: Any, config: ModelConfig, device_type: str) -> int | None:
    """The CPU threads a model computes on (``threads`` resolved; None: torch's)."""
    if param != "auto":
        return param
    if (device_type == "cpu" and config.encoder == "rnn"
            and config.hidden_size <= ONE_THREAD_HIDDEN
            and os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"):
        return 1
    return None


def precision(param: str, device_type: str) -> tuple[str, str]:
    """The training precision (``precision`` resolved) and why. ``"auto"`` is float32 on
    every device: under bf16 autocast a whole `fit` took longer than in float32 for
    every recipe measured on GPUs (0.73-0.97 x float32's rate on an H100, 0.91-0.92 x on
    an H200: the GRU and LSTM at hidden 256, batch 128, and the conv recipe;
    benchmarks/RESULTS.md), and on the CPU it gained nothing and float32 keeps the golden
    results. ``"bf16"`` remains the way to halve the activations' GPU memory."""
    if param != "auto":
        return param, "set"
    return "32", (f"float32 on {device_type}: bf16 autocast was slower for every recipe "
                  "measured (benchmarks/RESULTS.md)")


def _encoder(p: dict[str, Any], median: float, tokens: bool,
             reasons: dict[str, str]) -> dict[str, Any]:
    """``encoder``, ``pooling``, ``contrastive``, ``contrast``, ``latent_dim`` and
    ``patch``: sequences of more than `LONG` steps (median) get the convolutional
    encoder, max pooling, the hierarchical crop term and its pooled outputs as the
    embedding; shorter ones the bidirectional GRU's final states, plain reconstruction
    and a 32-number latent."""
    def auto(name: str, value: Any, why: str) -> Any:
        if p[name] != "auto":
            return p[name]
        reasons[name] = why
        return value

    conv = median > LONG
    encoder = auto("encoder", "conv" if conv else "rnn",
                   f"median training length {median:g} {'>' if conv else '<='} {LONG}")
    conv = encoder == "conv"
    return {
        "encoder": encoder,
        "pooling": auto("pooling", "max" if conv else "last", f"encoder={encoder}"),
        "contrastive": float(auto("contrastive", 1.0 if conv else 0.0, f"encoder={encoder}")),
        "contrast": auto("contrast", CONV_CONTRAST if conv else "instance",
                         f"encoder={encoder}"),
        "latent_dim": int(auto("latent_dim", p["hidden_size"] if conv else 32,
                               f"encoder={encoder}")),
        # token ids are embedded one by one
        "patch": int(auto("patch", max(1, round(median / PATCH_LENGTH)) if conv and not tokens
                          else 1, f"median length / {PATCH_LENGTH}" if conv else "rnn")),
    }


def _model(p: dict[str, Any], n_features: int, max_length: int, arch: dict[str, Any],
           head: dict[str, Any]) -> ModelConfig:
    # The conv encoder's max-pooled outputs are the embedding (they are what the crop
    # term trains: issue 11's probes, OSULeaf 0.81 against 0.70 for a linear map of
    # them), and the decoder reads them through a bottleneck of half their width.
    pooled = arch["encoder"] == "conv" and "+" not in arch["pooling"] and (
        arch["pooling"] != "blocks" or p["latent_dim"] == "auto")
    depth = p["depth"] if p["depth"] is not None else conv_depth_for(
        -(-max_length // arch["patch"]))
    bottleneck = max(1, arch["latent_dim"] // 2) if pooled else 0
    if arch["pooling"] == "blocks" and p["latent_dim"] == "auto":
        # every block's pooled channels are the embedding; the decoder reads them
        # through the default's bottleneck width
        arch = {**arch, "latent_dim": p["hidden_size"] * depth}
        bottleneck = max(1, p["hidden_size"] // 2)
    return ModelConfig(
        n_features=n_features, pooled_latent=pooled, bottleneck=bottleneck,
        hidden_size=p["hidden_size"], num_layers=p["num_layers"], cell=p["cell"],
        bidirectional=p["bidirectional"], depth=depth, **arch, dropout=p["dropout"],
        decoder=p["decoder"], position=p["position"], longest_predicted=4 * max_length,
        token_dropout=p["token_dropout"], **head)


def resolve(p: dict[str, Any], train_lengths: np.ndarray, max_length: int, n_features: int,
            head: dict[str, Any]) -> Recipe:
    """The `Recipe` for parameters ``p`` (`SequenceAutoencoder.get_params`), the training
    part's lengths, the longest sequence of all the data, the feature count and the
    task's head settings (`seqae.tasks`)."""
    reasons: dict[str, str] = {}
    median = float(np.median(train_lengths)) if len(train_lengths) else 0.0
    model = _model(p, n_features, max_length, _encoder(p, median, head["vocab_size"] > 0,
                                                       reasons), head)
    conv = model.encoder == "conv"
    lr = float(p["lr"]) if p["lr"] != "auto" else (1e-3 if conv else 3e-3)
    schedule = p["schedule"]
    if schedule == "auto":
        # a cosine over the time budget for the convolutional encoder when there is one,
        # else halving on plateaus
        schedule = "budget" if conv and p["max_time"] is not None else "plateau"
        reasons["schedule"] = f"encoder={model.encoder}, max_time={p['max_time']}"
    if p["lr"] == "auto":
        reasons["lr"] = f"encoder={model.encoder}"
    train = TrainConfig(
        max_epochs=p["max_epochs"], max_time=p["max_time"], batch_size=p["batch_size"], lr=lr,
        weight_decay=p["weight_decay"], grad_clip=p["grad_clip"], patience=p["patience"],
        batching=p["batching"], seed=p["seed"], accumulate=p["accumulate"],
        schedule=schedule)
    return Recipe(model, train, reasons)
