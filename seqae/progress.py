"""What `fit` shows while it trains: a live display, one line per epoch, or nothing.

``SequenceAutoencoder(verbose=1)`` (the default) adds a `Progress` callback to every
`fit`: on a terminal or in a notebook a live bar (epoch, losses, elapsed time and the
time left within ``max_time`` or, without a budget, the estimate at the current pace);
when the output is a file or a pipe, one plain line per epoch. ``verbose=2`` prints the
lines even on a terminal; ``verbose=0`` shows nothing. Long phases outside the epochs'
steps (indexing a folder, validation, the scoring pass after training) say how far
they are every `PHASE_EVERY` seconds (`Progress.on_phase`). Output goes to standard error, so
standard output stays free for the user's own results. The ``seqae`` logger's records are
independent of this and unchanged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from .train import Callback

__all__ = ["Progress", "VERBOSITY", "PHASE_EVERY"]

VERBOSITY = (0, 1, 2)
PHASE_EVERY = 10.0  # seconds between the lines of a long phase (`Progress.on_phase`)
UNITS = {"indexing": "rows", "validation": "steps", "scoring": "sequences"}


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
        self.phases: dict[str, list[float]] = {}  # name -> [began, last line, done]

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

    def on_phase(self, name: str, done: int, total: int) -> None:
        """A long phase outside the optimizer steps (``"indexing"`` a folder, an epoch's
        ``"validation"``, the ``"scoring"`` pass after training) has ``done`` of
        ``total``: a line every `PHASE_EVERY` seconds while it lasts, and one when it
        ends if it showed any (a quick phase shows nothing)."""
        if self.verbose == 0:
            return
        now = time.perf_counter()
        st = self.phases.get(name)
        if st is None or done < st[2]:  # the phase begins (again)
            st = self.phases[name] = [now, now, 0.0, 0.0]
        st[2] = done
        unit = UNITS.get(name, "")
        if done >= total:
            if st[3]:
                self._say(f"{name}: done, {total:,} {unit} in {_seconds(now - st[0])}")
            del self.phases[name]
        elif now - st[1] >= PHASE_EVERY:
            st[1], st[3] = now, 1.0
            self._say(f"{name}: {done:,}/{total:,} {unit} ({100 * done / max(total, 1):.0f}%),"
                      f" {_seconds(now - st[0])} elapsed")

    def reporter(self, name: str, show: bool = True) -> Callable[[int, int], None] | None:
        """``report(done, total)`` for the phase ``name`` (`on_phase`); None when
        nothing is shown (``verbose=0``, or ``show`` False: a rank other than 0)."""
        if self.verbose == 0 or not show:
            return None
        return lambda done, total: self.on_phase(name, done, total)

    def _say(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.file or sys.stderr, flush=True)

    def on_train_end(self, history) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
