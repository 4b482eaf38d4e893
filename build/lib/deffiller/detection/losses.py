"""Loss pieces shared by the detectors. Every function takes LOGITS (B,1,H,W) and a {0,1} target and returns a scalar.

SSIM and IoU follow the BASNet hybrid loss the strip-steel detectors inherit (11x11 Gaussian window, sigma 1.5,
zero padding, C1 = 0.01^2, C2 = 0.03^2; IoU averaged over the images of the batch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target)


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - size // 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(like.shape[1], 1, size, size)


def ssim(prob: torch.Tensor, target: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two (B,C,H,W) maps in [0,1]."""
    window = _gaussian_window(window_size, sigma, prob)
    blur = lambda t: F.conv2d(t, window, padding=window_size // 2, groups=prob.shape[1])  # noqa: E731
    mu_p, mu_t = blur(prob), blur(target)
    var_p = blur(prob * prob) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(prob * target) - mu_p * mu_t
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim_map.mean()


def ssim_loss(logits: torch.Tensor, target: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    return 1 - ssim(torch.sigmoid(logits), target, window_size)


def iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    intersection = (prob * target).flatten(1).sum(1)
    union = (prob + target).flatten(1).sum(1) - intersection
    return (1 - intersection / union.clamp_min(1e-8)).mean()
