"""Config sections of the DefFiller model (`model`) and of the small VAE trained for the miniature profiles (`vae`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass
class ModelConfig:
    """Architecture (SD-1.4 / GLIGEN-sem in the paper profile) and where pretrained weights live."""

    SECTION: ClassVar[str] = "model"
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    attention_heads: int = 8
    norm_num_groups: int = 32
    cross_attention_dim: int = 768  # = text hidden size
    mask_resize: int = 256  # mask encoder input side; tokens = (mask_resize / 32)^2
    convnext_depths: tuple[int, ...] = (3, 3, 9, 3)  # ConvNeXt-T
    convnext_dims: tuple[int, ...] = (96, 192, 384, 768)
    mask_mlp_hidden: int = 512
    downsampler_channels: tuple[int, ...] = (16, 8)
    # the downsampler's input side is 4x the latent side (128 for 256 px images and an 8x VAE)
    text_layers: int = 12  # text encoder built from scratch (--init scratch); pretrained inits bring their own
    text_heads: int = 12
    text_intermediate: int = 3072
    max_length: int = 77  # prompt tokens
    sd_weights: str = "stable-diffusion-v1-4"  # diffusers SD folder, relative to paths.weights unless absolute
    gligen_weights: str = "gligen-generation-sem/diffusion_pytorch_model.bin"  # original GLIGEN checkpoint file
    sd_hub: str = "CompVis/stable-diffusion-v1-4"  # used only with hub_download when the local folder is absent
    gligen_hub: str = "gligen/gligen-generation-sem"
    hub_download: bool = False
    # --init sd: ImageNet weights of the mask encoder's ConvNeXt, as the official convnext_tiny(pretrained=True): a timm
    # pretrained name (convnext_tiny.fb_in1k: its file in the Hugging Face cache, fetched with hub_download); None =
    # random. The gligen init brings its own ConvNeXt; scratch stays random.
    convnext_weights: str | None = None
    convnext_weights_file: str | None = None  # a local file of those weights (relative to paths.weights); None = cache


@dataclass
class VAEConfig:
    """AutoencoderKL trained on the dataset's images for `--init scratch` (the pretrained inits use SD-1.4's)."""

    SECTION: ClassVar[str] = "vae"
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # len - 1 = log2 of the downsampling factor
    layers_per_block: int = 2
    norm_num_groups: int = 32
    latent_channels: int = 4
    max_steps: int = 20_000
    batch_size: int = 8
    lr: float = 1e-4
    kl_weight: float = 1e-6
    checkpoint_every: int = 2_000
