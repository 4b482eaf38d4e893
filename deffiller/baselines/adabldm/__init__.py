"""AdaBLDM (Li et al., arXiv 2402.19330) as its released code works, on diffusers.

A ControlNet on a frozen Stable Diffusion, trained per defect class on cut-and-paste composites with a
trimap hint; sampling by DDIM with free, latent-blended and pixel-blended steps onto a defect-free
background, then online adaptation of a copy of the VAE decoder per image.
Entry points: `train_adabldm`, `generate_adabldm` (imported on first use, so the CLI starts fast).
"""
import importlib

_EXPORTS = {"train_adabldm": "train", "generate_adabldm": "generate", "AdaBLDMConfig": "config"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
