"""The mask producer (paper 4.4.1): a DDPM trained from scratch on the ground-truth masks at 64x64.

One class-conditional `UNet2DModel` (a learned class embedding added to the timestep embedding) draws the masks of
every class, where the paper's text leaves open whether it trained one model per class. Masks are binarised
(>127), area-resized to the model's resolution, binarised again and scaled to {-1, 1}; the UNet predicts the noise
(epsilon objective, as in DDPM) under a 1000-step linear beta schedule. `prediction: sample` makes it predict the clean
mask instead, which draws clean blobs after far fewer training steps (the smoke profile's short runs use it).
"""
from __future__ import annotations

from diffusers import DDPMScheduler, UNet2DModel

from deffiller.errors import DefFillerError


def build_unet(cfg, num_classes: int) -> UNet2DModel:
    """The class-conditional UNet of the `masks` section `cfg` (`deffiller.training.mask_ddpm.MaskDDPMConfig`)."""
    levels = range(len(cfg.block_out_channels))
    unknown = sorted(set(cfg.attention_levels) - set(levels))
    if unknown:
        raise DefFillerError(f"masks.attention_levels {unknown} do not exist; the UNet has levels {list(levels)}")
    if any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
        raise DefFillerError(f"masks.block_out_channels {list(cfg.block_out_channels)} must all be multiples of "
                             f"masks.norm_num_groups={cfg.norm_num_groups}")
    if cfg.resolution % 2 ** (len(cfg.block_out_channels) - 1):
        raise DefFillerError(f"masks.resolution={cfg.resolution} must be divisible by 2^{len(cfg.block_out_channels) - 1} "
                             f"for {len(cfg.block_out_channels)} UNet levels")
    return UNet2DModel(
        sample_size=cfg.resolution,
        in_channels=1,
        out_channels=1,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        down_block_types=tuple("AttnDownBlock2D" if i in cfg.attention_levels else "DownBlock2D" for i in levels),
        up_block_types=tuple("AttnUpBlock2D" if i in cfg.attention_levels else "UpBlock2D" for i in reversed(levels)),
        class_embed_type=None,
        num_class_embeds=num_classes,
    )


PREDICTIONS = ("epsilon", "sample")


def build_scheduler(cfg) -> DDPMScheduler:
    """The noise schedule of the `masks` section `cfg`, shared by training and sampling."""
    if cfg.prediction not in PREDICTIONS:
        raise DefFillerError(f"masks.prediction={cfg.prediction!r}; choose one of {list(PREDICTIONS)}")
    return DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction)
