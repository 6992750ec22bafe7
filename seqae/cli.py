"""The ``seqae`` command: demo, train, encode, reconstruct, score, plot.

torch is imported only inside the commands that need it, so ``seqae --help`` is instant.
Errors in the user's data or files end with one line and exit code 2 (``-v`` shows the
traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

log = logging.getLogger("seqae")

# CLI flag -> SequenceAutoencoder parameter
_MODEL_FLAGS = {
    "epochs": "max_epochs",
    "max_time": "max_time",
    "latent_dim": "latent_dim",
    "hidden_size": "hidden_size",
    "cell": "cell",
    "decoder": "decoder",
    "batch_size": "batch_size",
    "accumulate": "accumulate",
    "lr": "lr",
    "seed": "seed",
    "val_fraction": "validation_fraction",
    "contamination": "contamination",
    "max_len": "max_len",
    "max_len_policy": "max_len_policy",
    "threads": "threads",
}
_NORMALIZE = ("auto", "global", "sequence", "none")  # --normalize values (seqae.scaling)
_DATA_KEYS = ("id_col", "time_col", "features", "label_col", "text_col", "window", "workers")
RUN_CONFIG = "run.json"


class UsageError(Exception):
    """A problem with what the user asked for: one line, exit 2."""


# ---------------------------------------------------------------------------- parser
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqae",
        description="Autoencoders for variable-length sequences: train, embed, reconstruct, "
        "score and plot, from Parquet/CSV/NPZ files.",
    )
    p.add_argument("--version", action="version", version=f"seqae {_version()}")
    verb = p.add_mutually_exclusive_group()
    verb.add_argument("-q", "--quiet", action="store_true", help="only errors")
    verb.add_argument("-v", "--verbose", action="store_true", help="debug output, tracebacks")
    # -q / -v also after the command (`seqae train ... -q`); absent there, they keep the
    # value given before it
    common = argparse.ArgumentParser(add_help=False)
    cverb = common.add_mutually_exclusive_group()
    cverb.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only errors")
    cverb.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="debug output, tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def data_args(sp, features=True):
        sp.add_argument("--id-col", default=None, help="sequence id column (default: id)")
        sp.add_argument("--time-col", default=None, help="column that orders each sequence")
        sp.add_argument("--window", type=int, default=None,
                        help="a folder of Parquet files is streamed: most values held per "
                             "window (default 16777216, 64 MiB of float32)")
        sp.add_argument("--workers", type=int, default=None,
                        help="a folder of Parquet files is streamed: data-loader processes "
                             "reading it (default 0: the main process reads)")
        if features:
            sp.add_argument("--features", default=None,
                            help="comma-separated feature columns (default: other numeric)")
        sp.add_argument("--label-col", default=None,
                        help="label column: carried to outputs and used to colour plots")
        sp.add_argument("--text-col", default=None,
                        help="Parquet/CSV column of texts: a text model, one text per row "
                        "(a .txt file is one text per line)")

    d = sub.add_parser("demo", parents=[common],
                       help="train on built-in demo data and write every output")
    d.add_argument("--out", default="seqae-demo", help="output folder (default: seqae-demo)")
    d.add_argument("--max-time", type=float, default=45.0, help="training seconds (default 45)")
    d.add_argument("--n", type=int, default=600, help="number of demo sequences")

    t = sub.add_parser("train", parents=[common],
                       help="train a model on a data file (or a file of texts)")
    t.add_argument("data", help="Parquet, CSV, NPZ or .ts file, .txt (one text per line), or "
                                "a folder of Parquet files (streamed: read a window at a time)")
    t.add_argument("--out", required=True, help="model directory to write")
    data_args(t)
    t.add_argument("--config", default=None, help="YAML (or JSON) file of settings")
    t.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in OUT (one is written after "
                   "every epoch); the result equals an uninterrupted run")
    t.add_argument("--checkpoint-every", type=int, default=None,
                   help="also checkpoint every N optimizer steps inside an epoch (default: "
                        "0, or 200 when streaming a folder)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--max-time", type=float, default=None, help="training budget, seconds")
    t.add_argument("--latent-dim", type=int, default=None)
    t.add_argument("--hidden-size", type=int, default=None)
    t.add_argument("--cell", choices=["lstm", "gru"], default=None)
    t.add_argument("--decoder", choices=["repeat", "autoregressive"], default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--accumulate", type=int, default=None,
                   help="batches whose gradients are summed per optimizer step (default 1); "
                        "under torchrun, per process")
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--val-fraction", type=float, default=None)
    t.add_argument("--contamination", type=float, default=None)
    t.add_argument("--max-len", type=int, default=None,
                   help="longest sequence taken as it is (default 10000)")
    t.add_argument("--max-len-policy", choices=["refuse", "truncate", "window"], default=None,
                   help="longer sequences: an error (refuse, the default), their first "
                   "max-len steps (truncate), or windows put back together (window)")
    t.add_argument("--threads", type=int, default=None,
                   help="CPU threads torch computes on, kept with the model (default: one "
                   "for a recurrent encoder up to 256 wide when OMP_WAIT_POLICY=PASSIVE, "
                   "whose small steps wake sleeping threads; torch's setting otherwise)")
    t.add_argument("--normalize", choices=_NORMALIZE, default=None,
                   help="standardise each feature over the data (global), each sequence by "
                   "its own mean and std (sequence), not at all (none), or pick global or "
                   "sequence from the spread of the sequences' scales (auto, the default)")

    for name, helptext in [
        ("encode", "write one embedding row per sequence (id, z0..zK)"),
        ("reconstruct", "write reconstructions as a long table (id, time, features)"),
        ("score", "write per-sequence anomaly scores and flags"),
    ]:
        sp = sub.add_parser(name, parents=[common], help=helptext)
        sp.add_argument("model", help="model directory from `seqae train`")
        sp.add_argument("data", help="Parquet, CSV, NPZ, .ts or .txt file, or a folder of "
                                     "Parquet files")
        sp.add_argument("--out", required=True, help="output .parquet (default), .csv or .npy "
                                                     "(a folder's results stream to .parquet)")
        data_args(sp, features=False)
        if name == "score":
            sp.add_argument("--contamination", type=float, default=None,
                            help="refit the threshold as this quantile of training scores")
    dc = sub.add_parser("decode", parents=[common],
                        help="decode embeddings (columns z0..zK) into sequences "
                        "or texts")
    dc.add_argument("model", help="model directory from `seqae train`")
    dc.add_argument("embeddings", help="Parquet or CSV file with columns z0..zK (as written "
                    "by `seqae encode`); an id column is carried over")
    dc.add_argument("--out", required=True, help="output .parquet (default) or .csv")
    length = dc.add_mutually_exclusive_group()
    length.add_argument("--length", type=int, default=None,
                        help="decode every vector at this length")
    length.add_argument("--length-col", default=None,
                        help="column of the embeddings file holding each vector's length")
    dc.add_argument("--id-col", default=None, help="id column (default: id, when present)")
    dc.add_argument("--max-length", type=int, default=None,
                    help="texts without a length: most characters before EOS "
                    "(default: twice the longest training text)")
    inf = sub.add_parser("info", parents=[common], help="print what a model directory holds")
    inf.add_argument("model", help="model directory")
    inf.add_argument("--json", action="store_true", help="print it as JSON")
    pl = sub.add_parser("plot", parents=[common], help="write PNG figures for a model (and data)")
    pl.add_argument("model", help="model directory")
    pl.add_argument("data", nargs="?", default=None, help="optional data file")
    pl.add_argument("--out", required=True, help="folder for the PNG files")
    data_args(pl, features=False)
    return p


def _version() -> str:
    from . import __version__

    return __version__


# ---------------------------------------------------------------------------- helpers
def _setup_logging(args) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def _read_config(path: str | None) -> dict[str, Any]:
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


class _Texts(list):
    """Texts read from a file, with their ids and where each came from (for errors)."""

    def __init__(self, texts, ids, where):
        super().__init__(texts)
        self.ids = ids
        self.where = where  # i -> "words.txt, line 3" / "data.csv, row 2"


def _is_text_data(path: str, data_cfg: dict[str, Any]) -> bool:
    return Path(path).suffix.lower() == ".txt" or bool(data_cfg.get("text_col"))


def _read_texts(path: str, data_cfg: dict[str, Any]):
    """(_Texts, None, labels or None): a .txt file (one text per line) or a table's
    ``text_col`` (one text per row; ids from ``id_col`` when present, else row numbers)."""
    import numpy as np

    from .io import DataFileError, read_table

    p = Path(path)
    if p.suffix.lower() == ".txt":
        if not p.is_file():
            raise DataFileError(f"{p}: no such file")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise DataFileError(f"{p}: not UTF-8 text ({e})") from None
        for i, line in enumerate(lines):
            if not line:
                raise DataFileError(f"{p}, line {i + 1}: empty line (every text needs at least "
                                    "one character; remove blank lines)")
        if not lines:
            raise DataFileError(f"{p}: the file holds no text")
        return _Texts(lines, np.arange(len(lines)), lambda i: f"{p}, line {i + 1}"), None, None
    table = read_table(p)
    names = table.column_names
    text_col, id_col = data_cfg["text_col"], data_cfg.get("id_col") or "id"
    label_col = data_cfg.get("label_col")
    if label_col is not None and label_col not in names and data_cfg.get("label_optional"):
        label_col = None
    for what, col in (("text", text_col), ("label", label_col)):
        if col is not None and col not in names:
            raise DataFileError(f"{p}: no {what} column {col!r}; its columns are {names}")
    values = table.column(text_col).to_pylist()
    for i, t in enumerate(values):
        if not isinstance(t, str) or not t:
            what = "empty" if t == "" else "missing" if t is None else f"a {type(t).__name__}"
            raise DataFileError(f"{p}, column {text_col!r}, row {i}: the text is {what}")
    ids = (table.column(id_col).to_numpy(zero_copy_only=False) if id_col in names
           else np.arange(len(values)))
    labels = table.column(label_col).to_numpy(zero_copy_only=False) if label_col else None
    return (_Texts(values, ids, lambda i: f"{p}, column {text_col!r}, row {i}"), None,
            labels)


def _on_texts(fn, data):
    """``fn(data)``, with a text's problem (an unknown character...) located in the file."""
    from .errors import SequenceDataError

    try:
        return fn(data)
    except SequenceDataError as e:
        if isinstance(data, _Texts) and e.index is not None:
            raise SequenceDataError(f"{data.where(e.index)}: {e}", e.index) from None
        raise


