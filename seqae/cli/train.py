"""``seqae train``: settings from the command line and a config file, checked before any
data are read; the data read (`seqae.tables.read_data`) and a model fitted and saved."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from .common import UsageError, best_epoch_text, fit, located, log, read, spec_of
from .parser import training_settings

__all__ = ["cmd_train", "read_config", "settings"]

DATA_KEYS = ("id_col", "time_col", "features", "exclude", "label_col", "text_col", "window",
             "workers")


def read_config(path: str | None) -> dict[str, Any]:
    """The settings of a YAML (or JSON) file; {} without one."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such config file")
    text = p.read_text()
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            cfg = yaml.safe_load(text) or {}
        else:
            cfg = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes one line
        raise UsageError(f"{p}: cannot parse it: {e}") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"{p}: expected a mapping of settings, got {type(cfg).__name__}")
    return cfg


def settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data settings, model parameters)`` from the config file and the flags (the flags
    win), the parameters checked (`seqae.params.validate`)."""
    from ..params import PARAMS, validate

    cfg = read_config(args.config)
    data = {k: cfg.pop(k, None) for k in DATA_KEYS}
    for k in ("features", "exclude"):
        if isinstance(data[k], str):
            data[k] = [s.strip() for s in data[k].split(",")]
    for k in DATA_KEYS:
        v = getattr(args, k, None)
        if v is not None:
            data[k] = [s.strip() for s in v.split(",")] if k in ("features", "exclude") else v
    data["id_col"] = data["id_col"] or "id"
    params = dict(cfg.pop("model", {}) or {})
    params.update(cfg)  # flat keys are model parameters too
    params.update(training_settings(args))
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise UsageError(f"unknown setting(s) {unknown}; valid: {sorted(PARAMS)}")
    validate(params)
    return data, params


def cmd_train(args: argparse.Namespace) -> int:
    from ..distributed import context
    from ..model_dir import check_target, write_data_settings
    from ..tables import Texts, check_names

    data_cfg, params = settings(args)
    spec = spec_of({**data_cfg, "missing": params.get("missing")})
    check_names(spec.id_col, spec.label_col, spec.time_col, error=UsageError)
    if Path(args.out).resolve() == Path(args.data).resolve():
        raise UsageError(f"{args.out}: the model folder would replace the data; give another "
                         "--out")
    check_target(args.out)
    data, _, _ = read(args.data, spec)
    if isinstance(data, Texts):
        log.info("read %d texts from %s (lengths %d-%d)", len(data), args.data,
                 min(map(len, data)), max(map(len, data)))
    else:
        log.info("read %s", data)
    out = Path(args.out)
    ctx = context()  # under torchrun: one model trained by every process, rank 0 writes
    quiet = args.quiet or not ctx.main
    if not ctx.main:
        log.setLevel(logging.WARNING)
    ae = located(lambda d: fit(d, params, quiet, out, args.resume, args.checkpoint_every),
                 data)
    if not ctx.main:
        ctx.barrier()  # rank 0 has written the model
        return 0
    ae.save(out)
    read_as = {**data_cfg, "features": getattr(data, "feature_names", None),
               "source": str(Path(args.data).resolve())}
    write_data_settings(out, {"data": read_as, "model": ae.get_params()})
    log.info("trained %d epochs in %.1fs; %s; model written to %s", len(ae.history_),
             ae.history_[-1]["time"], best_epoch_text(ae.history_), out)
    if ctx.world > 1:
        log.info("%d processes took %d optimizer steps each", ctx.world,
                 sum(r.get("optimizer_steps", 0) for r in ae.history_))
    ctx.barrier()
    return 0
