"""StyleGAN2 losses (non-saturating logistic, R1, path length) and DFMGAN's mode-seeking loss on masks."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating: -log sigmoid(D(fake))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """Squared gradient norm of D at the real inputs, per sample (scaled by gamma / 2 by the caller)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3])


class PathLengthPenalty(nn.Module):
    """(|J_w^T y| - a)^2 for random image-space y, with a the running mean of the lengths."""

    def __init__(self, decay: float = 0.01):
        super().__init__()
        self.decay = decay
        self.register_buffer("mean", torch.zeros(()))

    def forward(self, images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        mean = self.mean.lerp(lengths.mean().detach(), self.decay)
        self.mean.copy_(mean)
        return (lengths - mean).square()


def mode_seeking_loss(w1: torch.Tensor, w2: torch.Tensor, mask1: torch.Tensor, mask2: torch.Tensor) -> torch.Tensor:
    """Distance of two defect styles over the distance of the masks they draw on the same backbone styles:
    minimising it pushes different defect codes to different masks."""
    return (w1 - w2).abs().mean() / ((mask1 - mask2).abs().mean() + 1e-8)
