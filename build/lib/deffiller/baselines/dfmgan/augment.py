"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable colour, translation and cutout on D's inputs.

DFMGAN uses StyleGAN2-ADA's adaptive augmentation; this re-implementation uses the simpler, fixed DiffAugment.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from deffiller.errors import DefFillerError


def color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) * 2) + mean  # saturation (no-op on grayscale)
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) + 0.5) + mean  # contrast


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by up to `ratio` of its size, filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :, None] + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[torch.arange(n, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of `ratio` of the size per sample, centred anywhere (it may be cut by the border)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None] - cy
    cols = torch.arange(w, device=x.device)[None, None, :] - cx
    keep = (rows < -(ch // 2)) | (rows >= ch - ch // 2) | (cols < -(cw // 2)) | (cols >= cw - cw // 2)
    return x * keep[:, None].to(x.dtype)


AUGMENTS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment:
    """Applies the comma-separated `policy` (e.g. "color,translation,cutout"); "" is the identity."""

    def __init__(self, policy: str):
        self.names = [p.strip() for p in policy.split(",") if p.strip()]
        unknown = sorted(set(self.names) - set(AUGMENTS))
        if unknown:
            raise DefFillerError(f"dfmgan.diffaugment={policy!r}: unknown op(s) {unknown}; known: {sorted(AUGMENTS)}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = AUGMENTS[name](x)
        return x