def _read_data(path: str, data_cfg: dict[str, Any]):
    """(Sequences or _Texts, times or None, labels per sequence or None) from a file."""

    from .data import Sequences, list_columns, numeric_columns
    from .io import DataFileError, read_table

    if _is_text_data(path, data_cfg):
        return _read_texts(path, data_cfg)
    p = Path(path)
    id_col = data_cfg.get("id_col") or "id"
    time_col = data_cfg.get("time_col")
    features = data_cfg.get("features")
    label_col = data_cfg.get("label_col")
    if p.is_dir():  # streamed, a window at a time (seqae.stream)
        from .stream import DEFAULT_WINDOW, ParquetSource

        if label_col is not None and data_cfg.get("label_optional"):
            import pyarrow.parquet as pq

            files = sorted(p.glob("*.parquet")) + sorted(p.glob("*.pq"))
            if files and label_col not in pq.ParquetFile(files[0]).schema_arrow.names:
                label_col = None
        source = ParquetSource(p, id_col=id_col, time_col=time_col, features=features,
                               label_col=label_col,
                               window=data_cfg.get("window") or DEFAULT_WINDOW,
                               workers=data_cfg.get("workers") or 0)
        return source, None, None
    if p.suffix.lower() == ".npz":
        from .io import read_sequences

        return read_sequences(p), None, None
    if p.suffix.lower() == ".ts":
        from .io import read_ts

        seqs, labels = read_ts(p)
        return seqs, None, labels
    table = read_table(p)
    names = table.column_names
    list_cols = list_columns(table)
    if list_cols:
        time_col = None  # one row per sequence: the lists are already in order
    if label_col is not None and label_col not in names and data_cfg.get("label_optional"):
        label_col = None  # remembered from training, absent here: no labels
    for what, col in (("id", id_col), ("time", time_col), ("label", label_col)):
        if col is not None and col not in names:
            raise DataFileError(f"{p}: no {what} column {col!r}; its columns are {names}")
    labels = None
    if list_cols:  # one row per sequence
        from .io import read_sequences

        seqs = read_sequences(p, id_col=id_col, features=features)
        if label_col:
            labels = table.column(label_col).to_numpy(zero_copy_only=False)
        return seqs, None, labels
    if features is not None:
        missing = [c for c in features if c not in names]
        if missing:
            raise DataFileError(f"{p}: no feature column {missing[0]!r}; its columns are {names}")
        from .data import check_numeric

        for c in features:
            check_numeric(table, c, where=f"{p}, ")
    else:
        features = numeric_columns(table, exclude=(id_col, time_col, label_col),
                                   where=f"{p}, ")
        if not features:
            raise DataFileError(f"{p}: no numeric feature columns in {names}")
    seqs, times = Sequences.from_table(
        table, id=id_col, time=time_col, features=features, return_time=True
    )
    if label_col:  # one label per sequence: the label of its first row
        from .io import first_row_values

        labels = first_row_values(table, id_col, label_col)
    return seqs, times, labels


