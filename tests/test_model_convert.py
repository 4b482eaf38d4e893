"""Pretrained weights: the original GLIGEN checkpoint layout (both directions, no silent drops) and SD-1.4 folders."""
from __future__ import annotations

import sys
import types

import pytest
import torch
from accelerate import init_empty_weights
from tiny_deffiller import tiny_parts, tiny_profile

from deffiller.errors import DefFillerError
from deffiller.models.build import build_unet
from deffiller.models.config import ModelConfig, VAEConfig
from deffiller.models.convert import (load_original_checkpoint, parts_from_gligen_checkpoint, save_original_gligen_checkpoint,
                                      save_sd_folder, sd_unet_like, to_original, unet_key_to_original)
from deffiller.training.parts import build_parts


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _from_checkpoint(profile, checkpoint):
    return parts_from_gligen_checkpoint(checkpoint, profile.section(ModelConfig), profile.section(VAEConfig),
                                        profile.data.image_size, profile.data.mask_channels, None)


def test_paper_unet_gets_the_official_gligen_names():
    """Names of GLIGEN's UNetModel listed in model-spec 4.3, produced from the paper-size diffusers model."""
    with init_empty_weights():
        unet = build_unet(ModelConfig(), image_size=256, mask_channels=152, factor=8)
    names = {unet_key_to_original(k, unet.config) for k in unet.state_dict()}
    assert len(names) == len(unet.state_dict())
    fusers = {n.split(".transformer_blocks")[0] for n in names if n.endswith("fuser.alpha_attn")}
    assert fusers == {f"input_blocks.{i}.1" for i in (1, 2, 4, 5, 7, 8)} | {"middle_block.1"} | \
        {f"output_blocks.{i}.1" for i in range(3, 12)}
    expected = {"input_blocks.0.0.weight", "time_embed.0.weight", "time_embed.2.bias", "out.0.weight", "out.2.bias",
                "input_blocks.3.0.op.weight", "input_blocks.9.0.op.bias", "output_blocks.2.1.conv.weight",
                "output_blocks.5.2.conv.weight", "output_blocks.8.2.conv.bias", "middle_block.2.out_layers.3.weight",
                "input_blocks.4.0.skip_connection.weight", "input_blocks.1.0.emb_layers.1.weight",
                "input_blocks.1.1.transformer_blocks.0.fuser.attn.to_out.0.bias",
                "output_blocks.11.1.transformer_blocks.0.fuser.ff.net.2.weight",
                "position_net.convnext_tiny_backbone.downsample_layers.0.1.weight",
                "position_net.convnext_tiny_backbone.downsample_layers.3.1.weight",
                "position_net.convnext_tiny_backbone.stages.2.8.pwconv2.weight",
                "position_net.convnext_tiny_backbone.stages.0.0.gamma", "position_net.pos_embedding",
                "position_net.null_feature", "position_net.linears.4.weight", "downsample_net.layers.2.weight"}
    assert expected <= names
    assert unet.state_dict()["conv_in.weight"].shape == (320, 12, 3, 3)


def test_gligen_checkpoint_round_trip_accounts_for_every_key(tmp_path):
    profile = tiny_profile(tmp_path)
    parts = tiny_parts(profile)
    path = save_original_gligen_checkpoint(parts, tmp_path / "gligen.bin")
    checkpoint = load_original_checkpoint(path)
    assert {"model", "autoencoder", "text_encoder", "diffusion", "config_dict"} <= checkpoint.keys()
    assert "encoder.mid.attn_1.q.weight" in checkpoint["autoencoder"]  # LDM VAE names, 1x1 conv shape
    assert checkpoint["autoencoder"]["encoder.mid.attn_1.q.weight"].ndim == 4
    assert "transformer.text_model.embeddings.position_ids" in checkpoint["text_encoder"]
    assert len(checkpoint["model"]) == len(parts.unet.state_dict())
    loaded = _from_checkpoint(profile, checkpoint)
    for ours, theirs in ((parts.unet, loaded.unet), (parts.vae, loaded.vae), (parts.text_encoder, loaded.text_encoder)):
        assert _states_equal(ours, theirs)
    assert loaded.vae.config.scaling_factor == parts.vae.config.scaling_factor
    again = save_original_gligen_checkpoint(loaded, tmp_path / "again.bin")
    second = load_original_checkpoint(again)
    for entry in ("model", "autoencoder", "text_encoder"):
        assert checkpoint[entry].keys() == second[entry].keys()
        assert all(torch.equal(checkpoint[entry][k], second[entry][k]) for k in checkpoint[entry])


