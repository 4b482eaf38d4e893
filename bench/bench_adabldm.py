"""AdaBLDM cost per class and per image with a profile's settings: ControlNet training step, blended sampling,
decoder adaptation (median over repeats), and the implied total for one class's training.

    .venv/bin/python bench/bench_adabldm.py [--profile smoke] [--base SD_FOLDER] [--repeats 3] [--threads 1]

Without --base it uses the random tiny SD folder of the tests (64 px).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import machine, median_time, print_table

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--base", help="SD-format diffusers folder (default: the tests' tiny random one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from deffiller.baselines.adabldm.adaptation import adapt_decoder
    from deffiller.baselines.adabldm.base import BaseModel
    from deffiller.baselines.adabldm.composites import trimap
    from deffiller.baselines.adabldm.config import AdaBLDMConfig
    from deffiller.baselines.adabldm.sampler import blended_sample, latent_mask
    from deffiller.baselines.adabldm.train import ControlNetTask, build_controlnet
    from deffiller.config import load_profile

    profile = load_profile(args.profile)
    cfg, size = profile.section(AdaBLDMConfig), profile.data.image_size
    base_dir = args.base
    if base_dir is None:
        sys.path.insert(0, str(REPO / "tests"))
        from test_adabldm import write_tiny_sd

        base_dir = write_tiny_sd(Path(tempfile.mkdtemp()))
        size = 64
    base = BaseModel.load(base_dir, "cpu")
    controlnet = build_controlnet(base, cfg)
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=cfg.lr)
    text, empty = base.embed(["a steel surface with scratches"]), base.embed([""])
    task = ControlNetTask(base, controlnet, text, empty)
    mask = np.zeros((size, size), bool)
    mask[size // 4 : size // 2, size // 3 : size // 2] = True
    hint = torch.from_numpy(trimap(mask)).float().div(255)[None, None].expand(-1, 3, -1, -1)
    background = torch.rand(1, 3, size, size) * 0.2
    pixel_mask = torch.from_numpy(mask).float()[None, None]
    mask_latent = torch.from_numpy(latent_mask(mask, size // base.vae_factor, cfg.latent_dilate)).float()[None, None]
    batch = {"pixel_values": background.expand(cfg.batch_size, -1, -1, -1), "hint": hint.expand(cfg.batch_size, -1, -1, -1)}

    def train_step():
        optimizer.zero_grad()
        task(batch, torch.Generator().manual_seed(0)).backward()
        optimizer.step()

    def sample():
        return blended_sample(base, controlnet, text, empty, hint, background, pixel_mask, mask_latent, steps=cfg.ddim_steps,
                              guidance_scale=cfg.guidance_scale, latent_from=cfg.latent_blend_from,
                              pixel_from=cfg.pixel_blend_from)

    latents = sample()
    step_s = median_time(train_step, repeats=args.repeats)
    sample_s = median_time(sample, repeats=args.repeats)
    adapt_s = median_time(lambda: adapt_decoder(base.vae, latents, background, pixel_mask, cfg.adapt_steps, cfg.adapt_lr),
                          repeats=args.repeats)
    steps = cfg.max_steps or cfg.epochs * -(-cfg.composites // cfg.batch_size)
    print_table([
        {"stage": f"train step (batch {cfg.batch_size})", "seconds": step_s},
        {"stage": f"train one class ({steps} steps)", "seconds": step_s * steps},
        {"stage": f"blended sampling ({cfg.ddim_steps} DDIM steps), per image", "seconds": sample_s},
        {"stage": f"decoder adaptation ({cfg.adapt_steps} its), per image", "seconds": adapt_s},
    ], f"AdaBLDM, profile {args.profile}, {size} px, base {base_dir}")
    print(machine("cpu"))


if __name__ == "__main__":
    main()
