"""Real samples for the two stages, as datasets the training loop draws its seeded batches from.

Stage 1 wants defect-free steel, which SD-Saliency-900 lacks: `clean_crops` takes square windows that touch no
(dilated) defect pixel and resizes them up; `all_images` uses the whole defect images as a steel-texture prior.
Stage 2 uses one class's image/mask pairs.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from deffiller.data.layout import Pair
from deffiller.data.masks import binarize
from deffiller.errors import DefFillerError
from deffiller.utils.io import read_image

CLEAN_STRIDE = 4  # px between candidate clean windows


def load_gray_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    image, mask = read_image(pair.image, "L"), binarize(read_image(pair.mask, "L"))
    if image.shape != mask.shape:
        raise DefFillerError(f"{pair.mask}: mask size {mask.shape[::-1]} differs from its image's {image.shape[::-1]}")
    return image, mask


def resize_gray(image: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interpolation)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """bool mask resized through its smoothed version (threshold 0.5), so edges are not blocky."""
    interpolation = cv2.INTER_AREA if mask.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=interpolation) >= 0.5


def to_tensor(gray: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(gray).float().div(127.5).sub(1.0)


def clean_windows(masks: list[np.ndarray], side: int, margin: int) -> np.ndarray:
    """[k, 4] rows (image index, top, left, side) of squares with no mask pixel within `margin` px."""
    rows = []
    element = np.ones((2 * margin + 1,) * 2, np.uint8)
    for i, mask in enumerate(masks):
        grown = cv2.dilate(mask.astype(np.uint8), element) if margin > 0 else mask.astype(np.uint8)
        if min(grown.shape) < side:
            continue
        table = cv2.integral(grown)  # table[y, x] = sum of grown[:y, :x]
        sums = table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]
        ys, xs = np.nonzero(sums[::CLEAN_STRIDE, ::CLEAN_STRIDE] == 0)
        rows += [(i, y * CLEAN_STRIDE, x * CLEAN_STRIDE, side) for y, x in zip(ys, xs)]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def centre_windows(images: list[np.ndarray]) -> np.ndarray:
    rows = []
    for i, image in enumerate(images):
        side = min(image.shape)
        rows.append((i, (image.shape[0] - side) // 2, (image.shape[1] - side) // 2, side))
    return np.array(rows, dtype=np.int64)


class WindowSampler(torch.utils.data.Dataset):
    """Stage-1 reals: windows of the images, resized to `resolution`; {"image": (1,R,R) in [-1,1]}, no masks."""

    def __init__(self, images: list[np.ndarray], windows: np.ndarray, resolution: int):
        self.images, self.windows, self.resolution = images, windows, resolution

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        i, top, left, side = self.windows[index]
        return {"image": to_tensor(resize_gray(self.images[i][top : top + side, left : left + side], self.resolution))[None]}


class PairSampler(torch.utils.data.Dataset):
    """Stage-2 reals: one class's images and masks at `resolution`; {"image", "mask"}, masks in {-1, 1}."""

    def __init__(self, pairs: list[Pair], resolution: int):
        loaded = [load_gray_pair(p) for p in pairs]
        self.images = torch.stack([to_tensor(resize_gray(image, resolution)) for image, _ in loaded])[:, None]
        masks = np.stack([resize_mask(mask, resolution) for _, mask in loaded])
        self.masks = torch.from_numpy(masks).float().mul(2).sub(1)[:, None]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "mask": self.masks[index]}


def stage1_sampler(pairs: list[Pair], source: str, resolution: int, crop_size: int, margin: int) -> tuple[WindowSampler, str]:
    """(sampler, one-line description of what stage 1 trains on)."""
    loaded = [load_gray_pair(p) for p in pairs]
    images = [image for image, _ in loaded]
    if source == "all_images":
        return WindowSampler(images, centre_windows(images), resolution), f"all_images: {len(images)} whole defect images"
    windows = clean_windows([mask for _, mask in loaded], crop_size, margin)
    if not len(windows):
        raise DefFillerError(
            f"no {crop_size} px square free of defects (margin {margin} px) in any of the {len(pairs)} images; "
            "lower dfmgan.clean_crop_size or set dfmgan.stage1_source: all_images"
        )
    used = len(np.unique(windows[:, 0]))
    return (WindowSampler(images, windows, resolution),
            f"clean_crops: {len(windows)} defect-free {crop_size} px windows from {used} of {len(images)} images")
