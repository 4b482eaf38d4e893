"""AdaBLDM's training pairs: real defects cut out, rotated, rescaled and pasted onto defect-free backgrounds.

The ControlNet hint is the trimap of the code (0 off-object, 127 object, 255 defect); steel is a texture
that fills the image, so it has two levels: 127 background, 255 defect.
"""
from __future__ import annotations


import cv2
import numpy as np
import torch

from deffiller.data.layout import Pair
from deffiller.data.masks import binarize
from deffiller.errors import DefFillerError
from deffiller.utils.io import read_image
from deffiller.utils.seeds import seeded_rng

BACKGROUND_LEVEL, DEFECT_LEVEL = 127, 255


def trimap(mask: np.ndarray) -> np.ndarray:
    """bool HxW defect mask -> uint8 hint HxW (127 background, 255 defect)."""
    return np.where(mask, DEFECT_LEVEL, BACKGROUND_LEVEL).astype(np.uint8)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """bool mask at `size`x`size`: area coverage > 1/2, or any coverage where that would leave nothing."""
    coverage = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return coverage > 0.5 if (coverage > 0.5).any() else coverage > 0


def _bbox(mask: np.ndarray) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def warp_defect(image: np.ndarray, mask: np.ndarray, angle: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The defect's bounding box rotated by `angle` degrees (canvas grown to hold it) and scaled; tight crop."""
    rows, cols = _bbox(mask)
    image, mask = image[rows, cols], mask[rows, cols].astype(np.uint8) * 255
    h, w = mask.shape
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    cos, sin = abs(rotation[0, 0]), abs(rotation[0, 1])
    new_w, new_h = max(1, int(round(h * sin + w * cos))), max(1, int(round(h * cos + w * sin)))
    rotation[:, 2] += (new_w - w) / 2, (new_h - h) / 2
    image = cv2.warpAffine(image, rotation, (new_w, new_h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(mask, rotation, (new_w, new_h), flags=cv2.INTER_LINEAR) > 127
    if not mask.any():  # a one-pixel defect can vanish under interpolation
        mask[new_h // 2, new_w // 2] = True
    rows, cols = _bbox(mask)
    return image[rows, cols], mask[rows, cols]


def paste_defect(background: np.ndarray, defect_image: np.ndarray, defect_mask: np.ndarray,
                 rng: np.random.Generator, scale_jitter: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """(composite, mask): the defect of (defect_image, defect_mask) at a random angle, scale and place.

    Pixels outside the returned mask are the background's. A warped defect larger than the background
    (long scratches at oblique angles) is cropped at a random offset instead of redrawn, so angles stay uniform.
    """
    angle, scale = rng.uniform(0, 360), 1 + rng.uniform(-scale_jitter, scale_jitter)
    patch, patch_mask = warp_defect(defect_image, defect_mask, angle, scale)
    height, width = background.shape[:2]
    dy, dx = (int(rng.integers(0, max(0, p - b) + 1)) for p, b in zip(patch_mask.shape, (height, width)))
    patch, patch_mask = patch[dy : dy + height, dx : dx + width], patch_mask[dy : dy + height, dx : dx + width]
    top = int(rng.integers(0, height - patch_mask.shape[0] + 1))
    left = int(rng.integers(0, width - patch_mask.shape[1] + 1))
    mask = np.zeros((height, width), bool)
    mask[top : top + patch_mask.shape[0], left : left + patch_mask.shape[1]] = patch_mask
    composite = background.copy()
    composite[mask] = patch[patch_mask]
    return composite, mask


class CompositeDataset(torch.utils.data.Dataset):
    """`n` composites of one class; item i is the same on every epoch (seeded by (seed, label, i)).

    Defect i comes from pair i mod len(pairs) and lands on background i mod len(backgrounds), as in the
    code's dataset preparation. Items: pixel_values (3,H,W) in [-1,1], hint (3,H,W) in [0,1], mask (1,H,W).
    """

    def __init__(self, pairs: list[Pair], backgrounds: list[np.ndarray], n: int, size: int, seed: int = 0,
                 scale_jitter: float = 0.15):
        self.backgrounds, self.n, self.size, self.seed, self.scale_jitter = backgrounds, n, size, seed, scale_jitter
        self.label = pairs[0].label
        self.defects = [self._load(p) for p in pairs]

    def _load(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        image, mask = read_image(pair.image, "L"), binarize(read_image(pair.mask, "L"))
        if not mask.any():
            raise DefFillerError(f"{pair.mask}: the mask has no defect pixel, so there is nothing to cut out; remove the pair")
        return cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA), resize_mask(mask, self.size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rng = seeded_rng(self.seed, self.label, i)
        image, mask = self.defects[i % len(self.defects)]
        composite, mask = paste_defect(self.backgrounds[i % len(self.backgrounds)], image, mask, rng, self.scale_jitter)
        rgb = torch.from_numpy(composite).float().div(127.5).sub(1.0).expand(3, -1, -1)
        return {
            "pixel_values": rgb.contiguous(),
            "hint": torch.from_numpy(trimap(mask)).float().div(255.0).expand(3, -1, -1).contiguous(),
            "mask": torch.from_numpy(mask).float()[None],
        }
