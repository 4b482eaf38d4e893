"""Broad synthetic "natural" scenes for pretraining the miniature stand-in priors of the small profiles.

The real priors (SD-1.4, GLIGEN-sem) learned natural images and ADE20K semantic maps; their stand-ins learn
colourful scenes of a few object kinds on varied backgrounds, captioned ("a red disc on grass"), with a
semantic map whose ids 1..3 mark the object kinds -- so, as with GLIGEN-sem's ADE ids 1-3, DefFiller later
reuses channels that the prior learned for unrelated content.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from deffiller.utils.seeds import seeded_rng

OBJECTS = ("disc", "block", "band")  # semantic ids 1, 2, 3
COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 200), "yellow": (220, 200, 40),
           "white": (235, 235, 235), "black": (25, 25, 25)}
BACKGROUNDS = ("sky", "grass", "sand", "wall")


def _background(rng, kind: str, size: int) -> np.ndarray:
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    noise = cv2.GaussianBlur(rng.standard_normal((size, size, 1)).astype(np.float32), (0, 0), 2)[..., None]
    base = {"sky": (90, 150, 230), "grass": (60, 140, 50), "sand": (210, 190, 140), "wall": (150, 130, 120)}[kind]
    image = np.array(base, np.float32) * (0.75 + 0.4 * (y if kind == "sky" else 1 - y)) + noise * 12
    return np.broadcast_to(image, (size, size, 3)).copy()


def scene(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray, str]:
    """(RGB uint8 HxWx3, semantic map int64 HxW with ids 0..3, caption)."""
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    image = _background(rng, background, size)
    semantic = np.zeros((size, size), np.int64)
    words = []
    for _ in range(rng.integers(1, 3)):
        kind = int(rng.integers(len(OBJECTS)))
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        mask = np.zeros((size, size), np.uint8)
        cx, cy = (int(v) for v in rng.uniform(0.2, 0.8, 2) * size)
        extent = int(rng.uniform(0.1, 0.25) * size)
        if kind == 0:
            cv2.circle(mask, (cx, cy), extent, 1, -1)
        elif kind == 1:
            cv2.rectangle(mask, (cx - extent, cy - extent), (cx + extent, cy + extent // 2), 1, -1)
        else:
            cv2.line(mask, (0, cy), (size, int(cy + rng.uniform(-0.3, 0.3) * size)), 1, max(2, extent // 3))
        image[mask.astype(bool)] = np.array(COLOURS[colour], np.float32) * rng.uniform(0.8, 1.1)
        semantic[mask.astype(bool)] = kind + 1
        words.append(f"a {colour} {OBJECTS[kind]}")
    caption = " and ".join(words) + f" on {background}"
    return np.clip(image, 0, 255).astype(np.uint8), semantic, caption


class SceneDataset(torch.utils.data.Dataset):
    """`n` seeded scenes; items like MaskImageDataset's: pixel_values in [-1,1], sem one-hot, prompt."""

    def __init__(self, n: int, size: int, mask_channels: int, seed: int = 0):
        self.n, self.size, self.mask_channels, self.seed = n, size, mask_channels, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        from deffiller.data.masks import one_hot

        image, semantic, caption = scene(seeded_rng(self.seed, i), self.size)
        return {
            "pixel_values": torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0,
            "mask": torch.from_numpy(semantic > 0).float()[None],
            "sem": one_hot(semantic, self.mask_channels),
            "label": -1,
            "prompt": caption,
            "name": f"scene_{i}",
        }
