"""`DefFillerPipeline`: defect masks + class prompts -> defect images (paper eq. 5, model-spec 2.6 and 4.2).

Classifier-free guidance as in the official sampler: the conditional half sees the prompt and the mask tokens,
the unconditional half the empty prompt and the null grounding tokens; both halves keep the mask in `conv_in`
(the fusers always run, on null tokens in the unconditional half). `uncond_grounding="mask"` gives the paper's
eq. 5 instead: the unconditional half keeps the mask tokens f(e) too, so guidance amplifies only the prompt.
Each image draws its starting noise from its own generator and the samplers are deterministic, so an image does not
depend on the batch it was drawn in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler,
                       ImagePipelineOutput, PNDMScheduler)
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from deffiller.data.dataset import center_crop_resize
from deffiller.data.masks import class_map, one_hot
from deffiller.errors import DefFillerError
from deffiller.models.speed import configure_unet, precision
from deffiller.models.text import PromptCache
from deffiller.models.unet import DefFillerUNet

SCHEDULERS = ("pndm", "ddim", "dpm")
UNCOND_GROUNDING = (None, "mask")  # None = null tokens in the unconditional half (official sampler), mask = eq. 5
NON_BINARY_TOLERANCE = 0.05  # share of grey (neither ~black nor ~white) pixels tolerated in a mask (anti-aliasing)


@dataclass
class SampleConfig:
    SECTION: ClassVar[str] = "sample"
    scheduler: str = "pndm"  # pndm = PLMS (the official sampler) | ddim | dpm (DPM-Solver++)
    steps: int = 50
    guidance: float = 3.0
    batch_size: int = 8  # masks per batch
    device: str = "auto"  # auto = cuda if available
    uncond_grounding: str | None = None  # None = the official sampler | mask = paper eq. 5 (see the module docstring)
    # speed (deffiller/models/speed.py); the official code: explicit, false, false, no, false
    attention: str = "sdpa"  # sdpa | explicit
    batched_cfg: bool = True  # both guidance halves in one UNet call (false: two calls per step)
    cache_conditioning: bool = True  # class prompts' text states and each batch's grounding encoded once
    mixed_precision: str = "no"  # no | bf16 | fp16 autocast (CUDA only)
    tf32: bool = False  # TF32 matmuls (CUDA only)
    channels_last: bool = False
    compile: bool = False  # torch.compile the UNet (the first batch pays the compilation)


def guidance_form(uncond_grounding: str | None) -> str:
    """One sentence naming the guidance form a `sample.uncond_grounding` value produces (README and report)."""
    if uncond_grounding == "mask":
        return ("Guidance: the paper's eq. 5 (`sample.uncond_grounding: mask`): the unconditional branch keeps the "
                "mask tokens f(e); the official sampler would give it the null grounding tokens.")
    return ("Guidance: the official sampler (`sample.uncond_grounding: null`): the unconditional branch gets the null "
            "grounding tokens, where the paper's eq. 5 keeps the mask tokens f(e) (`mask`).")


def make_scheduler(name: str, config):
    """A sampler over the training noise schedule: PLMS as LDM's (skip_prk_steps, steps_offset 1), DDIM eta 0,
    or DPM-Solver++ (2nd order multistep)."""
    if name == "pndm":
        return PNDMScheduler.from_config(config, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    if name == "ddim":
        return DDIMScheduler.from_config(config, steps_offset=1, set_alpha_to_one=False, clip_sample=False)
    if name == "dpm":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2,
                                                       steps_offset=1)
    raise DefFillerError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS}")


def prepare_mask(mask, name: str = "mask") -> np.ndarray:
    """A mask image (HxW uint8 0..255, or bool) -> bool foreground, refusing images that are not masks."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DefFillerError(f"{name}: a mask must be a single-channel HxW image, got shape {mask.shape}")
    if mask.dtype == bool:
        return mask
    if mask.dtype != np.uint8:
        raise DefFillerError(f"{name}: mask must be uint8 (0/255) or bool, got {mask.dtype}")
    grey = np.mean((mask > 16) & (mask < 239))
    if grey > NON_BINARY_TOLERANCE:
        raise DefFillerError(f"{name}: not a binary mask ({grey:.0%} of its pixels are grey); give a black-background "
                             f"mask with the defect in white (0/255)")
    return mask > 127


def mask_at(mask: np.ndarray, size: int) -> np.ndarray:
    """bool mask -> bool size x size: centre crop to a square, nearest resize (as the training data)."""
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(center_crop_resize(image, size, Image.NEAREST)) > 127


class DefFillerPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, unet: DefFillerUNet, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                 scheduler, classes: tuple[str, ...] | list[str] = ("inclusion", "patches", "scratches")):
        super().__init__()
        self.register_modules(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        self.register_to_config(classes=list(classes))
        self.speed = SampleConfig()

    @property
    def image_size(self) -> int:
        return self.unet.config.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    def use_scheduler(self, name: str) -> None:
        self.scheduler = make_scheduler(name, self.scheduler.config)

    def use_speed(self, cfg: SampleConfig) -> "DefFillerPipeline":
        """Apply the speed settings of `cfg` (attention, memory format, compilation) and remember the per-call ones."""
        configure_unet(self.unet, cfg.attention, cfg.channels_last, cfg.compile)
        self.speed = cfg
        return self

    def encode_text(self, prompts: list[str], device) -> torch.Tensor:
        if not self.speed.cache_conditioning:
            return PromptCache(self.tokenizer, self.text_encoder)(prompts, device)
        if getattr(self, "_prompt_cache", None) is None or self._prompt_cache.text_encoder is not self.text_encoder:
            self._prompt_cache = PromptCache(self.tokenizer, self.text_encoder)
        return self._prompt_cache(prompts, device)

    def eps(self, latents, t, text, sem, grounded, grounding, guidance_scale: float) -> torch.Tensor:
        """Guided noise prediction e_u + w (e_c - e_u), with both halves in one UNet call or in two."""
        latent_in = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
        if self.speed.batched_cfg:
            eps_u, eps_c = self.unet(latent_in, t, text, sem, grounded, grounding=grounding).sample.float().chunk(2)
        else:
            halves = [None, None] if grounding is None else [tuple(g.chunk(2)[i] for g in grounding) for i in (0, 1)]
            eps_u, eps_c = (self.unet(x, t, c, s, m, grounding=g).sample.float() for x, c, s, m, g in
                            zip(latent_in.chunk(2), text.chunk(2), sem.chunk(2), grounded.chunk(2), halves))
        return eps_u + guidance_scale * (eps_c - eps_u)

    def conditioning(self, masks, classes) -> torch.Tensor:
        """(B, C, S, S) one-hot of the masks at the model's size; class k of `config.classes` is channel k+1."""
        if len(masks) != len(classes):
            raise DefFillerError(f"{len(masks)} masks but {len(classes)} classes; give one class per mask")
        unknown = sorted(set(classes) - set(self.config.classes))
        if unknown:
            raise DefFillerError(f"unknown class(es) {unknown}; this model knows {self.config.classes}")
        sems = [one_hot(class_map(mask_at(prepare_mask(m, f"mask {i}"), self.image_size),
                                  self.config.classes.index(c) + 1), self.unet.config.mask_channels)
                for i, (m, c) in enumerate(zip(masks, classes))]
        return torch.stack(sems)

    @torch.no_grad()
    def __call__(self, masks, classes, generator: list[torch.Generator] | torch.Generator | None = None,
                 num_inference_steps: int = 50, guidance_scale: float = 3.0, prompts: list[str] | None = None,
                 output_type: str = "np", return_dict: bool = True, uncond_grounding: str | None = None):
        """Images for `masks` (HxW uint8 0/255 or bool, any size) of classes `classes`; the prompt of a mask is its
        class name (the official training captions) unless `prompts` is given. One generator per mask makes the
        images independent of the batch. output_type: np (uint8 BxSxSx3), pil, or latent. `uncond_grounding`:
        None = null grounding tokens in the unconditional half (the official sampler), "mask" = eq. 5."""
        if num_inference_steps < 1:
            raise DefFillerError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if uncond_grounding not in UNCOND_GROUNDING:
            raise DefFillerError(f"uncond_grounding must be null (the official sampler) or 'mask' (eq. 5), "
                                 f"got {uncond_grounding!r}")
        device, dtype = self._execution_device, self.unet.dtype
        sem = self.conditioning(masks, classes).to(device, dtype)
        count = sem.shape[0]
        prompts = list(classes) if prompts is None else list(prompts)
        if len(prompts) != count:
            raise DefFillerError(f"{len(prompts)} prompts for {count} masks")
        generators = generator if isinstance(generator, list) else [generator] * count
        if len(generators) != count:
            raise DefFillerError(f"{len(generators)} generators for {count} masks; give one per mask")
        with precision(device, self.speed.mixed_precision, self.speed.tf32):
            text = self.encode_text([""] * count + prompts, device).to(dtype)
            sem2 = torch.cat([sem, sem])
            uncond = torch.ones(count) if uncond_grounding == "mask" else torch.zeros(count)
            grounded = torch.cat([uncond, torch.ones(count)]).to(device, dtype)
            grounding = self.unet.encode_grounding(sem2, grounded) if self.speed.cache_conditioning else None
            shape = (1, self.unet.config.latent_channels, self.unet.config.sample_size, self.unet.config.sample_size)
            latents = torch.cat([torch.randn(shape, generator=g, device=g.device if g is not None else "cpu",
                                             dtype=torch.float32) for g in generators]).to(device, dtype)
            self.scheduler.set_timesteps(num_inference_steps, device=device)
            latents = latents * self.scheduler.init_noise_sigma
            for t in self.progress_bar(self.scheduler.timesteps):
                eps = self.eps(latents, t, text, sem2, grounded, grounding, guidance_scale)
                latents = self.scheduler.step(eps.to(latents.dtype), t, latents).prev_sample
            if output_type != "latent":
                decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample.float()
        if output_type == "latent":
            images = latents
        else:
            images = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            if output_type == "pil":
                images = [Image.fromarray(image) for image in images]
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
