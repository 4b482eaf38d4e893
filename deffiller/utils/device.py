"""The one place a device name from a profile or a command line becomes a torch device."""
from __future__ import annotations

import torch

from deffiller.errors import DefFillerError
from deffiller.utils.processes import local_process_index, process_count


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` is CUDA where available, else the CPU; a CUDA device asked for on a machine without one is an error.
    Under several processes (accelerate launch), `auto` and `cuda` are the GPU of this process's local index."""
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and process_count() > 1:
        name = f"cuda:{local_process_index()}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DefFillerError(f"device {name!r} requested but CUDA is not available; use device: cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise DefFillerError(f"unknown device {name!r}; use auto, cpu or cuda[:<index>]") from exc
