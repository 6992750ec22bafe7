"""What the commands share: the user's errors, logging, a model folder with its data
settings, the data a model is applied to, and fitting with the CLI's output."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..tables import DataSpec

__all__ = ["UsageError", "log", "setup_logging", "load", "spec_of", "read", "data_for_model",
           "streamed", "in_memory", "located", "fit", "best_epoch_text", "check_out"]

log = logging.getLogger("seqae")


class UsageError(Exception):
    """A problem with what the user asked for: one line, exit 2."""


def setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def check_out(out: str, *inputs: str, overwrite: bool = False) -> None:
    """Refuse, before any work, an ``--out`` that is an input, lies in a model folder or
    an input folder, or is a file seqae did not write (unless ``overwrite``)."""
    from ..io import check_output
    from ..model_dir import is_model_folder

    check_output(out, inputs, overwrite)
    parent = Path(out).resolve().parent
    if is_model_folder(parent):
        raise UsageError(f"{out}: the output would be written into the model folder {parent}; "
                         "give an --out outside it")


def load(model_dir: str) -> tuple[Any, dict[str, Any]]:
    """``(model, data settings it was trained with)`` from a model folder."""
    from ..estimator import SequenceAutoencoder
    from ..model_dir import read_data_settings

    p = Path(model_dir)
    if not p.is_dir():
        raise UsageError(f"{p}: no such model directory")
    return SequenceAutoencoder.load(p), read_data_settings(p)


def spec_of(settings: dict[str, Any]) -> DataSpec:
    """The `DataSpec` of data settings (``run.json``'s, or the command line's)."""
    from ..tables import DataSpec

    return DataSpec(id_col=settings.get("id_col") or "id", time_col=settings.get("time_col"),
                    features=settings.get("features"), label_col=settings.get("label_col"),
                    exclude=tuple(settings.get("exclude") or ()),
                    text_col=settings.get("text_col"),
                    label_optional=bool(settings.get("label_optional")),
                    window=settings.get("window"), workers=settings.get("workers"),
                    missing=settings.get("missing") or "error")


def read(path: str, spec: DataSpec) -> tuple[Any, Any, Any]:
    """``(data, times, labels)`` of a file (`seqae.tables.read_data`), or of a folder of
    Parquet files, streamed: a `seqae.stream.ParquetSource` read a window at a time."""
    from ..stream import ParquetSource
    from ..tables import read_data

    if Path(path).is_dir() and not spec.is_text(path):
        return ParquetSource.from_spec(path, spec), None, None
    return read_data(path, spec)


def data_for_model(args: argparse.Namespace, ae: Any, settings: dict[str, Any]):
    """``(data, times, labels, spec)``: ``args.data`` read as the model was trained (its
    saved data settings, less what the command line says otherwise)."""
    cfg = dict(settings, label_optional=args.label_col is None)
    for k in ("id_col", "time_col", "label_col", "text_col", "window", "workers"):
        if getattr(args, k, None) is not None:
            cfg[k] = getattr(args, k)
    if ae.feature_names_in_ is not None:
        cfg["features"] = list(ae.feature_names_in_)
    cfg["missing"] = ae.missing  # a missing value: an error, or missing as in training
    spec = spec_of(cfg)
    from ..tables import check_names

    check_names(spec.id_col, args.label_col if spec.label_optional else spec.label_col,
                spec.time_col, error=UsageError)
    if (ae.vocab_ is not None) != spec.is_text(args.data):
        if ae.vocab_ is not None:
            raise UsageError(f"{args.model} is a text model: give a .txt file or --text-col")
        raise UsageError(f"{args.model} was trained on {ae.n_features_in_}-feature sequences, "
                         "not texts")
    data, times, labels = read(args.data, spec)
    return data, times, labels, spec


def streamed(data: Any, out: str) -> bool:
    """Whether ``data`` is a folder source, whose results stream to a Parquet file."""
    from ..stream import ParquetSource

    if not isinstance(data, ParquetSource):
        return False
    if Path(out).suffix.lower() not in (".parquet", ".pq"):
        raise UsageError(f"{out}: results for a folder of Parquet files stream to a .parquet "
                         "file, one row group per window")
    return True


def in_memory(data: Any, labels: Any = None) -> tuple[Any, Any]:
    """``(data, labels)``, a folder source read whole: for the commands whose results are
    as large as the data (reconstructions, figures)."""
    from ..stream import ParquetSource

    if not isinstance(data, ParquetSource):
        return data, labels
    import numpy as np

    from ..data import Sequences

    parts = list(data.windows())
    seqs = Sequences.concat([s for s, _ in parts])
    return seqs, None if data.label_col is None else np.concatenate([lab for _, lab in parts])


def located(fn: Callable[[Any], Any], data: Any) -> Any:
    """``fn(data)``, with a text's problem (an unknown character...) located in the file."""
    from ..errors import SequenceDataError
    from ..tables import Texts

    try:
        return fn(data)
    except SequenceDataError as e:
        if isinstance(data, Texts) and e.index is not None:
            raise SequenceDataError(f"{data.where(e.index)}: {e}", e.index) from None
        raise


def fit(data: Any, params: dict[str, Any], quiet: bool, out: Path | None = None,
        resume: bool = False, checkpoint_every: int | None = None) -> Any:
    """A fitted `seqae.SequenceAutoencoder`; with ``out``, OUT holds a loadable model and a
    resumable checkpoint after every epoch."""
    from ..estimator import SequenceAutoencoder

    ae = SequenceAutoencoder(**{"verbose": 0 if quiet else 1, **params})
    # The library's per-epoch log line would repeat what the progress output shows.
    level = log.level
    if level > logging.DEBUG:
        log.setLevel(logging.WARNING)
    try:
        if out is None:
            return ae.fit(data)
        return ae.fit(data, checkpoint_dir=out, resume=resume,
                      checkpoint_every=checkpoint_every)
    finally:
        log.setLevel(level)


def best_epoch_text(history: list[dict[str, Any]]) -> str:
    """'best epoch 12: train loss 0.1, validation loss 0.2' (the weights kept)."""
    from ..train import best_epoch

    best = best_epoch(history)
    if best is None:
        return "no epoch reached a finite loss"
    text = f"best epoch {best['epoch']}: train loss {best['train_loss']:.4f}"
    if "val_loss" in best:
        text += f", validation loss {best['val_loss']:.4f}"
    return text
