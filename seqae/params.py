"""The one table of `SequenceAutoencoder`'s parameters: defaults, what each accepts, and
the command-line flag that sets it.

`validate` checks a whole set of parameters in one step, before any data is read or
anything is written (the estimator calls it first thing in `fit`); the CLI builds its
training flags from the same table (`cli_flags`), so a parameter's allowed values are
written once.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Param", "PARAMS", "LIMITS", "validate", "cli_flags", "param_of_flag", "limit",
           "check_limit", "DEVICE"]

Check = Callable[[Any], bool]

# The sizes a user (or a model folder) controls, each bounded so that a typo or a tampered
# file fails with a message instead of allocating without end. Each is raised for a run by
# the environment variable SEQAE_LIMIT_<NAME> (e.g. SEQAE_LIMIT_HIDDEN_SIZE=32768).
LIMITS: dict[str, int] = {
    "hidden_size": 16_384,      # RNN units per direction / conv channels
    "latent_dim": 16_384,       # embedding size
    "num_layers": 64,           # stacked layers
    "n_features": 65_536,       # features per step
    "vocab_size": 1_000_000,    # token ids (the largest id + 1)
    "decode_length": 1_000_000,  # steps of one decoded sequence
}

# A torch device name: auto, cpu, cuda, cuda:1, mps... (checked without importing torch)
DEVICE = re.compile(r"auto|cpu|meta|mps|(cuda|xpu|hip|npu)(:\d+)?")


def limit(name: str) -> int:
    """The limit on ``name`` (`LIMITS`, or the environment's SEQAE_LIMIT_<NAME>)."""
    env = os.environ.get(f"SEQAE_LIMIT_{name.upper()}")
    if env is not None:
        try:
            return int(env)
        except ValueError:
            raise ValueError(f"SEQAE_LIMIT_{name.upper()} must be an int, got {env!r}") from None
    return LIMITS[name]


def check_limit(name: str, value: int, what: str | None = None,
                error: type[Exception] = ValueError) -> None:
    """Raise ``error`` when ``value`` is above the limit on ``name``, saying how to raise
    it (``what`` names the value in the message; default ``name``)."""
    top = limit(name)
    if value > top:
        raise error(f"{what or name} {value:,} is above seqae's limit of {top:,}; set the "
                    f"environment variable SEQAE_LIMIT_{name.upper()} to raise it")


def _int(lo: int = 1, none: bool = False, bound: str | None = None) -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        if v is None:
            return none
        return (isinstance(v, (int,)) and not isinstance(v, bool) and v >= lo
                and (bound is None or v <= limit(bound)))
    text = (f"an int in {lo}..{limit(bound):,} (set SEQAE_LIMIT_{bound.upper()} to raise the "
            "limit)" if bound else f"an int >= {lo}")
    return ok, text + (" or None" if none else "")


def _number(lo: float = 0.0, hi: float = math.inf, lo_open: bool = False,
            hi_open: bool = True, none: bool = False, auto: bool = False) -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        if v is None:
            return none
        if auto and v == "auto":
            return True
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    text = f"a number in {left}{lo:g}, {hi:g}{right}"
    return ok, text + (" or None" if none else "") + (" or 'auto'" if auto else "")


def _choice(*values: Any) -> tuple[Check, str]:
    return (lambda v: any(v == c and type(v) is type(c) for c in values),
            f"one of {values}")


def _or_auto(check: tuple[Check, str]) -> tuple[Check, str]:
    ok, text = check
    return (lambda v: v == "auto" or ok(v)), f"'auto' or {text}"


def _pooling(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    return v in ("auto", "blocks") or all(p in ("last", "mean", "max") for p in v.split("+"))


def _normalize(v: Any) -> bool:
    return isinstance(v, bool) or v in ("auto", "global", "sequence", "none")


@dataclass(frozen=True)
class Param:
    """One parameter: its default, a check of a value and the words for the error, and
    its command-line flag (None: not on the command line) with a one-line help."""

    default: Any
    check: Check
    allowed: str
    flag: str | None = None
    help: str = ""
    cli_type: Callable[[str], Any] | None = None
    cli_choices: tuple[str, ...] | None = None


def _p(default: Any, rule: tuple[Check, str], flag: str | None = None, help: str = "",
       cli_type: Callable[[str], Any] | None = None,
       cli_choices: tuple[str, ...] | None = None) -> Param:
    return Param(default, rule[0], rule[1], flag, help, cli_type, cli_choices)


def _auto_int(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _auto_float(text: str) -> float | str:
    return text if text == "auto" else float(text)


PARAMS: dict[str, Param] = {
    "latent_dim": _p("auto", _or_auto(_int(bound="latent_dim")), "latent-dim",
                     "embedding size (default auto)", _auto_int),
    "hidden_size": _p(64, _int(bound="hidden_size"), "hidden-size",
                      "units per direction (default 64)", int),
    "num_layers": _p(1, _int(bound="num_layers")),
    "cell": _p("gru", _choice("gru", "lstm"), "cell", "recurrent cell (default gru)", str,
               ("gru", "lstm")),
    "bidirectional": _p(True, _choice(True, False)),
    "pooling": _p("auto", (_pooling, "'auto', 'blocks' or '+'-joined parts of "
                                     "('last', 'mean', 'max')")),
    "encoder": _p("auto", _choice("auto", "rnn", "conv")),
    "depth": _p(None, _int(none=True)),
    "patch": _p("auto", _or_auto(_int())),
    "contrastive": _p("auto", _number(auto=True)),
    "contrast": _p("auto", _choice("auto", "instance", "hierarchical")),
    "decoder": _p("repeat", _choice("repeat", "autoregressive"), "decoder",
                  "decoder (default repeat)", str, ("repeat", "autoregressive")),
    "position": _p("fourier", _choice("fourier", "relative", "none")),
    "dropout": _p(0.0, _number(0.0, 1.0)),
    "token_dropout": _p(0.0, _number(0.0, 1.0)),
    "copies": _p("auto", _number(auto=True)),
    "loss": _p("mse", _choice("mse", "mae", "huber")),
    "loss_normalize": _p("element", _choice("element", "sequence"), "loss-normalize",
                         "the training loss: the mean over every valid element, so that "
                         "long sequences weigh more (element, the default), or the mean "
                         "over sequences of each one's own mean (sequence)", str,
                         ("element", "sequence")),
    "normalize": _p("auto", (_normalize, "one of ('auto', 'global', 'sequence', 'none') "
                                         "(or True/False)"), "normalize",
                    "standardise each feature over the data (global), each sequence by its "
                    "own mean and std (sequence), not at all (none), or pick global or "
                    "sequence from the spread of the sequences' scales (auto, the default)",
                    str, ("auto", "global", "sequence", "none")),
    "max_epochs": _p(100, _int(), "epochs", "most epochs (default 100)", int),
    "max_time": _p(None, _number(none=True), "max-time",
                   "time budget of the whole fit (reading, training, validation, "
                   "scoring), seconds", float),
    "batch_size": _p(32, _int(), "batch-size", "typical sequences per batch (default 32)",
                     int),
    "accumulate": _p(1, _int(), "accumulate",
                     "batches whose gradients are summed per optimizer step (default 1); "
                     "under torchrun, per process", int),
    "schedule": _p("auto", _choice("auto", "plateau", "budget")),
    "lr": _p("auto", _number(auto=True), "lr",
             "learning rate (default auto)", _auto_float),
    "weight_decay": _p(0.0, _number()),
    "grad_clip": _p(1.0, _number()),
    "patience": _p(10, _int()),
    "validation_fraction": _p("auto", _number(0.0, 1.0, auto=True), "val-fraction",
                              "share held out for early stopping (default auto)",
                              _auto_float),
    "contamination": _p(0.01, _number(0.0, 1.0), "contamination",
                        "expected share of anomalies in the training data (default 0.01)",
                        float),
    "threshold_rule": _p("quantile", _choice("quantile", "mad"), "threshold-rule",
                         "the anomaly threshold from the training scores: their "
                         "1 - contamination quantile (quantile, the default), or median + "
                         "3.5 robust standard deviations (mad: no share to guess)", str,
                         ("quantile", "mad")),
    "anomaly_score": _p("reconstruction", _choice("reconstruction", "neighbours"),
                        "anomaly-score",
                        "what score and the threshold measure: the reconstruction error "
                        "(reconstruction, the default), or the distance of a sequence's "
                        "embedding to the nearest training one (neighbours: better on "
                        "single-channel shapes)", str, ("reconstruction", "neighbours")),
    "unknown": _p("error", _choice("error", "map")),
    "missing": _p("error", _choice("error", "mask"), "missing",
                  "a NaN value (an empty CSV cell, a Parquet null) inside a sequence: an "
                  "error naming where it is (error, the default), or a missing element the "
                  "model skips in its loss and scores and learns to fill in (mask)", str,
                  ("error", "mask")),
    "batching": _p("auto", _choice("auto", "tokens", "count")),
    "max_len": _p(10_000, _int(none=True), "max-len",
                  "longest sequence taken as it is (default 10000)", int),
    "max_len_policy": _p("refuse", _choice("refuse", "truncate", "window"), "max-len-policy",
                         "longer sequences: an error (refuse, the default), their first "
                         "max-len steps (truncate), or windows put back together (window)",
                         str, ("refuse", "truncate", "window")),
    "device": _p("auto", (lambda v: isinstance(v, str) and bool(DEVICE.fullmatch(v)),
                          "'auto' or a torch device name ('cpu', 'cuda', 'cuda:1', 'mps'...)")),
    "threads": _p("auto", (lambda v: v in ("auto", None) or _int()[0](v),
                           "'auto', None or a positive int"), "threads",
                  "CPU threads torch computes on, kept with the model (default: one for a "
                  "recurrent encoder up to 256 wide when OMP_WAIT_POLICY=PASSIVE, whose small "
                  "steps wake sleeping threads; torch's setting otherwise)", int),
    "precision": _p("auto", _choice("auto", "32", "bf16", "16"), "precision",
                    "training arithmetic: float32 (32), bfloat16 (bf16) or float16 with a "
                    "loss scale (16) under autocast; auto (the default): 32 (bf16 was slower "
                    "on the GPUs measured; it halves activation memory)", str,
                    ("auto", "32", "bf16", "16")),
    "seed": _p(0, _int(lo=0), "seed", "random seed (default 0)", int),
    "verbose": _p(1, _choice(0, 1, 2)),
}


def validate(params: dict[str, Any]) -> None:
    """Check every parameter against the table; raises `ValueError` naming the first one
    that is off, what it got and what it accepts (unknown names included)."""
    for name, value in params.items():
        spec = PARAMS.get(name)
        if spec is None:
            raise ValueError(f"invalid parameter {name!r}; valid: {sorted(PARAMS)}")
        if not spec.check(value):
            if name == "verbose":
                raise ValueError(f"verbose must be 0, 1 or 2, got {value!r}")
            raise ValueError(f"{name} must be {spec.allowed}, got {value!r}")
    if params.get("anomaly_score") == "neighbours" and params.get("max_len_policy") == "window":
        raise ValueError("anomaly_score='neighbours' compares whole sequences' embeddings, "
                         "and max_len_policy='window' trains on windows: use 'refuse' or "
                         "'truncate' with it")


def cli_flags() -> dict[str, Param]:
    """``{flag: Param}`` for the parameters the command line sets, in table order."""
    return {spec.flag: spec for spec in PARAMS.values() if spec.flag}


def param_of_flag(flag: str) -> str:
    """The parameter a flag sets (``"epochs"`` -> ``"max_epochs"``)."""
    for name, spec in PARAMS.items():
        if spec.flag == flag:
            return name
    raise KeyError(flag)