# ---------------------------------------------------------------------------- commands
def _fit(seqs, params: dict[str, Any], quiet: bool, out: Path | None = None,
         resume: bool = False, checkpoint_every: int | None = None):
    from .estimator import SequenceAutoencoder

    ae = SequenceAutoencoder(**{"verbose": 0 if quiet else 1, **params})
    # The library's per-epoch log line would repeat what the progress output shows.
    level = log.level
    if level > logging.DEBUG:
        log.setLevel(logging.WARNING)
    try:
        if out is None:
            return ae.fit(seqs)
        # after every epoch OUT holds a loadable model and a resumable checkpoint
        return ae.fit(seqs, checkpoint_dir=out, resume=resume,
                      checkpoint_every=checkpoint_every)
    finally:
        log.setLevel(level)


def cmd_train(args) -> int:
    cfg = _read_config(args.config)
    data_cfg = {k: cfg.pop(k, None) for k in _DATA_KEYS}
    if isinstance(data_cfg["features"], str):
        data_cfg["features"] = [s.strip() for s in data_cfg["features"].split(",")]
    for k in _DATA_KEYS:
        v = getattr(args, k, None)
        if v is not None:
            data_cfg[k] = [s.strip() for s in v.split(",")] if k == "features" else v
    data_cfg["id_col"] = data_cfg["id_col"] or "id"
    params = dict(cfg.pop("model", {}) or {})
    params.update(cfg)  # flat keys are model parameters too
    for flag, param in _MODEL_FLAGS.items():
        v = getattr(args, flag, None)
        if v is not None:
            params[param] = v
    if getattr(args, "normalize", None) is not None:
        params["normalize"] = args.normalize
    from .estimator import SequenceAutoencoder

    valid = set(SequenceAutoencoder._param_names())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise UsageError(f"unknown setting(s) {unknown}; valid: {sorted(valid)}")
    seqs, _, _ = _read_data(args.data, data_cfg)
    if isinstance(seqs, _Texts):
        log.info("read %d texts from %s (lengths %d-%d)", len(seqs), args.data,
                 min(map(len, seqs)), max(map(len, seqs)))
    else:
        log.info("read %s", seqs)
    out = Path(args.out)
    from .distributed import context

    ctx = context()  # under torchrun: one model trained by every process, rank 0 writes
    quiet = args.quiet or not ctx.main
    if not ctx.main:
        log.setLevel(logging.WARNING)
    ae = _on_texts(lambda d: _fit(d, params, quiet, out, args.resume, args.checkpoint_every),
                   seqs)
    if not ctx.main:
        ctx.barrier()  # rank 0 has written the model
        return 0
    ae.save(out)
    from .io import atomic_write_text

    resolved = {"data": {**data_cfg, "features": getattr(seqs, "feature_names", None),
                         "source": str(Path(args.data).resolve())},
                "model": ae.get_params()}
    atomic_write_text(out / RUN_CONFIG, json.dumps(resolved, indent=2))
    log.info("trained %d epochs in %.1fs; %s; model written to %s", len(ae.history_),
             ae.history_[-1]["time"], _best_epoch(ae.history_), out)
    if ctx.world > 1:
        log.info("%d processes took %d optimizer steps each", ctx.world,
                 sum(r.get("optimizer_steps", 0) for r in ae.history_))
    ctx.barrier()
    return 0


