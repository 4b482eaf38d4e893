"""DefFiller speed: training steps/s (forward + backward + AdamW on the official trainable set) and generation
images/s (guided sampling plus VAE decoding) with peak memory, medians over repeats, for any train/sample settings.

    .venv/bin/python bench/bench_deffiller.py [--profiles tiny paper] [--repeats 3] [--paper-repeats 1]
        [--paper-steps 2] [--paper-sample-batch 1] [--paper-warmup 0] [--device cpu|cuda] [--threads 1] [--json outputs/bench/deffiller.json]

Weights are random (speed does not depend on them). The paper profile is the full SD-1.4/GLIGEN-sem size at
256 px (batch 2, gradient checkpointing as configured); on a CPU measure it with few repeats and sampling steps:
generation time grows linearly with the steps, so images/s at 50 steps ~ images/s(measured) * steps / 50.
`bench/run.py` compares these settings with the official-style path.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import add_common_args, machine, median_time, peak_memory_mb, print_table, reset_peak, save_json


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


def train_speed(profile, parts, cfg, device: str, repeats: int, warmup: int = 1) -> dict:
    """Training steps/s and peak memory with the `train` settings `cfg` (TrainConfig). The same batch every step:
    with cache_latents the warm-up fills the cache, as the first epoch does in a real run."""
    from deffiller.models.speed import precision
    from deffiller.training.deffiller import DefFillerTask

    size, classes = profile.data.image_size, tuple(profile.data.classes)
    task = DefFillerTask(parts, cfg).to(device)
    params = [p for group in task.trainable_groups().values() for p in group]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sem = torch.zeros(cfg.batch_size, profile.data.mask_channels, size, size)
    sem[:, 0] = 1
    sem[:, 0, size // 4 : size // 2, size // 4 : size // 2] = 0
    sem[:, 2, size // 4 : size // 2, size // 4 : size // 2] = 1
    batch = {"pixel_values": torch.rand(cfg.batch_size, 3, size, size, device=device) * 2 - 1, "sem": sem.to(device),
             "prompt": [classes[1]] * cfg.batch_size, "name": [f"Pa_{i}" for i in range(cfg.batch_size)]}
    step = [0]

    def train_step():
        generator = torch.Generator(device).manual_seed(step[0] % 2)  # two flip patterns, both cached after warm-up
        step[0] += 1
        optimizer.zero_grad(set_to_none=True)
        with precision(device, cfg.mixed_precision, cfg.tf32):  # autocast the forward only, as accelerate does
            loss = task(batch, generator)
        with precision(device, "no", cfg.tf32):
            loss.backward()
            optimizer.step()

    task.train()
    reset_peak(device)
    seconds = median_time(train_step, device, repeats=repeats, warmup=warmup)
    return {"steps/s": 1 / seconds, "images/s": cfg.batch_size / seconds, "batch": cfg.batch_size,
            "peak MB": peak_memory_mb(device)}


def sample_speed(profile, parts, cfg, device: str, repeats: int, warmup: int = 1, steps: int | None = None,
                 batch: int | None = None) -> dict:
    """Generation images/s and peak memory with the `sample` settings `cfg` (SampleConfig), `steps` sampler steps
    and `batch` masks per call (default: the config's)."""
    from deffiller.pipelines.deffiller import DefFillerPipeline, make_scheduler
    from deffiller.training.deffiller import TrainConfig, noise_scheduler

    size, classes = profile.data.image_size, tuple(profile.data.classes)
    pipe = DefFillerPipeline(parts.unet, parts.vae, parts.text_encoder, parts.tokenizer,
                             make_scheduler(cfg.scheduler, noise_scheduler(profile.section(TrainConfig)).config),
                             classes).to(device).use_speed(cfg)
    pipe.set_progress_bar_config(disable=True)
    parts.unet.eval()
    steps, count = steps or cfg.steps, batch or cfg.batch_size
    generators = [torch.Generator("cpu").manual_seed(i) for i in range(count)]
    labels = [classes[i % len(classes)] for i in range(count)]
    reset_peak(device)
    seconds = median_time(lambda: pipe(masks(count, size), labels, generator=generators, num_inference_steps=steps,
                                       guidance_scale=cfg.guidance), device, repeats=repeats, warmup=warmup)
    return {"images/s": count / seconds, "steps": steps, "batch": count, "peak MB": peak_memory_mb(device)}


def bench_profile(name: str, repeats: int, sample_steps: int | None, device: str, sample_batch: int | None = None,
                  warmup: int = 1) -> dict:
    from deffiller.config import load_profile
    from deffiller.pipelines.deffiller import SampleConfig
    from deffiller.training.deffiller import DefFillerTask, TrainConfig
    from deffiller.training.loop import parameter_counts

    profile = load_profile(name)
    train_cfg, sample_cfg = profile.section(TrainConfig), profile.section(SampleConfig)
    tic = time.perf_counter()
    parts = random_parts(profile)
    build_s = time.perf_counter() - tic
    train = train_speed(profile, parts, train_cfg, device, repeats, warmup)
    sample = sample_speed(profile, parts, sample_cfg, device, repeats, warmup, sample_steps, sample_batch)
    counts = parameter_counts(DefFillerTask(parts, train_cfg))
    return {"profile": name, "px": profile.data.image_size, "build_s": build_s, "train_batch": train["batch"],
            "train_step_s": 1 / train["steps/s"], "train_steps_per_s": train["steps/s"], "train_peak_mb": train["peak MB"],
            "sample_scheduler": sample_cfg.scheduler, "sample_steps": sample["steps"], "sample_batch": sample["batch"],
            "images_per_s": sample["images/s"],
            "images_per_s_at_profile_steps": sample["images/s"] * sample["steps"] / sample_cfg.steps,
            "sample_peak_mb": sample["peak MB"], "trainable_params": counts["trainable_total"],
            "frozen_params": counts["frozen_total"], "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--paper-repeats", type=int, default=1, help="repeats for the paper profile")
    parser.add_argument("--paper-steps", type=int, help="sampling steps for the paper profile (default: 2 on CPU, 50 on GPU)")
    parser.add_argument("--paper-sample-batch", type=int, help="images per call for the paper profile (default: 1 on "
                        "CPU, sample.batch_size on GPU)")
    parser.add_argument("--paper-warmup", type=int, help="untimed runs before timing the paper profile (default: 0 on "
                        "CPU, 1 on GPU)")
    parser.add_argument("--json", default=str(Path(__file__).resolve().parent.parent / "outputs" / "bench" / "deffiller.json"))
    add_common_args(parser, threads=1)
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
