"""The ``seqae`` command line's flags; the training flags are made from the table of
parameters (`seqae.params.cli_flags`), so each is written once. Nothing heavy is
imported here: ``seqae --help`` is instant."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..params import cli_flags

__all__ = ["build_parser", "training_settings"]


def build_parser() -> argparse.ArgumentParser:
    """The ``seqae`` parser, with one sub-parser per command."""
    p = argparse.ArgumentParser(
        prog="seqae",
        description="Autoencoders for variable-length sequences: train, embed, reconstruct, "
        "score and plot, from Parquet/CSV/NPZ files.",
    )
    p.add_argument("--version", action="version", version=f"seqae {__version__}")
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
    _demo(sub, common)
    _train(sub, common)
    _apply(sub, common)
    _decode(sub, common)
    inf = sub.add_parser("info", parents=[common], help="print what a model directory holds")
    inf.add_argument("model", help="model directory")
    inf.add_argument("--json", action="store_true", help="print it as JSON")
    _export(sub, common)
    pl = sub.add_parser("plot", parents=[common], help="write PNG figures for a model (and data)")
    pl.add_argument("model", help="model directory")
    pl.add_argument("data", nargs="?", default=None, help="optional data file")
    pl.add_argument("--out", required=True, help="folder for the PNG files")
    _data_args(pl, features=False)
    return p


def _whole(lo: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``lo``, refused at parsing (before anything is
    read or written) with the bound in the message."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value

    parse.__name__ = f"whole number >= {lo}"
    return parse


def _data_args(sp: argparse.ArgumentParser, features: bool = True) -> None:
    """Which columns of the data file are what (`seqae.tables.DataSpec`)."""
    sp.add_argument("--id-col", default=None, help="sequence id column (default: id)")
    sp.add_argument("--time-col", default=None, help="column that orders each sequence")
    sp.add_argument("--window", type=_whole(1), default=None,
                    help="a folder of Parquet files is streamed: most values held per "
                         "window (default 16777216, 64 MiB of float32)")
    sp.add_argument("--workers", type=_whole(0), default=None,
                    help="a folder of Parquet files is streamed: data-loader processes "
                         "reading it (default 0: the main process reads)")
    if features:
        sp.add_argument("--features", default=None,
                        help="comma-separated feature columns (default: other numeric)")
        sp.add_argument("--exclude", default=None,
                        help="comma-separated columns that are not features (without "
                             "--features)")
    sp.add_argument("--label-col", default=None,
                    help="label column: carried to outputs and used to colour plots")
    sp.add_argument("--text-col", default=None,
                    help="Parquet/CSV column of texts: a text model, one text per row "
                    "(a .txt file is one text per line)")


def _demo(sub: Any, common: argparse.ArgumentParser) -> None:
    d = sub.add_parser("demo", parents=[common],
                       help="train on built-in demo data and write every output")
    d.add_argument("--out", default="seqae-demo", help="output folder (default: seqae-demo)")
    d.add_argument("--max-time", type=float, default=45.0, help="training seconds (default 45)")
    d.add_argument("--n", type=_whole(10), default=600,
                   help="number of demo sequences (at least 10; default 600)")


def _train(sub: Any, common: argparse.ArgumentParser) -> None:
    t = sub.add_parser("train", parents=[common],
                       help="train a model on a data file (or a file of texts)")
    t.add_argument("data", help="Parquet, CSV, NPZ or .ts file, .txt (one text per line), or "
                                "a folder of Parquet files (streamed: read a window at a time)")
    t.add_argument("--out", required=True, help="model directory to write")
    _data_args(t)
    t.add_argument("--config", default=None, help="YAML (or JSON) file of settings")
    t.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in OUT (one is written after "
                   "every epoch); the result equals an uninterrupted run")
    t.add_argument("--checkpoint-every", type=_whole(0), default=None,
                   help="also checkpoint every N optimizer steps inside an epoch (default: "
                        "0, or 200 when streaming a folder)")
    for flag, param in cli_flags().items():
        t.add_argument(f"--{flag}", type=_typed(param.cli_type), choices=param.cli_choices,
                       default=None, help=param.help or None)


def _typed(fn: Callable[[str], Any] | None) -> Callable[[str], Any] | None:
    """``fn`` under a name argparse can show ("invalid int or 'auto' value: 'x'")."""
    if fn is None or fn in (int, float, str):
        return fn

    def parse(text: str) -> Any:
        return fn(text)

    base = "int" if "int" in fn.__name__ else "float" if "float" in fn.__name__ else "value"
    parse.__name__ = f"{base} or 'auto'" if "auto" in fn.__name__ else base
    return parse


def training_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``{parameter: value}`` of the training flags given on the command line."""
    from ..params import param_of_flag

    out = {}
    for flag in cli_flags():
        value = getattr(args, flag.replace("-", "_"), None)
        if value is not None:
            out[param_of_flag(flag)] = value
    return out


