"""`generate_dfmgan`: DFMGAN draws its own mask/image pairs (it cannot take given masks), written in the
SD-Saliency-900 layout at the source size: `Source Images/In_1.bmp` + `Ground truth/In_1.png` (masks {0, 255}).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from deffiller.baselines.dfmgan.data import resize_gray
from deffiller.baselines.dfmgan.model import config_of, load_generator, read_manifest
from deffiller.data.layout import CLASS_PREFIXES, IMAGE_DIRS, MASK_DIRS
from deffiller.errors import DefFillerError
from deffiller.utils.device import resolve_device
from deffiller.utils.io import remove_stale_temps, save_image
from deffiller.utils.processes import gather, is_main_process, my_share, wait_for_everyone
from deffiller.utils.seeds import seeded_rng

PREFIX_OF = {label: prefix for prefix, label in CLASS_PREFIXES.items()}


def latents(name: str, seed: int, z_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, defect z) of one output; they depend only on the seed and the file name."""
    rng = seeded_rng(seed, name)
    z, defect_z = rng.standard_normal((2, z_dim)).astype(np.float32)
    return torch.from_numpy(z), torch.from_numpy(defect_z)


def to_outputs(image: torch.Tensor, mask_logits: torch.Tensor, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 grayscale image, uint8 {0, 255} mask) at `side` px; the mask logits are resized before thresholding."""
    gray = image[0].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu().numpy()
    logits = mask_logits[0].float().cpu().numpy()
    interpolation = cv2.INTER_AREA if logits.shape[0] > side else cv2.INTER_LINEAR
    mask = cv2.resize(logits, (side, side), interpolation=interpolation) >= 0
    return resize_gray(gray, side), mask.astype(np.uint8) * 255


@torch.no_grad()
def generate_dfmgan(model_dir, per_class: int, out_dir, seed: int = 0, classes=None, truncation: float = 1.0,
                    batch: int = 16, device=None, progress: bool = True) -> dict:
    """Write `per_class` pairs per class (names <P>_1 .. <P>_N) into `out_dir`; returns a summary.

    Pairs already written are kept, so an interrupted run continues where it stopped; under `accelerate launch` each
    class's batches are shared out between the processes.
    """
    if per_class < 1:
        raise DefFillerError(f"--per-class {per_class}: must be at least 1")
    meta = read_manifest(model_dir)
    classes = list(classes or meta["classes"])
    missing = sorted(set(classes) - set(meta["classes"]))
    if missing:
        raise DefFillerError(f"{model_dir}: no DFMGAN model for class(es) {missing} (has {meta['classes']}); "
                             "train them with `deffiller baseline dfmgan train --class ...`")
    out_dir, side = Path(out_dir), int(meta["source_size"])
    if is_main_process():
        for folder in (out_dir / IMAGE_DIRS[0], out_dir / MASK_DIRS[0]):
            remove_stale_temps(folder)  # left by a run killed inside a write
    wait_for_everyone()
    device = device or resolve_device(config_of(meta, f"{model_dir}").device)
    todos = {label: [n for n in (f"{PREFIX_OF[label]}_{i}" for i in range(1, per_class + 1))
                     if not ((out_dir / IMAGE_DIRS[0] / f"{n}.bmp").is_file()
                             and (out_dir / MASK_DIRS[0] / f"{n}.png").is_file())] for label in classes}
    wait_for_everyone()  # every process has listed what is left before any writes
    lines, empty = [], 0
    for label, todo in todos.items():
        G, cfg = load_generator(model_dir, label, device)
        class_empty = 0
        chunks = my_share([todo[start : start + batch] for start in range(0, len(todo), batch)])
        for chunk in tqdm(chunks, desc=f"dfmgan {label}", disable=not (progress and is_main_process())):
            z, defect_z = (torch.stack(t).to(device) for t in zip(*(latents(n, seed, cfg.z_dim) for n in chunk)))
            images, masks = G(z, defect_z, truncation=truncation, noise_mode="const")
            for name, image, mask_logits in zip(chunk, images, masks):
                gray, mask = to_outputs(image, mask_logits, side)
                class_empty += not mask.any()
                save_image(out_dir / IMAGE_DIRS[0] / f"{name}.bmp", gray)
                save_image(out_dir / MASK_DIRS[0] / f"{name}.png", mask)
        class_empty = sum(gather([class_empty]))
        empty += class_empty
        lines.append(f"{label}: {len(todo)} new pairs ({per_class - len(todo)} kept), {class_empty} new masks empty")
    lines.append(f"DFMGAN masks and images in {out_dir}")
    return {"out_dir": out_dir, "lines": lines, "empty_masks": empty}