def _best_epoch(history) -> str:
    """'best epoch 12: train loss 0.1, validation loss 0.2' (the weights kept)."""
    from .train import best_epoch

    best = best_epoch(history)
    if best is None:
        return "no epoch reached a finite loss"
    text = f"best epoch {best['epoch']}: train loss {best['train_loss']:.4f}"
    if "val_loss" in best:
        text += f", validation loss {best['val_loss']:.4f}"
    return text


def _load(model_dir: str):
    from .estimator import SequenceAutoencoder

    p = Path(model_dir)
    if not p.is_dir():
        raise UsageError(f"{p}: no such model directory")
    ae = SequenceAutoencoder.load(p)
    run = p / RUN_CONFIG
    data_cfg = json.loads(run.read_text())["data"] if run.is_file() else {}
    return ae, data_cfg


def _data_for_model(args, ae, data_cfg):
    cfg = dict(data_cfg, label_optional=args.label_col is None)
    for k in ("id_col", "time_col", "label_col", "text_col"):
        if getattr(args, k, None) is not None:
            cfg[k] = getattr(args, k)
    if ae.feature_names_in_ is not None:
        cfg["features"] = list(ae.feature_names_in_)
    texts = ae.vocab_ is not None
    if texts != _is_text_data(args.data, cfg):
        if texts:
            raise UsageError(f"{args.model} is a text model: give a .txt file or --text-col")
        raise UsageError(f"{args.model} was trained on {ae.n_features_in_}-feature sequences, "
                         "not texts")
    seqs, times, labels = _read_data(args.data, cfg)
    return seqs, times, labels, cfg


def _streamed(data, out: str) -> bool:
    """Whether ``data`` is a folder source, whose results stream to a Parquet file."""
    from .stream import ParquetSource

    if not isinstance(data, ParquetSource):
        return False
    if Path(out).suffix.lower() not in (".parquet", ".pq"):
        raise UsageError(f"{out}: results for a folder of Parquet files stream to a .parquet "
                         "file, one row group per window")
    return True


