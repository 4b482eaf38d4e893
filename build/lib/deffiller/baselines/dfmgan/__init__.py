"""DFMGAN (Duan et al., AAAI 2023) re-implemented in plain PyTorch: a defect-aware StyleGAN2 that draws
defect images together with their masks.

Stage 1 trains a StyleGAN2 on defect-free steel; stage 2 adds mask-gated defect residual blocks, a defect
mapping network and an image+mask discriminator, one model per class, with the backbone frozen.
"""
from deffiller.baselines.dfmgan.config import DFMGANConfig
from deffiller.baselines.dfmgan.generate import generate_dfmgan
from deffiller.baselines.dfmgan.train import train_dfmgan

__all__ = ["DFMGANConfig", "generate_dfmgan", "train_dfmgan"]
