"""Bulk jobs across processes: under `accelerate launch` (or `torchrun`) every process runs the same command and takes
its share of the work; a plain run is one process that takes all of it.

A sharded job follows one pattern so that its output is the same files whatever the process count:

    if is_main_process():
        ...                       # clear leftovers, write the settings file
    wait_for_everyone()
    todo = ...                    # every process lists what is left, from the disk
    wait_for_everyone()           # nobody writes before everyone has listed
    for item in my_share(todo):   # contiguous slices (accelerate's split_between_processes)
        ...                       # write only this item's own files
    wait_for_everyone()
    if is_main_process():
        ...                       # indexes, manifests over every process's files
"""
from __future__ import annotations

import os

from deffiller.errors import DefFillerError

PROCESSES_ENV = "DEFFILLER_PROCESSES"  # run_all.sh --processes N: the notebooks' heavy steps on N processes


def requested_processes() -> int:
    """How many processes the notebooks' heavy steps use: `$DEFFILLER_PROCESSES`, default 1 (in the kernel)."""
    value = os.environ.get(PROCESSES_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise DefFillerError(f"${PROCESSES_ENV}={value!r}: give a whole number of processes, 1 or more")
    return int(value)


def process_count() -> int:
    """The number of processes of this job (`WORLD_SIZE`, set by accelerate launch and torchrun), 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _state():
    """accelerate's PartialState, or None in a plain run (which never starts torch.distributed)."""
    if process_count() == 1:
        return None
    import torch
    from accelerate import PartialState

    # without CUDA the processes are CPU processes (gloo), which accelerate only sees when told cpu=True
    return PartialState(cpu=not torch.cuda.is_available())


def process_index() -> int:
    """This process's rank (`RANK`, as accelerate launch and torchrun set it): known before torch.distributed starts."""
    return int(os.environ.get("RANK", "0"))


def local_process_count() -> int:
    """The number of this job's processes on this machine (`LOCAL_WORLD_SIZE`), 1 for a plain run."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def local_process_index() -> int:
    """This process's index on its node: the GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return process_index() == 0


def wait_for_everyone() -> None:
    state = _state()
    if state:
        state.wait_for_everyone()


def my_share(items: list) -> list:
    """This process's contiguous slice of `items` (all of them in a plain run); slices differ by at most one item."""
    state = _state()
    if state is None:
        return list(items)
    with state.split_between_processes(list(items)) as share:
        return list(share)


def gather(items: list) -> list:
    """Every process's `items`, concatenated in process order, on every process."""
    if process_count() == 1:
        return list(items)
    from accelerate.utils import gather_object

    return gather_object(list(items))
