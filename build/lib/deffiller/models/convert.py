"""Pretrained weights: SD-1.4 (diffusers folder) and the original GLIGEN-sem checkpoint, in both directions.

The original checkpoint (`gligen-generation-sem/diffusion_pytorch_model.bin`, a GLIGEN trainer pickle) holds
`model` (LDM UNet names, with `position_net.*` and `downsample_net.*`), `autoencoder` (LDM VAE names) and
`text_encoder` (`transformer.text_model.*`), plus `diffusion`, `config_dict` and training state that carry no
weights we use. Every name is translated by one function per part (ours -> original); reading inverts it, and a
key that maps nowhere, or a parameter that receives nothing, is an error: nothing is dropped silently.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from deffiller.errors import DefFillerError
from deffiller.models.backbones import timm_file
from deffiller.models.build import DefFillerParts, build_unet, vae_factor, weights_path
from deffiller.models.config import ModelConfig, VAEConfig
from deffiller.models.text import offline_tokenizer
from deffiller.models.unet import DefFillerUNet
from deffiller.models.vae import build_vae
from deffiller.utils.io import atomic_path, recover_folder, staged_folder

SD_SCALING_FACTOR = 0.18215
# Entries of the original checkpoint that hold no weights of the model (noise schedule buffers, config, optimizer).
NON_WEIGHT_ENTRIES = ("diffusion", "config_dict", "opt", "scheduler", "iters", "scaler", "grounding_tokenizer_input")
TEXT_POSITION_IDS = "transformer.text_model.embeddings.position_ids"  # a buffer transformers now recomputes
RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
CONVNEXT_BLOCK = {"conv_dw": "dwconv", "norm": "norm", "mlp.fc1": "pwconv1", "mlp.fc2": "pwconv2", "gamma": "gamma"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str, table: dict) -> str:
    head, _, tail = rest.partition(".")
    return f"{table[head]}.{tail}"


def unet_key_to_original(key: str, config) -> str:
    """A DefFillerUNet parameter name -> its name in GLIGEN's `UNetModel` (model-spec 4.3)."""
    step = config.layers_per_block + 1
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * step + int(m[2])}.0.{_resnet(m[3], RESNET)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * step + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * step}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2], RESNET)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * step + int(m[2])}.0.{_resnet(m[3], RESNET)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * step + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        position = 2 if "CrossAttn" in config.up_block_types[int(m[1])] else 1
        return f"output_blocks.{int(m[1]) * step + step - 1}.{position}.conv.{m[2]}"
    if m := re.fullmatch(r"position_net\.backbone\.stem\.(\d+)\.(.+)", key):
        return f"position_net.convnext_tiny_backbone.downsample_layers.0.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"position_net\.backbone\.stages\.(\d+)\.downsample\.(\d+)\.(.+)", key):
        return f"position_net.convnext_tiny_backbone.downsample_layers.{m[1]}.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"position_net\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.(conv_dw|norm|mlp\.fc1|mlp\.fc2)\.(.+)", key):
        return f"position_net.convnext_tiny_backbone.stages.{m[1]}.{m[2]}.{CONVNEXT_BLOCK[m[3]]}.{m[4]}"
    if m := re.fullmatch(r"position_net\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.gamma", key):
        return f"position_net.convnext_tiny_backbone.stages.{m[1]}.{m[2]}.gamma"
    fixed = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
             "time_embedding.linear_2.": "time_embed.2.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
             "downsampler.": "downsample_net.", "position_net.": "position_net."}
    for ours, original in fixed.items():
        if key.startswith(ours) and "backbone" not in key:
            return original + key[len(ours):]
    raise DefFillerError(f"no GLIGEN name for UNet parameter {key!r}")


def vae_key_to_original(key: str, levels: int) -> str:
    """A diffusers AutoencoderKL name -> LDM's (`encoder.down.i.block.j`, `mid.attn_1.q`, ...)."""
    vae_resnet = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_resnet(m[3], vae_resnet)}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{_resnet(m[3], vae_resnet)}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_resnet(m[3], vae_resnet)}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)", key):
        return f"{m[1]}.mid.attn_1.{VAE_ATTENTION[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
        return f"{m[1]}.norm_out.{m[2]}"
    if re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out)\..+|(post_)?quant_conv\..+", key):
        return key
    raise DefFillerError(f"no LDM name for VAE parameter {key!r}")


