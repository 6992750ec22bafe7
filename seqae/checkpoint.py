"""Training checkpoints: written after every epoch, crash-safe, pickle-free, resumable.

A checkpoint is a folder ``epoch-000012/`` inside the checkpoint directory:

- ``model.safetensors``: the weights after the epoch;
- ``best.safetensors``: the weights of the best epoch so far (what `train` restores);
- ``optimizer.safetensors`` + the optimizer's other state in ``state.json``;
- ``rng.safetensors``: torch's random generators (CPU, and CUDA when used);
- ``state.json``: epoch, history, early-stopping counters, scheduler, fingerprint;
- ``manifest.json``: the SHA-256 of every file above, written last.

Every file is written atomically (temporary file, fsync, rename, fsync of the folder),
and a checkpoint counts only once its manifest exists and every checksum matches, so a
kill at any moment (during a write included) leaves the previous checkpoint valid: at
most one epoch is lost. With ``TrainConfig.checkpoint_every`` a checkpoint is also
written every so many optimizer steps inside an epoch, as ``epoch-000011-00000500/``
(11 epochs done and 500 steps of the 12th; names sort in training order), whose
``state.json`` holds the position reached. Nothing is ever unpickled: tensors are read
with safetensors, the rest is JSON. The two newest valid checkpoints are kept.

The data order is a pure function of (seed, epoch, pass), so a checkpoint needs no
sampler state beyond the epoch counter and, inside an epoch, the step reached (streamed
data included: `seqae.stream`).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import SeqaeError
from .io import atomic_write_bytes, atomic_write_text
from .nn.model import current_names

__all__ = ["CheckpointError", "Checkpointer"]

FORMAT = 1
_FILES = ("model.safetensors", "best.safetensors", "optimizer.safetensors", "rng.safetensors",
          "state.json")


class CheckpointError(SeqaeError, ValueError):
    """A checkpoint that cannot be used: corrupt, from other data or other settings."""


def _tensors_blob(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        return load(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - any parse failure names the file
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def _json_safe(v: Any) -> Any:
    """JSON with non-finite floats kept (Python's json reads them back)."""
    if isinstance(v, tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        return v.item()
    return v


class Checkpointer:
    """Writes and finds checkpoints in ``folder`` for a run described by
    ``fingerprint`` (a JSON-able dict: the data's checksum, the settings...).

    Args:
        folder: the checkpoint directory (created when needed).
        fingerprint: what a resumed run must share with the run that wrote the
            checkpoint; `load_latest` names every key that differs.
        keep: how many of the newest checkpoints to keep (default 2).
    """

    def __init__(self, folder: str | Path, fingerprint: dict[str, Any], keep: int = 2):
        self.folder = Path(folder)
        self.fingerprint = _json_safe(fingerprint)
        self.keep = max(1, keep)
        self.world_size = 1  # processes of the run (`train` sets it under torchrun)

    # ------------------------------------------------------------------ writing
    def save(self, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any, best_state: dict[str, torch.Tensor] | None,
             state: dict[str, Any], step: int = 0) -> Path:
        """Write the checkpoint of ``epoch`` (the epochs completed) and, with ``step``,
        of ``step`` more optimizer steps into the next (``state`` then holds the
        position); returns its folder."""
        d = self.folder / (f"epoch-{epoch:06d}" + (f"-{step:08d}" if step else ""))
        if d.exists():  # a leftover of a run killed while writing this epoch
            shutil.rmtree(d)
        d.mkdir(parents=True)
        opt = optimizer.state_dict()
        opt_tensors, opt_other = {}, {}
        for idx, entries in opt["state"].items():
            for name, value in entries.items():
                if isinstance(value, torch.Tensor):
                    opt_tensors[f"{idx}.{name}"] = value
                else:
                    opt_other[f"{idx}.{name}"] = value
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = s
        blobs = {
            "model.safetensors": _tensors_blob(model.state_dict()),
            "best.safetensors": _tensors_blob(best_state or {}),
            "optimizer.safetensors": _tensors_blob(opt_tensors),
            "rng.safetensors": _tensors_blob(rng),
            "state.json": json.dumps(_json_safe({
                "format": FORMAT, "epoch": epoch, "fingerprint": self.fingerprint,
                "optimizer": {"param_groups": opt["param_groups"], "other": opt_other},
                "scheduler": scheduler.state_dict(), **state,
            }), indent=1).encode(),
        }
        for name, blob in blobs.items():
            atomic_write_bytes(d / name, blob)
        manifest = {"format": FORMAT, "epoch": epoch, "world_size": self.world_size,
                    "torch": torch.__version__, "seqae": __version__,
                    "sha256": {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()}}
        atomic_write_text(d / "manifest.json", json.dumps(manifest, indent=1))
        for old in self._folders()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return d

    def clear(self) -> None:
        """Remove every checkpoint of an earlier run (a fresh start must not be resumed
        later from an older run's epochs)."""
        for d in self._folders():
            shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ reading
    def _folders(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir()
                      if p.is_dir() and p.name.startswith("epoch-"))

    def _valid(self, d: Path) -> bool:
        """A manifest whose every checksum matches (anything else: an interrupted write)."""
        try:
            manifest = json.loads((d / "manifest.json").read_text())
            return all(hashlib.sha256((d / n).read_bytes()).hexdigest() == manifest["sha256"][n]
                       for n in _FILES)
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def latest(self) -> Path | None:
        """The newest valid checkpoint folder, or None."""
        for d in reversed(self._folders()):
            if self._valid(d):
                return d
        return None

    def load_latest(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict[str, Any] | None:
        """Restore the newest valid checkpoint into ``model``, ``optimizer``,
        ``scheduler`` and torch's generators; returns its ``state.json`` (plus
        ``best_state`` and ``folder``), or None when there is none. Raises `CheckpointError` when it
        was written for other data or settings."""
        d = self.latest()
        if d is None:
            return None
        docs = {}
        for name in ("manifest.json", "state.json"):
            try:
                doc = json.loads((d / name).read_text())
            except (ValueError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{d / name}: not valid JSON ({e})") from None
            found = doc.get("format") if isinstance(doc, dict) else None
            if found != FORMAT:
                raise CheckpointError(
                    f"{d / name}: checkpoint format {found!r} (written by seqae "
                    f"{doc.get('seqae', '?') if isinstance(doc, dict) else '?'}); this "
                    f"seqae ({__version__}) reads checkpoint format {FORMAT} only")
            docs[name] = doc
        manifest, state = docs["manifest.json"], docs["state.json"]
        if manifest.get("world_size", 1) != self.world_size:
            raise CheckpointError(
                f"cannot resume from {d}: it was written by {manifest.get('world_size')} "
                f"process(es), this run has {self.world_size}; resume with the same "
                "torchrun --nproc-per-node/--nnodes (the batch plan depends on it)")
        theirs = state.get("fingerprint", {})
        differ = sorted(k for k in set(theirs) | set(self.fingerprint)
                        if theirs.get(k) != self.fingerprint.get(k))
        if differ:
            parts = [f"{k}: {theirs.get(k)!r} then, {self.fingerprint.get(k)!r} now"
                     for k in differ]
            raise CheckpointError(f"cannot resume from {d}: it was written for other data "
                                  f"or settings ({'; '.join(parts)})")
        weights = current_names(_read_tensors(d / "model.safetensors"))
        ours = set(model.state_dict())
        if set(weights) != ours:
            missing, extra = sorted(ours - set(weights)), sorted(set(weights) - ours)
            raise CheckpointError(
                f"cannot resume from {d}: its model has other weights than this run's "
                f"(missing: {missing or 'none'}; not in this model: {extra or 'none'}); it "
                "was written by another seqae version or model settings: resume with those, "
                "or train afresh with another checkpoint folder")
        model.load_state_dict(weights)
        opt_tensors = _read_tensors(d / "optimizer.safetensors")
        entries: dict[int, dict[str, Any]] = {}
        for key, value in list(opt_tensors.items()) + list(state["optimizer"]["other"].items()):
            idx, name = key.split(".", 1)
            entries.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": entries,
                                   "param_groups": state["optimizer"]["param_groups"]})
        scheduler.load_state_dict(state["scheduler"])
        rng = _read_tensors(d / "rng.safetensors")
        torch.set_rng_state(rng["cpu"])
        cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        best = current_names(_read_tensors(d / "best.safetensors"))
        state["best_state"] = best or None
        state["folder"] = str(d)
        if state.get("best") is None:
            state["best"] = math.inf
        return state

