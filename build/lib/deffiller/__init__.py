"""DefFiller: mask-conditioned latent diffusion for steel-surface defect generation."""

__version__ = "0.1.0"

from deffiller.errors import DefFillerError  # noqa: E402

__all__ = ["DefFillerError", "__version__"]