def test_unknown_or_missing_keys_are_refused(tmp_path):
    profile = tiny_profile(tmp_path)
    checkpoint = load_original_checkpoint(save_original_gligen_checkpoint(tiny_parts(profile), tmp_path / "g.bin"))
    extra = {**checkpoint, "model": {**checkpoint["model"], "input_blocks.99.0.in_layers.0.weight": torch.zeros(1)}}
    with pytest.raises(DefFillerError, match=r"1 unknown key.*input_blocks\.99"):
        _from_checkpoint(profile, extra)
    short = {**checkpoint, "model": {k: v for k, v in checkpoint["model"].items() if "downsample_net" not in k}}
    with pytest.raises(DefFillerError, match=r"parameter\(s\) without weights.*downsampler"):
        _from_checkpoint(profile, short)
    with pytest.raises(DefFillerError, match="not a GLIGEN checkpoint"):
        _from_checkpoint(profile, {"state_dict": {}})
    wrong = tiny_profile(tmp_path, **{"data.mask_channels": 6})
    with pytest.raises(DefFillerError, match="shapes differ"):
        _from_checkpoint(wrong, checkpoint)


def test_checkpoint_with_an_omegaconf_config_loads_without_omegaconf(tmp_path, monkeypatch):
    fake = types.ModuleType("omegaconf")

    class DictConfig:
        def __init__(self, content):
            self.content = content

    DictConfig.__module__, DictConfig.__qualname__ = "omegaconf", "DictConfig"
    fake.DictConfig = DictConfig
    monkeypatch.setitem(sys.modules, "omegaconf", fake)
    torch.save({"model": {"a": torch.ones(2)}, "config_dict": DictConfig({"x": 1})}, tmp_path / "c.bin")
    monkeypatch.delitem(sys.modules, "omegaconf")
    loaded = load_original_checkpoint(tmp_path / "c.bin")
    assert torch.equal(loaded["model"]["a"], torch.ones(2)) and type(loaded["config_dict"]).__name__ == "_OmegaConfStub"
    (tmp_path / "bad.bin").write_bytes(b"garbage")
    with pytest.raises(DefFillerError, match="bad.bin"):
        load_original_checkpoint(tmp_path / "bad.bin")


REAL_LAYOUT = {"model.sd_weights": "stable-diffusion-v1-4",
               "model.gligen_weights": "gligen-generation-sem/diffusion_pytorch_model.bin"}


def test_absent_weights_name_the_file_and_where_to_put_it(tmp_path):
    profile = tiny_profile(tmp_path, **{"paths.weights": str(tmp_path / "weights"), **REAL_LAYOUT})
    with pytest.raises(DefFillerError, match=r"weights/gligen-generation-sem/diffusion_pytorch_model\.bin"):
        build_parts(profile, "gligen")
    with pytest.raises(DefFillerError, match=r"weights/stable-diffusion-v1-4"):
        build_parts(profile, "sd")


def test_init_gligen_and_sd_load_miniature_priors_from_the_weights_folder(tmp_path):
    weights = tmp_path / "weights"
    profile = tiny_profile(tmp_path, **{"paths.weights": str(weights), **REAL_LAYOUT})
    prior = tiny_parts(profile, seed=1)
    save_original_gligen_checkpoint(prior, weights / "gligen-generation-sem" / "diffusion_pytorch_model.bin")
    gligen = build_parts(profile, "gligen")
    assert _states_equal(gligen.unet, prior.unet) and _states_equal(gligen.vae, prior.vae)

    cfg = profile.section(ModelConfig)
    torch.manual_seed(2)
    sd_unet = sd_unet_like(cfg, profile.data.image_size, factor=4)
    save_sd_folder(sd_unet, prior.vae, prior.text_encoder, prior.tokenizer, weights / "stable-diffusion-v1-4")
    sd = build_parts(profile, "sd")
    conv = sd.unet.conv_in.weight.detach()
    assert torch.equal(conv[:, :4], sd_unet.conv_in.weight) and not conv[:, 4:].any()
    own, theirs = sd.unet.state_dict(), sd_unet.state_dict()
    assert all(torch.equal(own[k], v) for k, v in theirs.items() if k != "conv_in.weight")
    assert all(float(v) == 0 for k, v in own.items() if k.endswith(("alpha_attn", "alpha_dense")))
    assert _states_equal(sd.text_encoder, prior.text_encoder)
    assert sd.tokenizer("inclusion").input_ids == prior.tokenizer("inclusion").input_ids


def test_to_original_refuses_colliding_names():
    module = torch.nn.ModuleDict({"a": torch.nn.Linear(1, 1), "b": torch.nn.Linear(1, 1)})
    with pytest.raises(DefFillerError, match="two parameters"):
        to_original(module, lambda k: k.split(".", 1)[1])
