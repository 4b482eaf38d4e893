"""DFMGAN cost with a profile's settings: one stage-1 and one stage-2 training step (all phases, regularisation
amortised as it is lazily applied), generation throughput, and the implied time of the profile's full training.

    .venv/bin/python bench/bench_dfmgan.py [--profile smoke] [--repeats 3] [--threads 1] [--device cpu]

Uses random real samples in place of a dataset (the cost does not depend on the pixels).
"""
from __future__ import annotations

import argparse

import torch
from common import machine, median_time, print_table


class RandomReals:
    def __init__(self, resolution: int, masks: bool):
        self.resolution, self.masks = resolution, masks

    def sample(self, n, device):
        img = torch.rand(n, 1, self.resolution, self.resolution, device=device) * 2 - 1
        mask = (torch.rand_like(img) > 0.5).float() * 2 - 1 if self.masks else None
        return img, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None, help="default: the profile's dfmgan.device")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from deffiller.baselines.dfmgan.config import DFMGANConfig
    from deffiller.baselines.dfmgan.model import build_discriminator, build_generator
    from deffiller.baselines.dfmgan.train import stage2_trainer
    from deffiller.baselines.dfmgan.trainer import Trainer
    from deffiller.config import load_profile
    from deffiller.utils.device import resolve_device

    cfg = load_profile(args.profile).section(DFMGANConfig).check()
    device = resolve_device(args.device or cfg.device)
    torch.manual_seed(0)
    G, D = build_generator(cfg, defect=False).to(device), build_discriminator(cfg).to(device)
    stage1 = Trainer(G, D, cfg, RandomReals(cfg.resolution, masks=False))
    stage2 = stage2_trainer(cfg, {"G_ema": G.state_dict(), "D": D.state_dict()}, RandomReals(cfg.resolution, True), device)

    def steps(trainer, count):
        def run():
            for _ in range(count):
                trainer.train_step()
        return run

    rows = []
    for name, trainer, kimg in (("stage 1", stage1, cfg.stage1_kimg), ("stage 2 (per class)", stage2, cfg.stage2_kimg)):
        count = max(cfg.g_reg_interval, cfg.d_reg_interval)
        seconds = median_time(steps(trainer, count), str(device), repeats=args.repeats) / count
        total = cfg.steps(kimg)
        rows.append({"what": f"{name} train step", "batch": cfg.batch, "seconds": seconds,
                     "images/s": cfg.batch / seconds, "profile steps": total, "profile minutes": total * seconds / 60})
    G2 = stage2.G_ema
    for batch in (1, cfg.batch):
        z = torch.randn(batch, cfg.z_dim, device=device)

        @torch.no_grad()
        def generate():
            G2(z, torch.randn_like(z), noise_mode="const")

        seconds = median_time(generate, str(device), repeats=args.repeats)
        rows.append({"what": "generate (image + mask)", "batch": batch, "seconds": seconds, "images/s": batch / seconds})
    print_table(rows, f"DFMGAN, profile {args.profile}: {cfg.resolution} px, channels {cfg.channel_base}/{cfg.channel_max}, "
                      f"res_start {cfg.res_start}")
    print(machine(str(device)))


if __name__ == "__main__":
    main()