def _id_column(seqs):
    import numpy as np

    return seqs.ids if seqs.ids is not None else np.arange(len(seqs))


def cmd_encode(args) -> int:
    import pyarrow as pa

    from .io import write_table

    ae, data_cfg = _load(args.model)
    seqs, _, labels, cfg = _data_for_model(args, ae, data_cfg)
    if _streamed(seqs, args.out):
        from .stream import write_outputs

        write_outputs(ae, seqs, args.out, "encode")
        log.info("wrote %d embeddings of size %d to %s", len(seqs), ae.latent_dim_, args.out)
        return 0
    Z = _on_texts(ae.encode, seqs)
    cols = {cfg.get("id_col") or "id": _id_column(seqs)}
    if labels is not None:
        cols[cfg["label_col"]] = labels
    for k in range(Z.shape[1]):
        cols[f"z{k}"] = Z[:, k]
    write_table(pa.table(cols), args.out)
    log.info("wrote %d embeddings of size %d to %s", len(seqs), Z.shape[1], args.out)
    return 0


def cmd_reconstruct(args) -> int:
    from .io import sequences_to_table, write_table

    ae, data_cfg = _load(args.model)
    seqs, times, _, cfg = _data_for_model(args, ae, data_cfg)
    from .stream import ParquetSource

    if isinstance(seqs, ParquetSource):  # reconstructions are as large as the data
        from .data import Sequences

        seqs = Sequences.concat([w for w, _ in seqs.windows()])
    rec = _on_texts(ae.reconstruct, seqs)
    if isinstance(seqs, _Texts):
        import pyarrow as pa

        write_table(pa.table({cfg.get("id_col") or "id": _id_column(seqs), "text": list(seqs),
                              "reconstruction": rec,
                              "exact": [a == b for a, b in zip(seqs, rec, strict=True)]}),
                    args.out)
        log.info("wrote reconstructions of %d texts to %s", len(seqs), args.out)
        return 0
    table = sequences_to_table(rec, times)
    table = table.rename_columns(
        [cfg.get("id_col") or "id", cfg.get("time_col") or "t"] + table.column_names[2:]
    )
    write_table(table, args.out)
    log.info("wrote reconstructions of %d sequences (%d steps) to %s", len(seqs),
             seqs.n_steps, args.out)
    return 0


def cmd_score(args) -> int:
    import pyarrow as pa

    from .io import write_table

    ae, data_cfg = _load(args.model)
    seqs, _, labels, cfg = _data_for_model(args, ae, data_cfg)
    threshold = ae.threshold_ if args.contamination is None else ae.threshold_for(
        args.contamination)
    if _streamed(seqs, args.out):
        import pyarrow.parquet as pq

        from .stream import write_outputs

        write_outputs(ae, seqs, args.out, "score", threshold)
        flagged = pq.read_table(args.out, columns=["anomaly"]).column(0)
        log.info("scored %d sequences; %d above the threshold %.4g; written to %s", len(seqs),
                 flagged.to_numpy().sum(), threshold, args.out)
        return 0
    scores = _on_texts(ae.score, seqs)
    lengths = _lengths(seqs)
    cols = {cfg.get("id_col") or "id": _id_column(seqs), "length": lengths,
            "score": scores, "anomaly": scores > threshold}
    if labels is not None:
        cols[cfg["label_col"]] = labels
    write_table(pa.table(cols), args.out)
    log.info("scored %d sequences; %d above the threshold %.4g; written to %s", len(seqs),
             int((scores > threshold).sum()), threshold, args.out)
    return 0


def _embedding_columns(table, path) -> list[str]:
    """The ``z0..zK`` columns of an embeddings table, in order."""
    import re

    from .io import DataFileError

    found = {int(m.group(1)): c for c in table.column_names if (m := re.fullmatch(r"z(\d+)", c))}
    if not found:
        raise DataFileError(f"{path}: no embedding columns z0..zK; its columns are "
                            f"{table.column_names}")
    missing = [k for k in range(max(found) + 1) if k not in found]
    if missing:
        raise DataFileError(f"{path}: embedding column z{missing[0]} is missing")
    return [found[k] for k in range(len(found))]


