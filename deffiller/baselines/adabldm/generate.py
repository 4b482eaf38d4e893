"""`generate_adabldm`: masks named `<P>_<n>.png` -> defect images in the SD-Saliency-900 layout, resumable."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from deffiller.baselines.adabldm.adaptation import adapt_decoder
from deffiller.baselines.adabldm.composites import resize_mask, trimap
from deffiller.baselines.adabldm.model import AdaBLDM
from deffiller.baselines.adabldm.sampler import blended_sample, latent_mask
from deffiller.data.layout import IMAGE_DIRS, MASK_DIRS, class_of
from deffiller.data.masks import binarize
from deffiller.errors import DefFillerError
from deffiller.pipelines.mask_sampling import mask_file_at
from deffiller.utils.io import images_in, read_image, remove_stale_temps, save_image
from deffiller.utils.processes import is_main_process, my_share, wait_for_everyone
from deffiller.utils.seeds import seeded_rng


def read_masks(folder) -> list[tuple[str, str, np.ndarray]]:
    """(name, class, bool mask) for each mask of a folder, sorted by name; clear errors for bad names or an empty folder."""
    paths = images_in(folder, "mask", "(.png, .bmp, ...; names like In_1.png, Pa_1.png, Sc_1.png)")
    return [(p.stem, class_of(p.stem), binarize(read_image(p, "L"))) for p in paths]


def at_model_size(masks_dir, name: str, mask: np.ndarray, size: int) -> np.ndarray:
    """The mask the generator reads: for a mask drawn by `deffiller masks sample`, its copy at the generator's `size`
    (one resize from the mask generator's resolution, not two through the dataset size); else `mask` itself."""
    path = Path(masks_dir) / f"{name}.png"
    sized = mask_file_at(path, size)
    return mask if sized == path else binarize(read_image(sized, "L"))


def _image_for(model: AdaBLDM, label: str, mask: np.ndarray, seed: int, name: str) -> np.ndarray:
    """Grayscale uint8 image at the generator size for one mask."""
    cfg, base, size = model.config, model.base, model.image_size
    rng = seeded_rng(seed, name)
    generator = torch.Generator(base.device).manual_seed(int(rng.integers(2**62)))
    backgrounds = model.backgrounds(label)
    background_gray = backgrounds[int(rng.integers(len(backgrounds)))]
    small = resize_mask(mask, size)

    def tensor(array, scale, shift):
        return torch.tensor(array, dtype=torch.float32, device=base.device).mul(scale).sub(shift)[None, None]

    background = tensor(background_gray, 1 / 127.5, 1.0).expand(-1, 3, -1, -1)
    hint = tensor(trimap(small), 1 / 255, 0.0).expand(-1, 3, -1, -1)
    pixel_mask = tensor(small.astype(np.float32), 1.0, 0.0)
    latent = tensor(latent_mask(small, size // base.vae_factor, cfg.latent_dilate).astype(np.float32), 1.0, 0.0)
    latents = blended_sample(
        base, model.controlnet(label), base.embed([model.prompt(label)]), base.embed([""]), hint, background,
        pixel_mask, latent, steps=cfg.ddim_steps, guidance_scale=cfg.guidance_scale, latent_from=cfg.latent_blend_from,
        pixel_from=cfg.pixel_blend_from, eta=cfg.eta, generator=generator,
    )
    image = adapt_decoder(base.vae, latents, background, pixel_mask, cfg.adapt_steps, cfg.adapt_lr, cfg.preservation)
    gray = image[0].mean(0).clamp(-1, 1).add(1).mul(127.5).round()
    return gray.to(torch.uint8).cpu().numpy()


def generate_adabldm(model_dir, masks_dir, out_dir, seed: int = 0, overrides: dict | None = None, base=None,
                     progress: bool = True) -> dict:
    """Generate one image per mask of `masks_dir` into `out_dir/Source Images/<name>.bmp` + `Ground truth/<name>.png`.

    Outputs are `source_size` square (200 for SD-Saliency-900); masks whose image and mask already exist are
    skipped, so an interrupted run continues where it stopped. Each image depends only on (seed, mask name), so
    under `accelerate launch` the masks are shared out between the processes.
    `overrides` replace sampling settings of the model's `adabldm` config, e.g. {"adapt_steps": 0}; `base`
    replaces the base folder recorded at training. Returns a summary ("out_dir", "generated", "kept", "lines").
    """
    masks = read_masks(masks_dir)
    model = AdaBLDM.load(model_dir, base)
    if overrides:
        model.config = dataclasses.replace(model.config, **overrides)
    missing = sorted({label for _, label, _ in masks} - set(model.classes))
    if missing:
        raise DefFillerError(f"{model_dir}: no AdaBLDM model for class(es) {missing} (has {model.classes}); "
                             f"train them with `deffiller baseline adabldm train --class ...`")
    out_dir, side = Path(out_dir), model.source_size
    if is_main_process():
        for folder in (out_dir / IMAGE_DIRS[0], out_dir / MASK_DIRS[0]):
            remove_stale_temps(folder)  # left by a run killed inside a write
    wait_for_everyone()
    todo = [m for m in masks if not all((out_dir / d / f"{m[0]}{s}").is_file() for d, s in ((IMAGE_DIRS[0], ".bmp"), (MASK_DIRS[0], ".png")))]
    wait_for_everyone()  # every process has listed what is left before any writes
    for name, label, mask in tqdm(my_share(todo), desc="adabldm generate", disable=not (progress and is_main_process())):
        conditioning = at_model_size(masks_dir, name, mask, model.image_size)
        image = cv2.resize(_image_for(model, label, conditioning, seed, name), (side, side), interpolation=cv2.INTER_CUBIC)
        save_image(out_dir / IMAGE_DIRS[0] / f"{name}.bmp", image)
        save_image(out_dir / MASK_DIRS[0] / f"{name}.png", resize_mask(mask, side).astype(np.uint8) * 255)
    wait_for_everyone()
    random = " (the random base made at training)" if base is None and model.meta.get("random_base") else ""
    lines = [f"{len(todo)} images generated, {len(masks) - len(todo)} kept from before; base {model.base.path}{random}",
             f"AdaBLDM images and masks in {out_dir}"]
    return {"out_dir": out_dir, "generated": len(todo), "kept": len(masks) - len(todo), "lines": lines}
