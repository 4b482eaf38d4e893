"""Bulk generation: a folder of masks -> a dataset in the SD-Saliency-900 layout, resumable.

`out/Source Images/<name>.bmp` is the generated image as 8-bit grey at the dataset's size (200x200 for
SD-Saliency-900), `out/Ground truth/<name>.png` the conditioning mask at that size. Masks drawn by `deffiller masks
sample` reach the model from their `masks_<image size>/` copy, so each size is one nearest resize from the
generator's. An image's noise depends only on (seed, mask name), so a rerun skips the pairs already written and draws
the rest as an uninterrupted run would: bit for bit with batch size 1; with larger batches the batch composition
(which differs once pairs are skipped) can move a pixel by a grey level. Under `accelerate launch` the batches (formed
over all pairs left, as one process forms them) are shared out between the processes, so several processes write
the same files as one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from deffiller.data.layout import CLASS_PREFIXES, class_of
from deffiller.errors import DefFillerError
from deffiller.pipelines.deffiller import SCHEDULERS, DefFillerPipeline, SampleConfig, mask_at, prepare_mask
from deffiller.pipelines.mask_sampling import mask_file_at
from deffiller.utils.device import resolve_device
from deffiller.utils.io import list_images, read_image, recover_folder, remove_stale_temps, save_image, write_json
from deffiller.utils.processes import is_main_process, my_share, wait_for_everyone
from deffiller.utils.seeds import derive_seed

IMAGE_DIR, MASK_DIR = "Source Images", "Ground truth"
SETTINGS_FILE = "generation.json"
MODEL_DIR = "model"


def model_folder(path) -> Path:
    """A pipeline folder: `path` itself or the `model/` of a training run folder."""
    path = Path(path)
    for candidate in (path, path / MODEL_DIR):
        if (recover_folder(candidate) / "model_index.json").is_file():
            return candidate
    raise DefFillerError(f"{path}: no DefFiller model here (expected model_index.json in it or in {path / MODEL_DIR}); "
                         f"train one with `deffiller train --out {path}`")


def load_pipeline(model, device: str = "auto", scheduler: str | None = None,
                  speed: SampleConfig | None = None) -> DefFillerPipeline:
    """The pipeline of `model` on `device`, with `scheduler` and the speed settings of `speed` if given."""
    folder = model_folder(model)
    try:
        pipe = DefFillerPipeline.from_pretrained(folder)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise DefFillerError(f"{folder}: cannot load the model ({str(exc).strip()}); a file of it is missing, truncated "
                             f"or corrupt: copy the folder again, or write it anew from the run's last checkpoint by "
                             f"rerunning its `deffiller train ... --resume`") from exc
    if scheduler is not None:
        pipe.use_scheduler(scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(resolve_device(device))
    return pipe.use_speed(speed) if speed is not None else pipe


def read_mask(path) -> np.ndarray:
    """A mask file -> bool foreground, refusing non-binary masks and non-square ones whose centre crop (the
    training preprocessing) would cut off part of the defect."""
    mask = prepare_mask(read_image(path, "L"), str(path))
    (h, w), side = mask.shape, min(mask.shape)
    top, left = (h - side) // 2, (w - side) // 2
    if mask[top : top + side, left : left + side].sum() < mask.sum():
        raise DefFillerError(f"{path}: mask is {w}x{h}; squaring it by a centre crop would cut off part of the defect: "
                             f"pad it with black to {max(h, w)}x{max(h, w)} or crop it to a square around the defect")
    return mask


def image_seed(seed: int, name: str) -> int:
    return derive_seed(seed, name)


def _settings_check(out_dir: Path, settings: dict) -> None:
    """Every process checks; the main one writes."""
    path = out_dir / SETTINGS_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        if changed:
            raise DefFillerError(f"{out_dir} holds images generated with other settings ({', '.join(changed)} differ: "
                                 f"{ {k: before.get(k) for k in changed} }); choose another --out")
    if is_main_process():
        write_json(path, settings)


def generate_from_masks(model_dir, masks_dir, out_dir, guidance: float = 3.0, steps: int = 50, seed: int = 0,
                        scheduler: str = "pndm", class_name: str | None = None, batch_size: int = 8,
                        source_size: int = 200, device: str = "auto", progress: bool = True,
                        speed: SampleConfig | None = None) -> dict:
    """One image per mask of `masks_dir` (class from the name prefix In_/Pa_/Sc_, or `class_name` for all) into
    `out_dir`; returns counts and settings. Pairs already in `out_dir` are kept. `speed`: the sample section whose
    speed settings and guidance form (`uncond_grounding`) to use (default: SampleConfig's)."""
    if scheduler not in SCHEDULERS:
        raise DefFillerError(f"unknown scheduler {scheduler!r}; choose one of {SCHEDULERS}")
    masks_dir, out_dir = Path(masks_dir), Path(out_dir)
    if not masks_dir.is_dir():
        raise DefFillerError(f"{masks_dir}: masks folder not found")
    paths = list_images(masks_dir)
    if not paths:
        raise DefFillerError(f"{masks_dir}: no mask images (.png, .bmp, ...) in it")
    speed = speed or SampleConfig()
    pipe = load_pipeline(model_dir, device, scheduler, speed)
    if class_name is not None and class_name not in pipe.config.classes:
        raise DefFillerError(f"--class {class_name!r} unknown; this model knows {pipe.config.classes}")
    prefixes = {p: c for p, c in CLASS_PREFIXES.items() if c in pipe.config.classes}
    jobs = [(path, class_name or class_of(str(path), prefixes)) for path in paths]
    settings = {"model": str(model_folder(model_dir).resolve()), "guidance": guidance, "steps": steps, "seed": seed,
                "scheduler": scheduler, "class": class_name, "source_size": source_size,
                "uncond_grounding": speed.uncond_grounding}
    _settings_check(out_dir, settings)
    if is_main_process():
        for folder in (out_dir, out_dir / IMAGE_DIR, out_dir / MASK_DIR):
            remove_stale_temps(folder)  # left by a run killed inside a write
    wait_for_everyone()
    todo = [(path, label) for path, label in jobs if not (out_dir / IMAGE_DIR / f"{path.stem}.bmp").is_file()]
    # every mask checked before any image is drawn; the model reads it at its own size, the dataset keeps its own
    prepared = {path: (read_mask(mask_file_at(path, pipe.image_size)), read_mask(path)) for path, _ in todo}
    wait_for_everyone()  # every process has listed what is left before any writes
    chunks = my_share([todo[start : start + batch_size] for start in range(0, len(todo), batch_size)])
    bar = tqdm(total=sum(map(len, chunks)), desc="generate", disable=not (progress and is_main_process()))
    for chunk in chunks:
        generators = [torch.Generator("cpu").manual_seed(image_seed(seed, path.stem)) for path, _ in chunk]
        images = pipe([prepared[path][0] for path, _ in chunk], [label for _, label in chunk], generator=generators,
                      num_inference_steps=steps, guidance_scale=guidance, uncond_grounding=speed.uncond_grounding).images
        for (path, _), image in zip(chunk, images):
            mask = prepared[path][1]
            save_image(out_dir / MASK_DIR / f"{path.stem}.png", mask_at(mask, source_size).astype(np.uint8) * 255)
            grey = Image.fromarray(image).convert("L").resize((source_size, source_size), Image.BICUBIC)
            save_image(out_dir / IMAGE_DIR / f"{path.stem}.bmp", grey)  # last: its presence marks the pair done
        bar.update(len(chunk))
    bar.close()
    wait_for_everyone()
    return {"out_dir": str(out_dir), "generated": len(todo), "kept": len(jobs) - len(todo), **settings}
