"""Procedural rolled-steel textures with inclusions, patches and scratches, in the SD-Saliency-900 layout.

The offline fallback when the real dataset is absent, and the source of test fixtures. Like the real
data, the rolling direction is vertical: streaks run top to bottom, inclusions are chains of small dark
spots elongated along it, patches are large dark irregular blotches on a bright grainy surface, and
scratches are thin long bright or dark lines. Every image draws from its own seeded generator, so a
file's bytes depend only on (seed, class, index).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deffiller.data.layout import CLASS_PREFIXES, DATASET_DIR, IMAGE_DIRS, MASK_DIRS
from deffiller.utils.io import save_image
from deffiller.utils.seeds import seeded_rng


def _smooth_noise(rng, shape, sigma) -> np.ndarray:
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return field / (field.std() + 1e-6)


def steel_background(rng, size: int, bright: bool = False) -> np.ndarray:
    """Float image: base level + vertical rolling streaks + grain + illumination gradient."""
    base = rng.uniform(150, 215) if bright else rng.uniform(80, 170)
    columns = _smooth_noise(rng, (1, size), rng.uniform(0.8, 3.0)) * rng.uniform(2, 7)
    streaks = np.repeat(columns, size, axis=0) + _smooth_noise(rng, (size, size), 1.0) * 0.5
    streaks = cv2.GaussianBlur(streaks, (1, 0), sigmaX=0.1, sigmaY=rng.uniform(6, 20))
    grain = rng.standard_normal((size, size)).astype(np.float32) * (rng.uniform(10, 22) if bright else rng.uniform(2, 5))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)) * rng.uniform(10, 40)
    return base + streaks + grain + gradient


def inclusion_mask(rng, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 3)):
        x = rng.uniform(0.15, 0.85) * size
        y = rng.uniform(0.05, 0.4) * size
        for _ in range(rng.integers(2, 7)):
            half_len, half_wid = rng.uniform(4, 14), rng.uniform(1.5, 4)
            cv2.ellipse(mask, (int(x), int(y)), (int(half_wid), int(half_len)), rng.uniform(-15, 15), 0, 360, 255, -1)
            x += rng.normal(0, 3)
            y += rng.uniform(15, 45)
            if y > size:
                break
    return mask


def patches_mask(rng, size: int) -> np.ndarray:
    field = _smooth_noise(rng, (size, size), rng.uniform(9, 16))
    stretched = cv2.resize(field[: size // 2], (size, size), interpolation=cv2.INTER_LINEAR)  # elongate vertically
    threshold = np.quantile(stretched, 1 - rng.uniform(0.08, 0.35))
    mask = (stretched > threshold).astype(np.uint8) * 255
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))


def scratches_mask(rng, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    vertical = rng.random() < 0.8
    for _ in range(rng.integers(1, 3)):
        start, end = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size
        lo, hi = sorted(rng.uniform(0, size, 2))
        lo, hi = (0, size) if rng.random() < 0.5 else (lo, max(hi, lo + size * 0.4))
        t = np.linspace(0, 1, 12)
        across = start + (end - start) * t * rng.uniform(0, 0.3) + np.cumsum(rng.normal(0, 0.6, t.size))
        along = lo + (hi - lo) * t
        points = np.stack([across, along] if vertical else [along, across], 1).astype(np.int32)
        cv2.polylines(mask, [points], False, 255, int(rng.integers(2, 6)))
    return mask


MASK_MAKERS = {"inclusion": inclusion_mask, "patches": patches_mask, "scratches": scratches_mask}


def synth_pair(label: str, index: int, seed: int, size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 HxW, mask uint8 HxW in {0,255}) for one sample."""
    rng = seeded_rng(seed, label, index)
    mask = MASK_MAKERS[label](rng, size)
    if not mask.any():  # every real mask has a defect
        cv2.circle(mask, (size // 2, size // 2), size // 20, 255, -1)
    image = steel_background(rng, size, bright=label == "patches")
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 1.2)
    if label == "inclusion":
        image -= soft * rng.uniform(30, 70)
    elif label == "patches":
        blotch = 0.6 + 0.4 * _smooth_noise(rng, (size, size), 3).clip(-1.5, 1.5) / 1.5
        image -= soft * rng.uniform(70, 120) * blotch
    else:
        image += soft * rng.uniform(35, 70) * (1 if rng.random() < 0.75 else -1)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), mask


def synthesize(out_dir, per_class: int = 4, seed: int = 0, size: int = 200) -> Path:
    """Write `per_class` pairs of each class as `out_dir/Source Images/<P>_<n>.bmp` + `Ground truth/<P>_<n>.png`."""
    out_dir = Path(out_dir)
    for prefix, label in CLASS_PREFIXES.items():
        for index in range(1, per_class + 1):
            image, mask = synth_pair(label, index, seed, size)
            save_image(out_dir / IMAGE_DIRS[0] / f"{prefix}_{index}.bmp", image)
            save_image(out_dir / MASK_DIRS[0] / f"{prefix}_{index}.png", mask)
    return out_dir


def default_dataset_dir(data_root) -> Path:
    return Path(data_root) / DATASET_DIR