def text_key_to_original(key: str) -> str:
    """CLIPTextModel name -> FrozenCLIPEmbedder's (transformers 5 drops the `text_model.` level of older versions)."""
    return f"transformer.text_model.{key.removeprefix('text_model.')}"


def _is_vae_attention_weight(original_key: str) -> bool:
    return bool(re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", original_key))


def to_original(module: torch.nn.Module, rename) -> dict[str, torch.Tensor]:
    """state dict of `module` under original names (1x1-conv shape for LDM's VAE attention projections)."""
    out = {}
    for key, value in module.state_dict().items():
        name = rename(key)
        if name in out:
            raise DefFillerError(f"two parameters map to the original name {name!r}")
        out[name] = value[..., None, None] if _is_vae_attention_weight(name) else value
    return out


def from_original(module: torch.nn.Module, state: dict, rename, what: str, ignored=()) -> None:
    """Load `state` (original names) into `module` strictly: every key used, every parameter filled, shapes equal."""
    names = {rename(key): key for key in module.state_dict()}
    converted, unexpected = {}, []
    for name, value in state.items():
        if name in ignored:
            continue
        if name not in names:
            unexpected.append(name)
            continue
        converted[names[name]] = value[..., 0, 0] if _is_vae_attention_weight(name) else value
    missing = sorted(set(names.values()) - set(converted))
    if unexpected or missing:
        raise DefFillerError(f"{what}: the checkpoint does not fit this architecture: {len(unexpected)} unknown key(s) "
                             f"{sorted(unexpected)[:6]}, {len(missing)} parameter(s) without weights {missing[:6]}; check "
                             f"the profile's `model`/`vae` sections against the checkpoint")
    expected = module.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in converted.items() if v.shape != expected[k].shape]
    if wrong:
        raise DefFillerError(f"{what}: shapes differ from this architecture (checkpoint vs model): {wrong[:4]}")
    module.load_state_dict(converted, strict=True)