def cmd_decode(args) -> int:
    import numpy as np
    import pyarrow as pa

    from .errors import SequenceDataError
    from .io import DataFileError, read_table, sequences_to_table, write_table

    ae, data_cfg = _load(args.model)
    table = read_table(args.embeddings)
    cols = _embedding_columns(table, args.embeddings)
    if len(cols) != ae.latent_dim_:
        raise DataFileError(f"{args.embeddings}: {len(cols)} embedding columns (z0..z"
                            f"{len(cols) - 1}); the model's latent has {ae.latent_dim_}")
    Z = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in cols])
    Z = Z.astype(np.float32)
    bad = np.argwhere(~np.isfinite(Z))
    if len(bad):
        raise DataFileError(f"{args.embeddings}, row {bad[0][0]}, column {cols[bad[0][1]]}: "
                            f"not a finite number ({Z[tuple(bad[0])]})")
    lengths = args.length
    if args.length_col is not None:
        if args.length_col not in table.column_names:
            raise DataFileError(f"{args.embeddings}: no length column {args.length_col!r}; its "
                                f"columns are {table.column_names}")
        raw = table.column(args.length_col).to_numpy(zero_copy_only=False)
        lengths = np.asarray(raw, dtype=np.float64)
        wrong = np.flatnonzero(~np.isfinite(lengths) | (lengths != np.round(lengths))
                               | (lengths < 1))
        if len(wrong):
            raise DataFileError(f"{args.embeddings}, row {wrong[0]}, column "
                                f"{args.length_col!r}: {raw[wrong[0]]} is not a length "
                                "(a whole number >= 1)")
        lengths = lengths.astype(np.int64)
    elif lengths is not None and lengths < 1:
        raise UsageError(f"--length must be >= 1, got {lengths}")
    id_col = args.id_col or data_cfg.get("id_col") or "id"
    if args.id_col is not None and id_col not in table.column_names:
        raise DataFileError(f"{args.embeddings}: no id column {id_col!r}; its columns are "
                            f"{table.column_names}")
    ids = (table.column(id_col).to_numpy(zero_copy_only=False)
           if id_col in table.column_names else np.arange(len(Z)))
    try:
        out = ae.decode(Z, lengths=lengths, max_length=args.max_length)
    except SequenceDataError as e:
        raise DataFileError(f"{args.embeddings}: {e}") from None
    if ae.vocab_ is not None:
        write_table(pa.table({id_col: ids, "text": ae.vocab_.decode(out)}), args.out)
    else:
        from .data import Sequences

        res = sequences_to_table(Sequences(out.values, out.offsets, ids=ids,
                                           feature_names=out.feature_names))
        time_col = data_cfg.get("time_col") or "t"
        res = res.rename_columns([id_col, time_col] + res.column_names[2:])
        write_table(res, args.out)
    how = ("at length " + str(lengths) if np.isscalar(lengths) else
           f"at the lengths of column {args.length_col!r}" if lengths is not None else
           "at the lengths the model chose")
    log.info("decoded %d vectors %s; written to %s", len(Z), how, args.out)
    return 0


def _model_info(model_dir: str) -> dict[str, Any]:
    """What a model directory holds, from its files (config, metrics, run settings)."""
    ae, data_cfg = _load(model_dir)  # validates the folder and the weights' checksum
    p = Path(model_dir)
    config = json.loads((p / "config.json").read_text())
    history = ae.history_  # load read metrics.csv
    from .train import best_epoch

    best = best_epoch(history)
    n_params = sum(t.numel() for t in ae.module_.parameters())
    scaler = config.get("scaler") or {}
    info: dict[str, Any] = {
        "model": str(p),
        "versions": {"format": config["format_version"], "seqae": config["seqae_version"],
                     "torch": config["torch_version"]},
        "data": {
            "kind": "texts" if ae.vocab_ is not None else
            "tokens" if ae.vocab_size_ else "continuous",
            "features": None if ae.vocab_size_ else ae.n_features_in_,
            "feature_names": ae.feature_names_in_,
            "vocabulary": None if ae.vocab_ is None else "".join(ae.vocab_.chars),
            "vocab_size": ae.vocab_size_ or None,
            "training_sequences": len(ae.train_scores_),  # without validation
            "longest": ae.max_length_,
            "normalize": scaler.get("mode"),
            "source": data_cfg.get("source"),
        },
        "architecture": {k: v for k, v in config["model"].items()
                         if k in ("encoder", "cell", "bidirectional", "hidden_size",
                                  "num_layers", "latent_dim", "pooling", "decoder", "depth",
                                  "contrastive", "contrast")},
        "parameters": n_params,
        "training": {
            "epochs": len(history),
            "seconds": history[-1]["time"] if history else None,
            "best_epoch": None if best is None else int(best["epoch"]),
            "best_train_loss": None if best is None else best["train_loss"],
            "best_val_loss": None if best is None else best.get("val_loss"),
        },
        "threshold": config["threshold"],
        "settings": config["params"],
    }
    if info["architecture"].get("encoder") != "conv":
        info["architecture"].pop("depth", None)
    return info


