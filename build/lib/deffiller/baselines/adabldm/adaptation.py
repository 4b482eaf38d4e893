"""AdaBLDM's online adaptation: fine-tune a copy of the VAE decoder on one image so that decoding its latents
keeps the generated defect and reproduces the real background (which the latent round trip blurs)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL


def adaptation_loss(decoded: torch.Tensor, foreground: torch.Tensor, background: torch.Tensor, mask: torch.Tensor,
                    preservation: float) -> torch.Tensor:
    """MSE(fg*m) + preservation * MSE(bg*(1-m)), means over all pixels as in the code."""
    keep = 1 - mask
    return F.mse_loss(decoded * mask, foreground * mask) + preservation * F.mse_loss(decoded * keep, background * keep)


def adapt_decoder(vae: AutoencoderKL, latents: torch.Tensor, background: torch.Tensor, mask: torch.Tensor,
                  steps: int, lr: float, preservation: float = 100.0) -> torch.Tensor:
    """Decode `latents` (scaled, as sampled) with a decoder copy adapted for `steps` AdamW steps; `vae` is not changed.

    The foreground target is the plain decoding of `latents`; background (B,3,H,W) in [-1,1]; mask 1 = defect.
    As in the code, only the decoder is optimised (post_quant_conv stays fixed).
    """
    z = latents.detach() / vae.config.scaling_factor
    with torch.no_grad():
        if vae.post_quant_conv is not None:
            z = vae.post_quant_conv(z)
        foreground = vae.decoder(z)
    if steps <= 0:
        return foreground
    decoder = copy.deepcopy(vae.decoder).requires_grad_(True).train()
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            adaptation_loss(decoder(z), foreground, background, mask, preservation).backward()
            optimizer.step()
    with torch.no_grad():
        return decoder.eval()(z)
