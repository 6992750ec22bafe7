"""The ``seqae`` command: demo, train, encode, reconstruct, score, impute, decode, info,
plot, export.

A thin layer over library calls: the data are read by `seqae.tables.read_data`, the
results shaped by `seqae.tables`, the training flags made from `seqae.params`. torch is
imported only inside the commands that need it, so ``seqae --help`` is instant. Errors in
the user's data or files end with one line and exit code 2 (``-v`` shows the traceback).
"""

from __future__ import annotations

import importlib
import os
import sys

from .common import UsageError, setup_logging
from .parser import build_parser

__all__ = ["main", "build_parser", "UsageError"]

# command -> module of this package that runs it (imported when the command runs)
_COMMANDS = {"demo": "figures", "train": "train", "encode": "apply", "reconstruct": "apply",
             "score": "apply", "impute": "apply", "decode": "apply", "info": "info",
             "plot": "figures", "export": "export"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:  # one before the command, the other after it
        parser.error("-q/--quiet and -v/--verbose: give one of them")
    if args.command is None:
        parser.print_help()
        return 0
    setup_logging(args)
    if args.command != "train" and int(os.environ.get("RANK", "0")) > 0:
        return 0  # under torchrun only `train` is shared; rank 0 alone does the rest
    try:
        module = importlib.import_module(f"{__name__}.{_COMMANDS[args.command]}")
        return getattr(module, f"cmd_{args.command}")(args)
    except KeyboardInterrupt:
        print("seqae: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user, traceback with -v
        from ..errors import SeqaeError

        if not isinstance(e, (SeqaeError, UsageError, OSError, ValueError)):
            raise
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"seqae: error: {e}", file=sys.stderr)
        return 2
    finally:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()  # joined under torchrun
