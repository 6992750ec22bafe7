"""``seqae info``: what a model folder holds (`seqae.model_dir.info`), as JSON or a
table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..model_dir import info
from .common import UsageError

__all__ = ["cmd_info"]

_SHOWN_SETTINGS = ("max_epochs", "max_time", "batch_size", "lr", "patience", "seed",
                   "validation_fraction", "contamination", "threshold_rule", "anomaly_score",
                   "normalize")


def cmd_info(args: argparse.Namespace) -> int:
    if not Path(args.model).is_dir():
        raise UsageError(f"{args.model}: no such model directory")
    facts = info(args.model)
    if args.json:
        print(json.dumps(facts, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        return "-" if v is None else str(v)

    table = Table(title=f"seqae model {facts['model']}", show_header=False)
    table.add_column("section", style="bold")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    table.add_row("parameters", "", f"{facts['parameters']:,}")
    for section in ("data", "architecture", "training", "versions"):
        rows = [(k, v) for k, v in facts[section].items() if v is not None]
        for i, (k, v) in enumerate(rows):
            table.add_row(section if i == 0 else "", k, fmt(v))
    table.add_row("scores", "threshold", fmt(facts["threshold"]))
    changed = {k: v for k, v in facts["settings"].items() if k in _SHOWN_SETTINGS}
    table.add_row("settings", "", ", ".join(f"{k}={v}" for k, v in changed.items()))
    Console().print(table)
    return 0
