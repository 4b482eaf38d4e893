"""How many CPU threads torch uses, chosen the same way by the CLI and by every notebook kernel."""
from __future__ import annotations

import os

import torch

from deffiller.errors import DefFillerError

THREADS_ENV = "DEFFILLER_THREADS"  # run_all.sh --threads N: the notebook kernels' torch threads


def set_torch_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads to `threads`, else to `$DEFFILLER_THREADS`, else to half the cores, and return the
    count: two threads on two busy cores can be many times slower than one (mask DDPM training went from 0.5 to 8 s a
    step beside one other job), while on an idle machine every core is faster."""
    value = os.environ.get(THREADS_ENV)
    if threads is None and value:
        if not value.isdigit() or int(value) < 1:
            raise DefFillerError(f"${THREADS_ENV}={value!r}: give a whole number of threads, 1 or more")
        threads = int(value)
    count = threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(count)
    return count
