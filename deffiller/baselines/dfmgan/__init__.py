"""DFMGAN (Duan et al., AAAI 2023) re-implemented in plain PyTorch: a defect-aware StyleGAN2 that draws
defect images together with their masks.

Stage 1 trains a StyleGAN2 on defect-free steel; stage 2 adds mask-gated defect residual blocks, a defect
mapping network and an image+mask discriminator, one model per class, with the backbone frozen.
Entry points: `train_dfmgan`, `generate_dfmgan` (imported on first use, so the CLI starts fast).
"""
import importlib

_EXPORTS = {"train_dfmgan": "train", "generate_dfmgan": "generate", "DFMGANConfig": "config"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
