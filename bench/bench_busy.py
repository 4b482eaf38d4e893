"""Speed beside a busy machine: one smoke mask DDPM training step, alone and beside one competing CPU-bound process.

The project's notebooks and CLI set torch's threads with `deffiller.utils.threads.set_torch_threads` (the cores
that are idle when a kernel or command starts); torch's own default is every core. Each row times the step (median of
`--repeats`) under one of the two policies, alone and while a second process runs float32 matmuls on torch's default
threads (the "other job", started before the policy chooses). The `busy / alone` ratio is what a run loses when
someone else computes on the machine; the "every core" row is also what a kernel that started on an idle machine
loses when the other job starts after it.

    .venv/bin/python bench/bench_busy.py [--repeats 5] [--profile smoke]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import torch
from common import machine, median_time, print_table

from deffiller.config import load_profile
from deffiller.utils.threads import set_torch_threads


def competitor(stop) -> None:
    """The other job: matrix products on torch's default thread count until told to stop."""
    torch.set_num_threads(os.cpu_count() or 1)
    a = torch.randn(1024, 1024)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def training_step(profile: str):
    from deffiller.models.mask_ddpm import build_scheduler, build_unet
    from deffiller.training.mask_ddpm import MaskDDPMConfig, MaskDDPMTask

    cfg = load_profile(profile).section(MaskDDPMConfig)
    torch.manual_seed(0)
    unet = build_unet(cfg, 3).train()
    task = MaskDDPMTask(unet, build_scheduler(cfg), cfg.hflip)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.lr)
    data = {"mask": torch.randn(cfg.batch_size, 1, cfg.resolution, cfg.resolution).sign(),
            "label": torch.randint(0, 3, (cfg.batch_size,))}
    generator = torch.Generator().manual_seed(0)

    def step():
        task(data, generator).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    step = training_step(args.profile)
    policies = {"deffiller (the idle cores)": set_torch_threads, "torch default (every core)": os.cpu_count}
    rows = []
    for policy, choose in policies.items():
        torch.set_num_threads(alone_threads := choose() or 1)
        alone = median_time(step, repeats=args.repeats, warmup=2)
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        other = context.Process(target=competitor, args=(stop,), daemon=True)
        other.start()
        time.sleep(3)  # let the other job reach its steady state
        torch.set_num_threads(busy_threads := choose() or 1)
        try:
            busy = median_time(step, repeats=args.repeats, warmup=1)
        finally:
            stop.set()
            other.join(timeout=30)
        rows.append({"threads": policy, "n alone": alone_threads, "n busy": busy_threads, "alone s/step": alone,
                     "busy s/step": busy, "busy / alone": busy / alone})
    print(f"machine: {machine('cpu')}")
    print_table(rows, f"{args.profile} mask DDPM training step, alone and beside one CPU-bound process "
                      f"(median of {args.repeats})")


if __name__ == "__main__":
    main()