class _OmegaConfStub:
    """Stands in for omegaconf objects in `config_dict`, so the checkpoint loads without omegaconf installed."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__["state"] = state


class _CheckpointUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] == "omegaconf":
            return _OmegaConfStub
        return super().find_class(module, name)


class _pickle_module:  # noqa: N801 - torch.load wants a module-like object with Unpickler
    Unpickler = _CheckpointUnpickler
    load = pickle.load


def load_original_checkpoint(path) -> dict:
    """The original GLIGEN checkpoint as a dict. Tries a weights-only load first; GLIGEN's own files also pickle
    their OmegaConf config, which is then read with stand-ins (only load checkpoints from sources you trust)."""
    path = Path(path)
    if not path.is_file():
        raise DefFillerError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    except (RuntimeError, EOFError, OSError) as exc:
        raise DefFillerError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module)
    except Exception as exc:  # any unpickling failure of a foreign file is a bad input
        raise DefFillerError(f"{path}: not a readable GLIGEN checkpoint ({type(exc).__name__}: {exc})") from exc


def _ldm_schedule_buffers(scheduler: DDPMScheduler) -> dict[str, torch.Tensor]:
    """LatentDiffusion's registered buffers (GLIGEN's `diffusion` entry) for the training noise schedule."""
    betas = scheduler.betas.double()
    alphas = 1 - betas
    cum = torch.cumprod(alphas, 0)
    prev = torch.cat([torch.ones(1, dtype=cum.dtype), cum[:-1]])
    posterior = betas * (1 - prev) / (1 - cum)
    buffers = {"betas": betas, "alphas_cumprod": cum, "alphas_cumprod_prev": prev, "sqrt_alphas_cumprod": cum.sqrt(),
               "sqrt_one_minus_alphas_cumprod": (1 - cum).sqrt(), "log_one_minus_alphas_cumprod": (1 - cum).log(),
               "sqrt_recip_alphas_cumprod": (1 / cum).sqrt(), "sqrt_recipm1_alphas_cumprod": (1 / cum - 1).sqrt(),
               "posterior_variance": posterior, "posterior_log_variance_clipped": posterior.clamp(min=1e-20).log(),
               "posterior_mean_coef1": betas * prev.sqrt() / (1 - cum),
               "posterior_mean_coef2": (1 - prev) * alphas.sqrt() / (1 - cum)}
    return {k: v.float() for k, v in buffers.items()}


def save_original_gligen_checkpoint(parts: DefFillerParts, path, scheduler: DDPMScheduler | None = None) -> Path:
    """Write `parts` as an original GLIGEN checkpoint (`model`, `autoencoder`, `text_encoder`, `diffusion`,
    `config_dict` as plain dicts, `iters`), the format of gligen-generation-sem's diffusion_pytorch_model.bin."""
    unet, vae = parts.unet, parts.vae
    scheduler = scheduler or DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    text = to_original(parts.text_encoder, text_key_to_original)
    text[TEXT_POSITION_IDS] = torch.arange(parts.text_encoder.config.max_position_embeddings)[None]
    cfg = unet.config
    checkpoint = {
        "model": to_original(unet, lambda k: unet_key_to_original(k, cfg)),
        "autoencoder": to_original(vae, lambda k: vae_key_to_original(k, len(vae.config.block_out_channels))),
        "text_encoder": text,
        "diffusion": _ldm_schedule_buffers(scheduler),
        "config_dict": {
            "model": {"params": {"model_channels": cfg.block_out_channels[0], "context_dim": cfg.cross_attention_dim,
                                 "num_res_blocks": cfg.layers_per_block, "num_heads": cfg.attention_heads}},
            "autoencoder": {"params": {"scale_factor": vae.config.scaling_factor, "embed_dim": vae.config.latent_channels}},
            "grounding_tokenizer_input": {"params": {"resize_input": cfg.mask_resize, "in_dim": cfg.mask_channels}},
        },
        "iters": 0,
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)


