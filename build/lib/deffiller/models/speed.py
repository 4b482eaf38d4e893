"""Run-time speed settings shared by training and sampling (config keys of the `train` and `sample` sections).

- `attention`: `sdpa` runs every attention (self, cross and the fusers' gated self-attention) through
  `F.scaled_dot_product_attention` (diffusers' `AttnProcessor2_0`); `explicit` computes softmax(QK^T/sqrt(d))V
  with separate matmuls (`AttnProcessor`), as the official LDM/GLIGEN code does. The two agree within float error.
- `mixed_precision` (no | bf16 | fp16) autocasts the forward passes on CUDA (a no-op on the CPU); `tf32` lets
  fp32 matmuls use TensorFloat-32 on CUDA. Neither is exact; both are off in the official code.
- `channels_last` memory format for the UNet's convolutions, `compile` = `torch.compile` of the UNet.
"""
from __future__ import annotations

import contextlib

import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from deffiller.errors import DefFillerError

ATTENTION = ("sdpa", "explicit")
MIXED_PRECISION = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def configure_unet(unet: torch.nn.Module, attention: str = "sdpa", channels_last: bool = False,
                   compile: bool = False) -> torch.nn.Module:
    """Set the attention implementation, memory format and compilation of `unet` in place; returns it."""
    if attention not in ATTENTION:
        raise DefFillerError(f"attention must be one of {ATTENTION}, got {attention!r}")
    unet.set_attn_processor(AttnProcessor2_0() if attention == "sdpa" else AttnProcessor())
    unet.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if compile:
        unet.compile()
    return unet


@contextlib.contextmanager
def precision(device, mixed_precision: str = "no", tf32: bool = False):
    """Autocast to `mixed_precision` and allow TF32 matmuls while inside, on CUDA only."""
    if mixed_precision not in MIXED_PRECISION:
        raise DefFillerError(f"mixed_precision must be one of {tuple(MIXED_PRECISION)}, got {mixed_precision!r}")
    if torch.device(device).type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        dtype = MIXED_PRECISION[mixed_precision]
        with torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
