"""The `adabldm` profile section: the released AdaBLDM code's settings (paper profile) and small ones."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deffiller.training.loop import LoopConfig


@dataclass
class AdaBLDMConfig(LoopConfig):
    """Optimisation settings not listed here (betas, grad_clip, mixed_precision, ...) are the shared loop's."""

    SECTION: ClassVar[str] = "adabldm"

    # SD-format diffusers folder, relative to paths.weights unless absolute; null: a random base (UNet, text encoder)
    # with the profile's `model` dimensions and the `vae` section's small VAE, built once into the model folder
    base: str | None = None
    prompt: str = "a steel surface with {label}"  # the code's "a {obj} with a {cate}"; same prompt to train and sample
    # defect-free backgrounds (SD-Saliency-900 has none)
    background: str = "inpaint"  # inpaint (cv2 Telea on the dilated mask) | clean_crops (largest defect-free square)
    background_dilate: int = 7  # px at source size: mask dilation before inpainting / crop search
    inpaint_radius: int = 5
    min_crop: int = 48  # px at source size: smaller clean squares are not used as backgrounds
    # ControlNet training on cut-and-paste composites
    composites: int = 20000  # composites per class (drawn on the fly, the same ones every epoch)
    scale_jitter: float = 0.15  # pasted defects are scaled by 1 +- this
    epochs: int = 10
    max_steps: int | None = None  # None: `epochs` passes over the composites; else at most this many steps
    batch_size: int = 4
    lr: float = 1e-5
    weight_decay: float = 0.01  # torch AdamW default, as the Lightning ControlLDM uses
    warmup_steps: int = 0  # the code trains at a constant rate from the first step
    cond_embedding_channels: tuple[int, ...] = (16, 32, 96, 256)  # ControlNet hint encoder; trailing ones kept to match the VAE factor
    checkpoint_every: int = 1000
    # sampling: DDIM, then blending by step fraction (code: free 0-25, latent 26-45, pixel >= 45 of 50)
    ddim_steps: int = 50
    eta: float = 0.0
    guidance_scale: float = 9.0
    latent_blend_from: float = 0.52
    pixel_blend_from: float = 0.9
    latent_dilate: int = 5  # square structuring element on the latent-size mask
    # online adaptation of a copy of the VAE decoder, per image
    adapt_steps: int = 200
    adapt_lr: float = 1e-4
    preservation: float = 100.0  # weight of the background term
    device: str = "auto"  # auto = cuda when available
