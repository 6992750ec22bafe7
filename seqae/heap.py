"""The C heap's free memory given back to the system (glibc): what a CPU training step
frees would otherwise stay in the process (`Heap`, used by `seqae.train`)."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

__all__ = ["Heap", "HEAP_FREE_LIMIT"]

HEAP_FREE_LIMIT = 64 << 20  # bytes of free C heap given back after a CPU step (`Heap`)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


class Heap:
    """Gives the C heap's free memory back to the system between training steps (glibc).

    glibc serves the tensors of a CPU step below its mmap threshold, a threshold it
    raises on its own after large blocks are freed, from its heap, and keeps what they
    free there. On long sequences (500 steps x 32) the heap ends up holding as much
    free memory as the step uses: 1.9 GB peak RSS where 1.2 GB are used at once
    (benchmarks/RESULTS.md, "Scale II"). A fixed threshold would cure it at twice the
    time (every large tensor a fresh mapping); ``malloc_trim`` after a step that left
    more than `HEAP_FREE_LIMIT` free keeps the peak at 1.2 GB for about 10 % more time
    on such sequences (the next step maps its memory afresh), and never happens on
    short ones. A no-op where there is no glibc."""

    def __init__(self) -> None:
        self.libc: Any = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallinfo2.restype = _MallInfo2
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            self.libc = libc
        except (OSError, AttributeError):  # not glibc (>= 2.33): nothing to do
            pass
        self.trims = 0

    def release(self) -> None:
        if self.libc is not None and self.libc.mallinfo2().fordblks > HEAP_FREE_LIMIT:
            self.libc.malloc_trim(0)
            self.trims += 1
