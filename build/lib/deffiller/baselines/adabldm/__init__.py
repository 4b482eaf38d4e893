"""AdaBLDM (Li et al., arXiv 2402.19330) as its released code works, on diffusers.

A ControlNet on a frozen Stable Diffusion, trained per defect class on cut-and-paste composites with a
trimap hint; sampling by DDIM with free, latent-blended and pixel-blended steps onto a defect-free
background, then online adaptation of a copy of the VAE decoder per image.
"""
from deffiller.baselines.adabldm.config import AdaBLDMConfig
from deffiller.baselines.adabldm.generate import generate_adabldm
from deffiller.baselines.adabldm.train import train_adabldm

__all__ = ["AdaBLDMConfig", "generate_adabldm", "train_adabldm"]
