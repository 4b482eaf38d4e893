"""How many CPU threads torch uses, chosen the same way by the CLI and by every notebook kernel."""
from __future__ import annotations

import os

import psutil
import torch

from deffiller.errors import DefFillerError
from deffiller.utils.processes import local_process_count

THREADS_ENV = "DEFFILLER_THREADS"  # run_all.sh --threads N: the notebook kernels' torch threads
IDLE_SAMPLE_S = 0.25  # how long the machine's load is watched before choosing


def idle_cores(cores: int, sample_s: float = IDLE_SAMPLE_S) -> int:
    """The cores other processes leave idle, watched for `sample_s` seconds (at least 1)."""
    busy = psutil.cpu_percent(interval=sample_s) / 100 * cores
    return max(1, round(cores - busy))


def set_torch_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads to `threads`, else to `$DEFFILLER_THREADS`, else to the cores that are idle right now,
    shared among the processes a launch started on this machine (`$LOCAL_WORLD_SIZE`: they all look at once, before
    any of them loads a core), and return the count: on an idle machine every core is faster, while two threads on two
    cores that another job keeps busy can be many times slower than one (mask DDPM training went from 0.5 to 8 s a
    step beside one other job). Each notebook kernel chooses when it starts."""
    value = os.environ.get(THREADS_ENV)
    if threads is None and value:
        if not value.isdigit() or int(value) < 1:
            raise DefFillerError(f"${THREADS_ENV}={value!r}: give a whole number of threads, 1 or more")
        threads = int(value)
    count = threads or max(1, idle_cores(os.cpu_count() or 1) // local_process_count())
    torch.set_num_threads(count)
    return count