def cmd_info(args) -> int:
    info = _model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.6g}"
        return "-" if v is None else str(v)

    table = Table(title=f"seqae model {info['model']}", show_header=False)
    table.add_column("section", style="bold")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    table.add_row("parameters", "", f"{info['parameters']:,}")
    for section in ("data", "architecture", "training", "versions"):
        rows = [(k, v) for k, v in info[section].items() if v is not None]
        for i, (k, v) in enumerate(rows):
            table.add_row(section if i == 0 else "", k, fmt(v))
    table.add_row("scores", "threshold", fmt(info["threshold"]))
    changed = {k: v for k, v in info["settings"].items() if k in _SHOWN_SETTINGS}
    table.add_row("settings", "", ", ".join(f"{k}={v}" for k, v in changed.items()))
    Console().print(table)
    return 0


_SHOWN_SETTINGS = ("max_epochs", "max_time", "batch_size", "lr", "patience", "seed",
                   "validation_fraction", "contamination", "normalize")


def _lengths(seqs):
    """Each sequence's length (characters for texts)."""
    return [len(t) for t in seqs] if isinstance(seqs, _Texts) else seqs.lengths


def _write_plots(ae, out: Path, seqs=None, labels=None, Z=None, scores=None) -> list[Path]:
    """The PNG figures; ``Z`` and ``scores`` of ``seqs`` when the caller has them."""
    from . import plots

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if ae.history_:
        written.append(plots.plot_history(ae.history_, out / "loss.png"))
    if seqs is not None:
        scores = _on_texts(ae.score, seqs) if scores is None else scores
        if not isinstance(seqs, _Texts):  # texts: see `seqae reconstruct`
            written.append(plots.plot_reconstructions(seqs, ae.reconstruct(seqs), scores,
                                                      out / "reconstructions.png"))
        Z = _on_texts(ae.encode, seqs) if Z is None else Z
        written.append(plots.plot_embeddings(Z, out / "embeddings.png", labels))
    else:
        scores = ae.train_scores_
    written.append(plots.plot_scores(scores, out / "scores.png", ae.threshold_))
    return written


def _training_facts(ae) -> list[tuple[str, Any]]:
    facts: list[tuple[str, Any]] = []
    cfg = ae.model_config_
    arch = (f"{cfg.encoder} encoder (hidden {cfg.hidden_size}"
            + (f", {cfg.depth} blocks" if cfg.encoder == "conv" else f", {cfg.cell}")
            + f"), {cfg.pooling} pooling, latent {cfg.latent_dim}, {cfg.decoder} decoder")
    facts.append(("model", arch))
    if ae.history_:
        facts.append(("training", f"{len(ae.history_)} epochs in "
                                  f"{ae.history_[-1]['time']:.1f}s; weights kept from the "
                                  + _best_epoch(ae.history_)))
    facts.append(("anomaly threshold", f"{ae.threshold_:.5g} (the {1 - ae.contamination:.3g} "
                                       "quantile of the training scores)"))
    return facts


def _data_facts(seqs) -> list[tuple[str, Any]]:
    if isinstance(seqs, _Texts):
        n = _lengths(seqs)
        return [("data", f"{len(seqs)} texts, lengths {min(n)}-{max(n)}")]
    return [("data", f"{len(seqs)} sequences, {seqs.n_features} features, lengths "
                     f"{seqs.lengths.min()}-{seqs.lengths.max()} (mean "
                     f"{seqs.lengths.mean():.1f})")]


def cmd_plot(args) -> int:
    from .report import write_report

    ae, data_cfg = _load(args.model)
    seqs = labels = None
    out = Path(args.out)
    if args.data is not None:
        seqs, _, labels, _ = _data_for_model(args, ae, data_cfg)
        scores = _on_texts(ae.score, seqs)  # once, for the figures and the report
        ids, facts, lengths = _id_column(seqs), _data_facts(seqs), _lengths(seqs)
    else:  # the training data's scores, saved with the model (no ids)
        scores, ids, lengths = ae.train_scores_, None, None
        facts = [("data", f"none given: scores of the {len(scores)} training sequences")]
    pngs = _write_plots(ae, out, seqs, labels, scores=scores)
    for p in pngs:
        log.info("wrote %s", p)
    page = write_report(out / "report.html", f"seqae model {args.model}",
                        facts + _training_facts(ae), pngs, ids=ids, scores=scores,
                        threshold=ae.threshold_, labels=labels, lengths=lengths,
                        files=[p.name for p in pngs])
    log.info("wrote %s", page)
    return 0