def _text_encoder_from_state(state: dict, heads: int) -> CLIPTextModel:
    """A CLIPTextModel shaped like the weights in `state` (original names); heads cannot be read from weights."""
    embed = state["transformer.text_model.embeddings.token_embedding.weight"]
    layers = 1 + max(int(m[1]) for k in state if (m := re.search(r"encoder\.layers\.(\d+)\.", k)))
    config = CLIPTextConfig(vocab_size=embed.shape[0], hidden_size=embed.shape[1], num_hidden_layers=layers,
                            num_attention_heads=heads,
                            intermediate_size=state["transformer.text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
                            max_position_embeddings=state["transformer.text_model.embeddings.position_embedding.weight"].shape[0])
    return CLIPTextModel(config)


def _scale_factor(checkpoint: dict) -> float:
    """The VAE latent scale from a plain-dict `config_dict` (ours); GLIGEN's own files use SD's 0.18215."""
    config = checkpoint.get("config_dict")
    try:
        return float(config["autoencoder"]["params"]["scale_factor"])
    except (TypeError, KeyError):
        return SD_SCALING_FACTOR


def parts_from_gligen_checkpoint(checkpoint: dict, cfg: ModelConfig, vae_cfg: VAEConfig, image_size: int,
                                 mask_channels: int, tokenizer: CLIPTokenizer | None, where: str = "checkpoint") -> DefFillerParts:
    """DefFiller parts from an original GLIGEN checkpoint dict; the architecture comes from the profile's sections."""
    missing = [k for k in ("model", "autoencoder", "text_encoder") if k not in checkpoint]
    if missing:
        raise DefFillerError(f"{where}: no {missing} entr{'y' if len(missing) == 1 else 'ies'}; not a GLIGEN checkpoint "
                             f"(it has {sorted(checkpoint)[:8]})")
    unknown = sorted(set(checkpoint) - {"model", "autoencoder", "text_encoder", *NON_WEIGHT_ENTRIES})
    if unknown:
        raise DefFillerError(f"{where}: unknown entries {unknown}; expected model/autoencoder/text_encoder "
                             f"(+ {', '.join(NON_WEIGHT_ENTRIES)})")
    vae = build_vae(vae_cfg, image_size)
    from_original(vae, checkpoint["autoencoder"], lambda k: vae_key_to_original(k, len(vae.config.block_out_channels)),
                  f"{where} [autoencoder]")
    vae.register_to_config(scaling_factor=_scale_factor(checkpoint))
    text_encoder = _text_encoder_from_state(checkpoint["text_encoder"], cfg.text_heads)
    from_original(text_encoder, checkpoint["text_encoder"], text_key_to_original, f"{where} [text_encoder]",
                  ignored=(TEXT_POSITION_IDS,))
    unet = build_unet(cfg, image_size, mask_channels, vae_factor(vae), vae.config.latent_channels,
                      text_encoder.config.hidden_size)
    from_original(unet, checkpoint["model"], lambda k: unet_key_to_original(k, unet.config), f"{where} [model]")
    if tokenizer is None:
        tokenizer = offline_tokenizer(cfg.max_length)
        if len(tokenizer) != text_encoder.config.vocab_size:
            raise DefFillerError(f"{where}: GLIGEN checkpoints carry no tokenizer and its text encoder has "
                                 f"{text_encoder.config.vocab_size} tokens; put the SD-1.4 folder (its tokenizer/) at "
                                 f"the profile's model.sd_weights")
    for module in (vae, text_encoder):
        module.requires_grad_(False).eval()
    return DefFillerParts(unet, vae, text_encoder, tokenizer, {"unet": where, "vae": where, "text_encoder": where})


def _local_or_hub(path: Path, cfg: ModelConfig, fetch, what: str, put: str) -> Path:
    if recover_folder(path).exists():
        return path
    if cfg.hub_download:
        try:
            return Path(fetch())
        except Exception as exc:  # offline, gated, or not found: one clear message with the local alternative
            raise DefFillerError(f"{what} not found at {path} and the download failed ({type(exc).__name__}); "
                                 f"{put}") from exc
    raise DefFillerError(f"{what} not found at {path}; {put} (or set model.hub_download: true on a machine online)")


def sd_folder(profile, cfg: ModelConfig) -> Path:
    from huggingface_hub import snapshot_download

    path = weights_path(profile, cfg.sd_weights)
    fetch = lambda: snapshot_download(cfg.sd_hub, allow_patterns=["model_index.json", "unet/*", "vae/*",  # noqa: E731
                                                                  "text_encoder/*", "tokenizer/*", "scheduler/*"])
    return _local_or_hub(path, cfg, fetch, "SD-1.4 weights",
                         f"put the diffusers folder of {cfg.sd_hub} (unet/, vae/, text_encoder/, tokenizer/) at {path}")


def load_gligen_parts(profile, cfg: ModelConfig) -> DefFillerParts:
    """`--init gligen`: the original GLIGEN-sem checkpoint (tokenizer from the SD folder when there is one)."""
    from huggingface_hub import hf_hub_download

    path = weights_path(profile, cfg.gligen_weights)
    file = _local_or_hub(path, cfg, lambda: hf_hub_download(cfg.gligen_hub, "diffusion_pytorch_model.bin"),
                         "GLIGEN-sem checkpoint", f"download diffusion_pytorch_model.bin of {cfg.gligen_hub} to {path}")
    sd = weights_path(profile, cfg.sd_weights)
    tokenizer = CLIPTokenizer.from_pretrained(sd / "tokenizer") if (sd / "tokenizer").is_dir() else None
    return parts_from_gligen_checkpoint(load_original_checkpoint(file), cfg, profile.section(VAEConfig),
                                        profile.data.image_size, profile.data.mask_channels, tokenizer, str(file))


def load_sd_parts(profile, cfg: ModelConfig) -> DefFillerParts:
    """`--init sd`: SD-1.4's UNet (conv_in widened 4 -> 4 + 8 with zeros), VAE, CLIP text encoder and tokenizer;
    fusers, mask encoder and downsampler start from their initialisation (gates at 0), the mask encoder's ConvNeXt
    from the ImageNet weights of `model.convnext_weights` when set."""
    folder = sd_folder(profile, cfg)
    missing = [p for p in ("unet", "vae", "text_encoder", "tokenizer") if not (folder / p).is_dir()]
    if missing:
        raise DefFillerError(f"{folder}: not a diffusers SD folder, missing {missing}")
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    sd_unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    unet = build_unet(cfg, profile.data.image_size, profile.data.mask_channels, vae_factor(vae),
                      vae.config.latent_channels, text_encoder.config.hidden_size)
    widen_and_load_sd_unet(unet, sd_unet.state_dict(), str(folder / "unet"))
    convnext = "random (model.convnext_weights: null)"
    if cfg.convnext_weights is not None:
        file = cfg.convnext_weights_file and weights_path(profile, cfg.convnext_weights_file)
        weights = timm_file(cfg.convnext_weights, file and str(file), cfg.hub_download)
        unet.position_net.load_backbone(weights, cfg.convnext_weights)
        convnext = weights.describe()
    tokenizer.model_max_length = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
    for module in (vae, text_encoder):
        module.requires_grad_(False).eval()
    return DefFillerParts(unet, vae, text_encoder, tokenizer, {"unet": f"{folder} (+ new fusers, mask encoder, "
                          f"downsampler)", "vae": str(folder), "text_encoder": str(folder),
                          "mask_encoder_convnext": convnext})


def widen_and_load_sd_unet(unet: DefFillerUNet, sd_state: dict, where: str) -> None:
    """Every SD UNet weight into `unet`; conv_in gets zero weights for the downsampler channels."""
    own = unet.state_dict()
    new = {k for k in own if ".fuser." in k or k.startswith(("position_net.", "downsampler."))}
    unexpected = sorted(set(sd_state) - set(own))
    missing = sorted(set(own) - new - set(sd_state))
    if unexpected or missing:
        raise DefFillerError(f"{where}: the SD UNet does not fit the profile's `model` section: unknown "
                             f"{unexpected[:6]}, missing {missing[:6]}")
    state = dict(sd_state)
    weight = state["conv_in.weight"]
    widened = torch.zeros_like(own["conv_in.weight"])
    if widened.shape[0] != weight.shape[0] or widened.shape[2:] != weight.shape[2:]:
        raise DefFillerError(f"{where}: conv_in {tuple(weight.shape)} does not fit {tuple(widened.shape)}")
    widened[:, : weight.shape[1]] = weight
    state["conv_in.weight"] = widened
    result = unet.load_state_dict(state, strict=False)
    if set(result.missing_keys) != new or result.unexpected_keys:
        raise DefFillerError(f"{where}: unexpected load result {result}")


def save_sd_folder(unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer,
                   folder, scheduler: DDPMScheduler | None = None) -> Path:
    """A diffusers SD folder (the layout of CompVis/stable-diffusion-v1-4) for `--init sd`, written atomically."""
    scheduler = scheduler or DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    with staged_folder(folder) as staging:
        for name, part in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder), ("tokenizer", tokenizer),
                           ("scheduler", PNDMScheduler.from_config(scheduler.config, skip_prk_steps=True, steps_offset=1))):
            part.save_pretrained(staging / name)
        (staging / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}\n')
    return Path(folder)


def sd_unet_like(cfg: ModelConfig, image_size: int, factor: int, latent_channels: int = 4) -> UNet2DConditionModel:
    """A plain SD UNet with the profile's dimensions: what a miniature SD-like prior is."""
    return UNet2DConditionModel(sample_size=image_size // factor, in_channels=latent_channels,
                                out_channels=latent_channels, block_out_channels=tuple(cfg.block_out_channels),
                                layers_per_block=cfg.layers_per_block, down_block_types=tuple(cfg.down_block_types),
                                up_block_types=tuple(cfg.up_block_types), attention_head_dim=cfg.attention_heads,
                                norm_num_groups=cfg.norm_num_groups, cross_attention_dim=cfg.cross_attention_dim)


__all__ = ["load_gligen_parts", "load_original_checkpoint", "load_sd_parts", "parts_from_gligen_checkpoint",
           "save_original_gligen_checkpoint", "save_sd_folder", "sd_unet_like"]
