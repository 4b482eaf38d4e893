"""AdaBLDM's editing diffusion: DDIM with free steps, then latent blending, then pixel blending.

Step i of n (0-based) is
- free while i < latent_from * n;
- latent-blended while latent_from * n <= i <= pixel_from * n: before the step, latents outside the
  (latent-size, dilated) defect mask are replaced by the background latent noised to t;
- pixel-blended when i >= pixel_from * n: after the step, pred_x0 is decoded, its background pixels are
  replaced by the background image's, and the result is re-encoded and re-noised.
The code re-noises to the step's own t; here it is noised to the next step's t (none after the last step),
the level the sampler is at, so the final latent carries no leftover noise.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from diffusers import ControlNetModel

from deffiller.baselines.adabldm.base import BaseModel


def latent_mask(mask: np.ndarray, latent_size: int, dilation: int) -> np.ndarray:
    """bool pixel mask -> bool latent-size mask (nearest), dilated by a dilation x dilation square as in the code."""
    small = cv2.resize(mask.astype(np.uint8), (latent_size, latent_size), interpolation=cv2.INTER_NEAREST)
    if dilation > 1:
        small = cv2.dilate(small, np.ones((dilation, dilation), np.uint8))
    return small.astype(bool)


def composite(foreground: torch.Tensor, background: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`foreground` where mask is 1, `background` elsewhere (mask (B,1,H,W) in {0,1})."""
    return torch.where(mask.bool(), foreground, background)


def blend_schedule(steps: int, latent_from: float, pixel_from: float) -> tuple[int, int]:
    return round(latent_from * steps), round(pixel_from * steps)


@torch.no_grad()
def blended_sample(base: BaseModel, controlnet: ControlNetModel, prompt_embeds: torch.Tensor, empty_embeds: torch.Tensor,
                   hint: torch.Tensor, background: torch.Tensor, mask: torch.Tensor, mask_latent: torch.Tensor, *,
                   steps: int, guidance_scale: float, latent_from: float, pixel_from: float, eta: float = 0.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Latents (B,C,h,w) of the edited images.

    hint (B,3,H,W) in [0,1]; background (B,3,H,W) in [-1,1]; mask (B,1,H,W) and mask_latent (B,1,h,w) in {0,1}
    (1 = defect). The ControlNet sees the empty prompt and the UNet the class prompt, as in the code; the
    unconditional branch gives the UNet the empty prompt and keeps the hint, so both branches share one
    ControlNet pass.
    """
    scheduler = base.ddim_scheduler()
    scheduler.set_timesteps(steps, device=base.device)
    timesteps = scheduler.timesteps
    z_background = base.encode(background, generator)
    latents = torch.randn(z_background.shape, generator=generator, device=base.device) * scheduler.init_noise_sigma
    latent_start, pixel_start = blend_schedule(len(timesteps), latent_from, pixel_from)
    text = torch.cat([prompt_embeds, empty_embeds])

    def noised(z, t):
        return scheduler.add_noise(z, torch.randn(z.shape, generator=generator, device=z.device), t.reshape(1))

    for i, t in enumerate(timesteps):
        if latent_start <= i <= pixel_start:
            latents = composite(latents, noised(z_background, t), mask_latent)
        down, mid = controlnet(latents, t, encoder_hidden_states=empty_embeds, controlnet_cond=hint, return_dict=False)
        eps_cond, eps_uncond = base.unet(
            latents.repeat(2, 1, 1, 1), t, encoder_hidden_states=text,
            down_block_additional_residuals=[r.repeat(2, 1, 1, 1) for r in down],
            mid_block_additional_residual=mid.repeat(2, 1, 1, 1),
        ).sample.chunk(2)
        eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        out = scheduler.step(eps, t, latents, eta=eta, generator=generator)
        latents = out.prev_sample
        if i >= pixel_start:
            pixels = composite(base.decode(out.pred_original_sample), background, mask)
            latents = base.encode(pixels, generator)
            if i + 1 < len(timesteps):
                latents = noised(latents, timesteps[i + 1])
    return latents