def _apply(sub: Any, common: argparse.ArgumentParser) -> None:
    for name, helptext in [
        ("encode", "write one embedding row per sequence (id, z0..zK)"),
        ("reconstruct", "write reconstructions as a long table (id, time, features)"),
        ("score", "write per-sequence anomaly scores and flags"),
        ("impute", "write the data with each missing value filled in by the model (a long "
                   "table: id, time, features; a model trained with --missing mask)"),
    ]:
        sp = sub.add_parser(name, parents=[common], help=helptext)
        sp.add_argument("model", help="model directory from `seqae train`")
        sp.add_argument("data", help="Parquet, CSV, NPZ, .ts or .txt file, or a folder of "
                                     "Parquet files")
        sp.add_argument("--out", required=True, help="output .parquet (default), .csv or .npy "
                                                     "(a folder's results stream to .parquet)")
        _data_args(sp, features=False)
        _overwrite(sp)
        if name == "score":
            sp.add_argument("--contamination", type=float, default=None,
                            help="refit the threshold as this quantile of training scores")
            sp.add_argument("--per-step", action="store_true",
                            help="write each step's error instead (a long table: id, time, "
                                 "score; NaN at a step whose every feature is missing)")


def _overwrite(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--overwrite", action="store_true",
                    help="replace an existing --out that seqae did not write (a Parquet "
                         "output seqae wrote is replaced without it; an input never is)")


def _decode(sub: Any, common: argparse.ArgumentParser) -> None:
    dc = sub.add_parser("decode", parents=[common],
                        help="decode embeddings (columns z0..zK) into sequences "
                        "or texts")
    dc.add_argument("model", help="model directory from `seqae train`")
    dc.add_argument("embeddings", help="Parquet or CSV file with columns z0..zK (as written "
                    "by `seqae encode`); an id column is carried over")
    dc.add_argument("--out", required=True, help="output .parquet (default) or .csv")
    _overwrite(dc)
    length = dc.add_mutually_exclusive_group()
    length.add_argument("--length", type=int, default=None,
                        help="decode every vector at this length")
    length.add_argument("--length-col", default=None,
                        help="column of the embeddings file holding each vector's length")
    dc.add_argument("--id-col", default=None, help="id column (default: id, when present)")
    dc.add_argument("--max-length", type=int, default=None,
                    help="texts without a length: most characters before EOS "
                    "(default: twice the longest training text)")


def _export(sub: Any, common: argparse.ArgumentParser) -> None:
    ex = sub.add_parser("export", parents=[common],
                        help="write the encoder, decoder or scorer as an ONNX or TorchScript "
                        "file (settings beside it as FILE.json)")
    ex.add_argument("model", help="model directory from `seqae train`")
    ex.add_argument("--part", choices=("encoder", "decoder", "scorer"), default="encoder",
                    help="encoder: (x, lengths) -> z; decoder: (z, lengths) -> y; "
                    "scorer: (x, lengths) -> scores (default: encoder)")
    ex.add_argument("--format", choices=("onnx", "torchscript"), default=None,
                    help="default: from the suffix of --out (.onnx; .pt for TorchScript), "
                    "else onnx")
    ex.add_argument("--out", required=True, help="the file to write (never inside the model "
                    "directory, never over a file seqae did not write)")
