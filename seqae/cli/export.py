"""``seqae export``: one part of a saved model as an ONNX or TorchScript file
(`seqae.export`), its settings written beside it; every argument checked before the
model is read, nothing written into the model folder or over a file seqae did not
write."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import UsageError, log

__all__ = ["cmd_export"]


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import check_out, settings_path

    model = Path(args.model)
    if not model.is_dir():
        raise UsageError(f"{model}: no such model directory")
    out, fmt = check_out(args.out, args.format, protect=(model,))  # before any reading
    from ..estimator import SequenceAutoencoder
    from ..export import export_model

    ae = SequenceAutoencoder.load(model, device="cpu")
    export_model(ae._fitted(), out, args.part, fmt, ae.get_params(), protect=(model,))
    log.info("wrote the %s of %s as %s to %s (settings: %s)", args.part, model, fmt, out,
             settings_path(out))
    return 0
