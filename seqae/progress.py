"""What `fit` shows while it trains: a live display, one line per epoch, or nothing.

``SequenceAutoencoder(verbose=1)`` (the default) adds a `Progress` callback to every
`fit`: on a terminal or in a notebook a live bar (epoch, losses, elapsed time and the
time left within ``max_time`` or, without a budget, the estimate at the current pace);
when the output is a file or a pipe, one plain line per epoch. ``verbose=2`` prints the
lines even on a terminal; ``verbose=0`` shows nothing. Output goes to standard error, so
standard output stays free for the user's own results. The ``seqae`` logger's records are
independent of this and unchanged.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from .train import Callback

__all__ = ["Progress", "VERBOSITY"]

VERBOSITY = (0, 1, 2)


def _seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


class Progress(Callback):
    """A training callback that reports each epoch.

    Args:
        verbose: 1 = live display when the output is interactive (a terminal or a
            Jupyter notebook), else one line per epoch; 2 = one line per epoch always;
            0 = nothing.
        max_epochs: the epoch limit of the run.
        max_time: the run's time budget in seconds, or None.
        file: where to write (default: ``sys.stderr`` at the time of the call).
    """

    def __init__(self, verbose: int, max_epochs: int, max_time: float | None = None,
                 file: IO[str] | None = None):
        if verbose not in VERBOSITY:
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.verbose = verbose
        self.max_epochs = max_epochs
        self.max_time = max_time
        self.file = file
        self.live: Any = None
        self.lines: list[str] = []  # what was printed, one per epoch (for callers)

    # ------------------------------------------------------------------ helpers
    def _console(self):
        from rich.console import Console

        return Console(file=self.file or sys.stderr)

    def time_left(self, epoch: int, elapsed: float) -> float:
        """Seconds left: the budget's remainder, or the epochs left at the mean pace so
        far, whichever ends first."""
        by_epochs = (self.max_epochs - epoch) * elapsed / max(epoch, 1)
        if self.max_time is None:
            return by_epochs
        return min(by_epochs, max(0.0, self.max_time - elapsed))

    @staticmethod
    def losses(record: dict[str, Any]) -> str:
        text = f"train {record['train_loss']:.4g}"
        if "val_loss" in record:
            text += f"  val {record['val_loss']:.4g}"
        return text

    def line(self, epoch: int, record: dict[str, Any]) -> str:
        return (f"epoch {epoch}/{self.max_epochs}  {self.losses(record)}  "
                f"lr {record['lr']:.2g}  {_seconds(record['time'])} elapsed, "
                f"{_seconds(self.time_left(epoch, record['time']))} left")

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, model, config) -> None:
        self.start = time.perf_counter()
        self.lines = []
        if self.verbose != 1:
            return
        console = self._console()
        if not (console.is_terminal or console.is_jupyter):
            return
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Live

        self.live = Live(
            TextColumn("[bold]fit"), BarColumn(),
            TextColumn("epoch {task.fields[epoch]}/{task.fields[max_epochs]}"),
            TextColumn("{task.fields[losses]}"), TimeElapsedColumn(),
            TextColumn("{task.fields[left]}"), console=console, transient=False,
        )
        self.live.start()
        left = "" if self.max_time is None else f"{_seconds(self.max_time)} left"
        self.task = self.live.add_task("fit", total=1.0, epoch=0, max_epochs=self.max_epochs,
                                       losses="", left=left)

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        if self.verbose == 0:
            return
        if self.live is not None:
            elapsed = record["time"]
            done = epoch / self.max_epochs
            if self.max_time:
                done = max(done, min(1.0, elapsed / self.max_time))
            self.live.update(self.task, completed=done, epoch=epoch, losses=self.losses(record),
                             left=f"{_seconds(self.time_left(epoch, elapsed))} left")
            return
        text = self.line(epoch, record)
        self.lines.append(text)
        print(text, file=self.file or sys.stderr, flush=True)

    def on_train_end(self, history) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
