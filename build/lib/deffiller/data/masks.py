"""Mask binarisation and the class encoding of the conditioning input.

Masks are binarised at >127 before the class is applied: the official code multiplies value/255 by the
class id and truncates, which labels anti-aliased edge pixels with the wrong class.
"""
from __future__ import annotations

import numpy as np
import torch

from deffiller.errors import DefFillerError


def binarize(mask: np.ndarray, threshold: int = 127) -> np.ndarray:
    """uint8 mask (HxW) -> bool foreground."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DefFillerError(f"mask must be a single-channel HxW image, got shape {mask.shape}")
    return mask > threshold


def is_binary(mask: np.ndarray) -> bool:
    values = np.unique(np.asarray(mask))
    return bool(np.isin(values, (0, 255)).all())


def class_map(foreground: np.ndarray, class_id: int) -> np.ndarray:
    """bool HxW foreground -> int64 HxW map with 0 background and `class_id` on the defect."""
    if class_id < 1:
        raise DefFillerError(f"class id must be >= 1 (0 is background), got {class_id}")
    return np.where(foreground, class_id, 0).astype(np.int64)


def one_hot(class_map_: torch.Tensor | np.ndarray, channels: int) -> torch.Tensor:
    """int (..., H, W) class map -> float one-hot (..., C, H, W)."""
    labels = torch.as_tensor(class_map_, dtype=torch.long)
    if labels.numel() and int(labels.max()) >= channels:
        raise DefFillerError(f"class id {int(labels.max())} does not fit in {channels} one-hot channels")
    encoded = torch.nn.functional.one_hot(labels, channels).to(torch.float32)
    return encoded.movedim(-1, -3)
