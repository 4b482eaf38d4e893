"""Mask DDPM speed: sampling masks/s and training steps/s for each profile's architecture (random weights).

Sampling rows time one batch of `--batch` masks through `--steps` denoising steps and report masks/s for that
step count and, extrapolated linearly in the step count, for the profile's own sampling steps; training rows time
one optimiser step at the profile's batch size.

    .venv/bin/python bench/bench_masks.py [--profiles tiny smoke paper] [--batch 16] [--steps 5] [--device cpu]
"""
from __future__ import annotations

import argparse

import torch
from common import add_common_args, machine, median_time, peak_memory_mb, print_table, reset_peak


def mask_rows(profiles=("tiny",), batch: int = 16, steps: int = 5, repeats: int = 3, device: str = "cpu",
              warmup: int = 1) -> list[dict]:
    from deffiller.config import load_profile
    from deffiller.models.mask_ddpm import build_scheduler, build_unet
    from deffiller.training.mask_ddpm import MaskDDPMConfig, MaskDDPMTask
    from deffiller.pipelines.mask_sampling import MaskDDPMPipeline

    rows = []
    for name in profiles:
        cfg = load_profile(name).section(MaskDDPMConfig)
        torch.manual_seed(0)
        unet = build_unet(cfg, 3).to(device)
        pipeline = MaskDDPMPipeline(unet.eval(), build_scheduler(cfg))
        pipeline.use_sampler("ddim")  # same UNet cost per step as ddpm
        labels = [i % 3 for i in range(batch)]

        def sample():
            pipeline(labels, [torch.Generator().manual_seed(i) for i in range(batch)], steps)

        reset_peak(device)
        seconds = median_time(sample, device, repeats=repeats, warmup=warmup)
        sample_memory = peak_memory_mb(device)
        data = {"mask": torch.randn(cfg.batch_size, 1, cfg.resolution, cfg.resolution, device=device).sign(),
                "label": torch.randint(0, 3, (cfg.batch_size,), device=device)}
        task = MaskDDPMTask(unet.train(), pipeline.scheduler, cfg.hflip)
        optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.lr)
        generator = torch.Generator(device).manual_seed(0)

        def train_step():
            task(data, generator).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step_seconds = median_time(train_step, device, repeats=repeats, warmup=warmup)
        rows.append({"profile": name, "res": cfg.resolution, "params M": sum(p.numel() for p in unet.parameters()) / 1e6,
                     f"masks/s @{steps} steps": batch / seconds,
                     "masks/s @profile steps": batch / seconds * steps / cfg.sampling_steps,
                     "profile steps": f"{cfg.sampler} {cfg.sampling_steps}", "train batch": cfg.batch_size,
                     "train steps/s": 1 / step_seconds, "sample peak MB": sample_memory})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["tiny", "smoke", "paper"])
    parser.add_argument("--batch", type=int, default=16, help="masks denoised together")
    parser.add_argument("--steps", type=int, default=5, help="denoising steps per timed run")
    add_common_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = mask_rows(args.profiles, args.batch, args.steps, args.repeats, args.device)
    print(f"machine: {machine(args.device)}")
    print_table(rows, f"Mask DDPM: sampling (batch {args.batch}) and training speed, median of {args.repeats} repeats")


if __name__ == "__main__":
    main()