def cmd_demo(args) -> int:
    import numpy as np
    import pyarrow as pa

    from .datasets import make_demo
    from .io import atomic_write_text, write_table

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seqs, labels, truth = make_demo(n=args.n, seed=0)
    log.info("demo data: %s, classes %s, %d planted anomalies", seqs,
             sorted(set(labels.tolist())), int(truth.sum()))
    start = time.perf_counter()
    ae = _fit(seqs, {"max_time": args.max_time, "max_epochs": 1000,
                     "contamination": float(truth.mean())}, args.quiet)
    fit_s = time.perf_counter() - start
    ae.save(out / "model")
    Z = ae.encode(seqs)
    scores = ae.score(seqs)
    flags = scores > ae.threshold_
    write_table(pa.table({"id": seqs.ids, "label": labels, **{f"z{k}": Z[:, k]
                          for k in range(Z.shape[1])}}), out / "embeddings.parquet")
    write_table(pa.table({"id": seqs.ids, "label": labels, "length": seqs.lengths,
                          "score": scores, "anomaly": flags, "planted_anomaly": truth}),
                out / "scores.parquet")
    pngs = _write_plots(ae, out, seqs, labels, Z=Z, scores=scores)
    # quality figures for the report
    knn = _knn_accuracy(Z, labels)
    k = int(truth.sum())
    top = np.argsort(-scores)[:k]
    recall = float(truth[top].mean()) if k else float("nan")
    rel = float(scores.mean() / seqs.values.var(axis=0).mean())
    lines = [
        "# seqae demo report",
        "",
        f"- data: {len(seqs)} sequences, {seqs.n_features} features, lengths "
        f"{seqs.lengths.min()}-{seqs.lengths.max()} (mean {seqs.lengths.mean():.1f}), "
        f"{k} planted anomalies",
        f"- training: {len(ae.history_)} epochs in {fit_s:.1f}s; weights kept from the "
        + _best_epoch(ae.history_),
        f"- reconstruction error (mean score / data variance): {rel:.3f}",
        f"- embeddings: 1-nearest-neighbour class accuracy (leave-one-out) {knn:.3f} "
        f"over {len(set(labels.tolist()))} classes",
        f"- anomalies: {truth[top].sum()} of the {k} highest scores are planted anomalies "
        f"(precision at {k}: {recall:.2f}); {int(flags.sum())} flagged above the threshold "
        f"{ae.threshold_:.4g}",
        "",
        "Files: report.html (this report as one page), model/, embeddings.parquet, "
        "scores.parquet, " + ", ".join(p.name for p in pngs),
    ]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    from .report import write_report

    facts = [*_data_facts(seqs), ("planted anomalies", k), *_training_facts(ae),
             ("reconstruction error (mean score / data variance)", f"{rel:.3f}"),
             ("embeddings", f"1-nearest-neighbour class accuracy (leave-one-out) {knn:.3f} "
                            f"over {len(set(labels.tolist()))} classes"),
             ("anomalies", f"{truth[top].sum()} of the {k} highest scores are planted "
                           f"anomalies (precision at {k}: {recall:.2f}); {int(flags.sum())} "
                           f"flagged above the threshold")]
    write_report(out / "report.html", "seqae demo report", facts, pngs, ids=seqs.ids,
                 scores=scores, threshold=ae.threshold_, labels=labels, lengths=seqs.lengths,
                 files=["model/", "embeddings.parquet", "scores.parquet", "report.md",
                        *(p.name for p in pngs)])
    if not args.quiet:
        _print_report(lines)
    return 0


def _knn_accuracy(Z, labels) -> float:
    import numpy as np

    Zs = (Z - Z.mean(0)) / (Z.std(0) + 1e-8)
    sq = (Zs**2).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * Zs @ Zs.T
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def _print_report(lines: list[str]) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    Console(stderr=False).print(Markdown("\n".join(lines)))


_COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "encode": cmd_encode,
    "reconstruct": cmd_reconstruct,
    "score": cmd_score,
    "plot": cmd_plot,
    "decode": cmd_decode,
    "info": cmd_info,
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:  # one before the command, the other after it
        parser.error("-q/--quiet and -v/--verbose: give one of them")
    if args.command is None:
        parser.print_help()
        return 0
    _setup_logging(args)
    if args.command != "train" and int(os.environ.get("RANK", "0")) > 0:
        return 0  # under torchrun only `train` is shared; rank 0 alone does the rest
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("seqae: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user, traceback with -v
        from .errors import SeqaeError

        if args.verbose or not isinstance(e, (SeqaeError, UsageError, OSError, ValueError)):
            if not isinstance(e, (SeqaeError, UsageError, OSError, ValueError)):
                raise
            import traceback

            traceback.print_exc()
        print(f"seqae: error: {e}", file=sys.stderr)
        return 2
    finally:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()  # joined under torchrun


if __name__ == "__main__":
    sys.exit(main())
