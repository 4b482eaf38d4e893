"""Defect-free steel backgrounds, which AdaBLDM pastes defects onto and blends around.

SD-Saliency-900 has no defect-free images, so they are made from the defect images:
`inpaint` fills the dilated defect with OpenCV's Telea inpainting; `clean_crops` takes the largest
square that touches no (dilated) defect pixel and resizes it.
"""
from __future__ import annotations

import cv2
import numpy as np

from deffiller.data.layout import Pair
from deffiller.data.masks import binarize
from deffiller.errors import DefFillerError
from deffiller.utils.io import read_image

METHODS = ("inpaint", "clean_crops")


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """bool mask grown by `pixels` in every direction (square element)."""
    if pixels <= 0:
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * pixels + 1,) * 2, np.uint8)).astype(bool)


def inpaint(image: np.ndarray, mask: np.ndarray, dilation: int, radius: int) -> np.ndarray:
    """uint8 grayscale image with the dilated defect filled in from its surroundings."""
    return cv2.inpaint(image, dilate(mask, dilation).astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)


def largest_clean_square(mask: np.ndarray) -> tuple[int, int, int]:
    """(top, left, side) of the largest square free of `mask` pixels, side 0 when there is none."""
    clean = np.pad(~mask, 1).astype(np.uint8)  # the image border counts as an obstacle
    reach = cv2.distanceTransform(clean, cv2.DIST_C, 3)  # chessboard distance to the nearest obstacle
    y, x = np.unravel_index(int(np.argmax(reach)), reach.shape)
    half = int(reach[y, x]) - 1
    return y - 1 - half, x - 1 - half, 2 * half + 1 if reach[y, x] > 0 else 0


def clean_crop(image: np.ndarray, mask: np.ndarray, dilation: int, min_side: int) -> np.ndarray | None:
    top, left, side = largest_clean_square(dilate(mask, dilation))
    return image[top : top + side, left : left + side] if side >= min_side else None


def make_backgrounds(pairs: list[Pair], method: str, size: int, dilation: int = 7, radius: int = 5,
                     min_crop: int = 48) -> list[np.ndarray]:
    """Grayscale uint8 `size`x`size` defect-free backgrounds, one per usable pair."""
    if method not in METHODS:
        raise DefFillerError(f"adabldm.background={method!r}: choose one of {METHODS}")
    backgrounds = []
    for pair in pairs:
        image, mask = read_image(pair.image, "L"), binarize(read_image(pair.mask, "L"))
        if image.shape != mask.shape:
            raise DefFillerError(f"{pair.mask}: mask size {mask.shape} differs from its image's {image.shape}")
        clean = inpaint(image, mask, dilation, radius) if method == "inpaint" else clean_crop(image, mask, dilation, min_crop)
        if clean is not None:
            backgrounds.append(cv2.resize(clean, (size, size), interpolation=cv2.INTER_AREA))
    if not backgrounds:
        raise DefFillerError(
            f"no defect-free square of at least {min_crop} px in any of the {len(pairs)} images; "
            "use adabldm.background=inpaint or lower adabldm.min_crop"
        )
    return backgrounds
