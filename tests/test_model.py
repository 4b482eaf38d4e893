"""DefFiller model: the official trainable set and parameter counts, shapes, null tokens, input checks."""
from __future__ import annotations

import pytest
import torch
from accelerate import init_empty_weights
from tiny_deffiller import tiny_parts, tiny_profile

from deffiller.errors import DefFillerError
from deffiller.models.build import build_unet
from deffiller.models.config import ModelConfig
from deffiller.training.deffiller import DefFillerTask, TrainConfig


def _one_hot(batch, channels, size, label=1):
    sem = torch.zeros(batch, channels, size, size)
    sem[:, 0] = 1
    sem[:, 0, size // 4 : size // 2, size // 4 : size // 2] = 0
    sem[:, label, size // 4 : size // 2, size // 4 : size // 2] = 1
    return sem


def test_paper_config_has_the_official_trainable_parameter_counts():
    """model-spec 2.2, computed from the official code: 16 fusers, PositionNet, downsampler, conv_in weight."""
    with init_empty_weights():
        unet = build_unet(ModelConfig(), image_size=256, mask_channels=152, factor=8)
    counts = {group: sum(p.numel() for p in params) for group, params in unet.trainable_groups().items()}
    assert counts == {"fusers": 208_018_272, "mask_encoder": 28_922_987, "downsampler": 40_984, "conv_in.weight": 34_560}
    assert sum(1 for name, _ in unet.named_modules() if name.endswith(".fuser")) == 16
    assert unet.conv_in.in_channels == 12 and unet.position_net.pos_embedding.shape == (1, 64, 768)


def test_trainable_set_is_fusers_mask_encoder_downsampler_and_conv_in_weight(tmp_path):
    task = DefFillerTask(tiny_parts(tiny_profile(tmp_path)), TrainConfig(gradient_checkpointing=False))
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    allowed = lambda n: (".fuser." in n or n.startswith(("unet.position_net.", "unet.downsampler."))  # noqa: E731
                         or n == "unet.conv_in.weight")
    assert trainable and all(allowed(n) for n in trainable)
    assert "unet.conv_in.bias" not in trainable
    assert not any(n.startswith(("vae.", "text_encoder.")) for n in trainable)
    fusers = {n.rsplit(".fuser.", 1)[0] for n in trainable if ".fuser." in n}
    assert all({f"{f}.fuser.alpha_attn", f"{f}.fuser.alpha_dense"} <= trainable for f in fusers)
    assert {n for n in trainable if "position_net.backbone.stages" in n}  # ConvNeXt is fine-tuned, not frozen
    assert {n for n, p in task.named_parameters() if allowed(n)} == trainable


def test_shapes_of_tokens_downsampler_and_prediction(tmp_path):
    profile = tiny_profile(tmp_path)
    unet = tiny_parts(profile).unet
    cfg, channels, size = unet.config, profile.data.mask_channels, profile.data.image_size
    sem = _one_hot(2, channels, size)
    tokens = unet.position_net(sem, torch.ones(2))
    assert tokens.shape == (2, (cfg.mask_resize // 32) ** 2, cfg.cross_attention_dim)
    assert unet.downsampler(sem).shape == (2, cfg.downsampler_channels[-1], cfg.sample_size, cfg.sample_size)
    latents = torch.randn(2, 4, cfg.sample_size, cfg.sample_size)
    out = unet(latents, torch.tensor([10, 900]), torch.randn(2, 16, cfg.cross_attention_dim), sem).sample
    assert out.shape == latents.shape


def test_null_input_replaces_mask_tokens_by_the_learned_null_feature(tmp_path):
    encoder = tiny_parts(tiny_profile(tmp_path)).unet.position_net
    a, b = _one_hot(1, 4, 64, label=1), _one_hot(1, 4, 64, label=3)
    null = lambda sem: encoder(sem, torch.zeros(1))  # noqa: E731
    assert torch.equal(null(a), null(b))
    assert torch.allclose(null(a)[0], encoder.linears(encoder.null_feature + encoder.pos_embedding[0]), atol=1e-6)
    assert not torch.allclose(encoder(a, torch.ones(1)), encoder(b, torch.ones(1)))


def test_mask_reaches_conv_in_even_with_null_tokens(tmp_path):
    unet = tiny_parts(tiny_profile(tmp_path)).unet
    cfg = unet.config
    latents, text = torch.randn(1, 4, cfg.sample_size, cfg.sample_size), torch.randn(1, 16, cfg.cross_attention_dim)
    with torch.no_grad():
        outs = [unet(latents, torch.tensor([500]), text, _one_hot(1, 4, 64, label=k), torch.zeros(1)).sample for k in (1, 3)]
    assert not torch.allclose(*outs)


def test_wrong_number_of_mask_channels_is_a_clear_error(tmp_path):
    unet = tiny_parts(tiny_profile(tmp_path)).unet
    cfg = unet.config
    with pytest.raises(DefFillerError, match="5 one-hot channels.*expects 4"):
        unet(torch.randn(1, 4, cfg.sample_size, cfg.sample_size), torch.tensor([1]),
             torch.randn(1, 16, cfg.cross_attention_dim), torch.zeros(1, 5, 64, 64))
