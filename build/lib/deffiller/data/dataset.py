"""Mask/image pairs as a torch Dataset for the generators (DefFiller, baselines)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from deffiller.data.layout import Pair
from deffiller.data.masks import binarize, class_map, one_hot
from deffiller.errors import DefFillerError
from deffiller.utils.io import read_image


def center_crop_resize(image: Image.Image, size: int, resample) -> Image.Image:
    """Centre-crop to the shorter side, then resize to `size` (the official preprocessing)."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), resample)


def load_pair_arrays(pair: Pair, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image HxWx3, bool mask HxW) at `size`, checked for matching sizes."""
    image, mask = read_image(pair.image, "RGB"), read_image(pair.mask, "L")
    if image.shape[:2] != mask.shape:
        raise DefFillerError(
            f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {pair.image.name} is "
            f"{image.shape[1]}x{image.shape[0]}; masks must have the image's size"
        )
    image = center_crop_resize(Image.fromarray(image), size, Image.BICUBIC)
    mask = center_crop_resize(Image.fromarray(binarize(mask).astype(np.uint8) * 255), size, Image.NEAREST)
    return np.asarray(image), np.asarray(mask) > 127


class MaskImageDataset(torch.utils.data.Dataset):
    """Items: pixel_values (3,H,W) in [-1,1], mask (1,H,W) in {0,1}, sem (C,H,W) one-hot, label, prompt, name.

    `classes` orders the class names; class k (0-based) is one-hot channel k+1, channel 0 is background.
    Horizontal flips are joint on image and mask and draw from torch's global RNG, so a resumed run
    (which restores that RNG state) flips the same items.
    """

    def __init__(self, pairs: list[Pair], classes, size: int, mask_channels: int, hflip: bool = False):
        self.pairs, self.classes, self.size = list(pairs), tuple(classes), size
        self.mask_channels, self.hflip = mask_channels, hflip
        if mask_channels < len(self.classes) + 1:
            raise DefFillerError(f"mask_channels={mask_channels} is too small for {len(self.classes)} classes + background")
        unknown = sorted({p.label for p in self.pairs} - set(self.classes))
        if unknown:
            raise DefFillerError(f"unknown class(es) {unknown}; known classes: {list(self.classes)}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        pair = self.pairs[i]
        image, mask = load_pair_arrays(pair, self.size)
        if self.hflip and torch.rand(()) < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        label = self.classes.index(pair.label)
        return {
            "pixel_values": torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 127.5 - 1.0,
            "mask": torch.from_numpy(mask.copy()).float()[None],
            "sem": one_hot(class_map(mask, label + 1), self.mask_channels),
            "label": label,
            "prompt": pair.label,
            "name": pair.name,
        }
