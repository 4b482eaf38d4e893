"""Timing helpers for the benchmarks: medians over repeats, peak memory, the machine and versions."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from deffiller.utils.provenance import git_commit, versions


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn, device: str = "cpu", repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` in seconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> float:
    """Peak CUDA memory allocated since the last reset, or the process's peak RSS on CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def add_common_args(parser: argparse.ArgumentParser, repeats: int = 3, threads: int | None = None) -> None:
    """--repeats, --threads, --device: the options every benchmark shares."""
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs; the median is reported")
    parser.add_argument("--threads", type=int, default=threads or torch.get_num_threads(), help="CPU threads for torch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str) -> dict:
    """Where and with what a benchmark ran: CPU model and cores, GPU, library versions, commit, date, command."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "cpu": cpu_model(),
            "cores": cores, "threads": torch.get_num_threads(), "device": device, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info | versions() | {"git_commit": git_commit()}


def print_table(rows: list[dict], title: str) -> None:
    from tabulate import tabulate

    print(f"\n## {title}")
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".4g"))


def save_json(path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
