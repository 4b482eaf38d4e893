"""DefFiller speed: training steps/s (forward + backward + AdamW on the official trainable set) and generation
images/s (guided sampling, both halves in one UNet call, plus VAE decoding), medians over repeats, peak memory.

    .venv/bin/python bench/bench_deffiller.py [--profiles tiny paper] [--repeats 3] [--paper-repeats 1]
        [--paper-steps 2] [--paper-sample-batch 1] [--paper-warmup 0] [--device cpu|cuda] [--threads 1] [--json outputs/bench/deffiller.json]

Weights are random (speed does not depend on them). The paper profile is the full SD-1.4/GLIGEN-sem size at
256 px (batch 2, gradient checkpointing as configured); on a CPU measure it with few repeats and sampling steps:
generation time grows linearly with the steps, so images/s at 50 steps ~ images/s(measured) * steps / 50.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import machine, median_time, peak_memory_mb, print_table, reset_peak, save_json


def random_parts(profile):
    from deffiller.models.build import DefFillerParts, build_unet, vae_factor
    from deffiller.models.config import ModelConfig, VAEConfig
    from deffiller.models.text import offline_tokenizer, random_text_encoder
    from deffiller.models.vae import build_vae

    cfg = profile.section(ModelConfig)
    torch.manual_seed(0)
    vae = build_vae(profile.section(VAEConfig), profile.data.image_size)
    tokenizer = offline_tokenizer(cfg.max_length)
    text = random_text_encoder(tokenizer, cfg.cross_attention_dim, cfg.text_layers, cfg.text_heads,
                               cfg.text_intermediate, cfg.max_length)
    unet = build_unet(cfg, profile.data.image_size, profile.data.mask_channels, vae_factor(vae))
    return DefFillerParts(unet, vae.requires_grad_(False).eval(), text.requires_grad_(False).eval(), tokenizer)


def masks(count: int, size: int) -> list[np.ndarray]:
    out = []
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4 : size // 2, size // 5 + i : size // 2 + i] = 255
        out.append(mask)
    return out


def bench_profile(name: str, repeats: int, sample_steps: int | None, device: str, sample_batch: int | None = None,
                  warmup: int = 1) -> dict:
    from deffiller.config import load_profile
    from deffiller.pipelines.deffiller import DefFillerPipeline, SampleConfig, make_scheduler
    from deffiller.training.deffiller import DefFillerTask, TrainConfig, noise_scheduler
    from deffiller.training.loop import parameter_counts

    profile = load_profile(name)
    train_cfg, sample_cfg = profile.section(TrainConfig), profile.section(SampleConfig)
    size, classes = profile.data.image_size, tuple(profile.data.classes)
    tic = time.perf_counter()
    parts = random_parts(profile)
    build_s = time.perf_counter() - tic
    task = DefFillerTask(parts, train_cfg).to(device)
    params = [p for group in task.trainable_groups().values() for p in group]
    optimizer = torch.optim.AdamW(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    batch_size = train_cfg.batch_size
    sem = torch.zeros(batch_size, profile.data.mask_channels, size, size)
    sem[:, 0] = 1
    sem[:, 0, size // 4 : size // 2, size // 4 : size // 2] = 0
    sem[:, 2, size // 4 : size // 2, size // 4 : size // 2] = 1
    batch = {"pixel_values": torch.rand(batch_size, 3, size, size, device=device) * 2 - 1, "sem": sem.to(device),
             "prompt": [classes[1]] * batch_size}
    step = [0]

    def train_step():
        generator = torch.Generator(device).manual_seed(step[0])
        step[0] += 1
        optimizer.zero_grad(set_to_none=True)
        task(batch, generator).backward()
        optimizer.step()

    task.train()
    reset_peak(device)
    train_s = median_time(train_step, device, repeats=repeats, warmup=warmup)
    train_mem = peak_memory_mb(device)
    del optimizer
    task.eval()
    pipe = DefFillerPipeline(parts.unet, parts.vae, parts.text_encoder, parts.tokenizer,
                             make_scheduler(sample_cfg.scheduler, noise_scheduler(train_cfg).config), classes).to(device)
    pipe.set_progress_bar_config(disable=True)
    steps = sample_steps or sample_cfg.steps
    count = sample_batch or sample_cfg.batch_size
    generators = [torch.Generator("cpu").manual_seed(i) for i in range(count)]
    reset_peak(device)
    sample_s = median_time(lambda: pipe(masks(count, size), [classes[i % len(classes)] for i in range(count)],
                                        generator=generators, num_inference_steps=steps,
                                        guidance_scale=sample_cfg.guidance), device, repeats=repeats, warmup=warmup)
    counts = parameter_counts(task)
    return {"profile": name, "px": size, "build_s": build_s, "train_batch": batch_size,
            "train_step_s": train_s, "train_steps_per_s": 1 / train_s, "train_peak_mb": train_mem,
            "sample_scheduler": sample_cfg.scheduler, "sample_steps": steps, "sample_batch": count,
            "images_per_s": count / sample_s, "images_per_s_at_profile_steps": count / sample_s * steps / sample_cfg.steps,
            "sample_peak_mb": peak_memory_mb(device), "trainable_params": counts["trainable_total"],
            "frozen_params": counts["frozen_total"], "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paper-repeats", type=int, default=1, help="repeats for the paper profile")
    parser.add_argument("--paper-steps", type=int, help="sampling steps for the paper profile (default: 2 on CPU, 50 on GPU)")
    parser.add_argument("--paper-sample-batch", type=int, help="images per call for the paper profile (default: 1 on "
                        "CPU, sample.batch_size on GPU)")
    parser.add_argument("--paper-warmup", type=int, help="untimed runs before timing the paper profile (default: 0 on "
                        "CPU, 1 on GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=str(Path(__file__).resolve().parent.parent / "outputs" / "bench" / "deffiller.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.profiles:
        paper = name == "paper"
        cpu = args.device == "cpu"
        steps = (args.paper_steps or (2 if cpu else None)) if paper else None
        batch = (args.paper_sample_batch or (1 if cpu else None)) if paper else None
        warmup = (args.paper_warmup if args.paper_warmup is not None else int(not cpu)) if paper else 1
        rows.append(bench_profile(name, args.paper_repeats if paper else args.repeats, steps, args.device, batch, warmup))
        print_table([{k: rows[-1][k] for k in ("profile", "train_steps_per_s", "train_peak_mb", "sample_steps",
                                                "images_per_s", "images_per_s_at_profile_steps", "sample_peak_mb")}],
                    f"DefFiller {name}")
    print_table(rows, "DefFiller: training and generation speed (medians)")
    info = machine(args.device)
    print(info)
    save_json(args.json, {"machine": info, "results": rows})


if __name__ == "__main__":
    main()
