"""AdaBLDM baseline on a tiny random SD folder and synthetic data (CPU, seconds)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deffiller.baselines.adabldm.adaptation import adapt_decoder
from deffiller.baselines.adabldm.backgrounds import largest_clean_square, make_backgrounds
from deffiller.baselines.adabldm.base import BaseModel, check_base
from deffiller.baselines.adabldm.config import AdaBLDMConfig
from deffiller.baselines.adabldm.composites import CompositeDataset, paste_defect, trimap
from deffiller.baselines.adabldm.sampler import blended_sample, composite, latent_mask
from deffiller.data.layout import load_pairs
from deffiller.data.masks import binarize
from deffiller.errors import DefFillerError
from deffiller.utils.io import read_image, save_image

SIZE = 64


def write_tiny_sd(folder):
    """A random SD-format diffusers folder: 8x VAE, 2-block UNet, 1-layer CLIP text model, byte-level CLIP tokenizer."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    chars = [chr(c) for c in range(33, 127)]
    vocab = {token: i for i, token in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16).save_pretrained(folder / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4, max_position_embeddings=16, bos_token_id=len(vocab) - 2,
                                 eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1)).save_pretrained(folder / "text_encoder")
    UNet2DConditionModel(sample_size=SIZE // 8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                         cross_attention_dim=32, attention_head_dim=4).save_pretrained(folder / "unet")
    AutoencoderKL(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, latent_channels=4,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  sample_size=SIZE).save_pretrained(folder / "vae")
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                  set_alpha_to_one=False, skip_prk_steps=True).save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="module")
def base(tiny_sd):
    return BaseModel.load(tiny_sd)


def test_largest_clean_square_avoids_mask():
    mask = np.zeros((50, 50), bool)
    mask[:, 20:23] = True  # a vertical scratch splits the image into 20 and 27 px wide strips
    top, left, side = largest_clean_square(mask)
    assert side == 27 and left == 23 and 0 <= top <= 50 - side
    assert not mask[top : top + side, left : left + side].any()


@pytest.mark.parametrize("method", ["inpaint", "clean_crops"])
def test_backgrounds_have_no_defect_left(synth_dataset, method):
    pairs = [p for p in load_pairs(synth_dataset) if p.label == "inclusion"]
    backgrounds = make_backgrounds(pairs, method, SIZE, min_crop=24)
    assert backgrounds and all(b.shape == (SIZE, SIZE) and b.dtype == np.uint8 for b in backgrounds)
    if method == "inpaint":
        image, mask = read_image(pairs[0].image, "L"), binarize(read_image(pairs[0].mask, "L"))
        inpainted = make_backgrounds(pairs[:1], method, image.shape[0])[0]
        # synthetic inclusions are dark: the filled region is no longer darker than its surroundings
        assert inpainted[mask].mean() > image[mask].mean() + 10
        assert abs(float(inpainted[mask].mean()) - float(image[~mask].mean())) < 15


def test_composite_puts_defect_pixels_only_inside_mask(synth_dataset):
    pair = next(p for p in load_pairs(synth_dataset) if p.label == "scratches")
    image, mask = read_image(pair.image, "L"), binarize(read_image(pair.mask, "L"))
    background = np.full((120, 120), 7, np.uint8)  # a value no defect pixel has after the +-scale warp
    for seed in range(6):
        out, out_mask = paste_defect(background, image, mask, np.random.default_rng(seed))
        assert out.shape == background.shape and out_mask.any()
        assert (out[~out_mask] == 7).all()
        assert (out[out_mask] != 7).mean() > 0.9
    hint = trimap(out_mask)
    assert set(np.unique(hint)) == {127, 255} and (hint[out_mask] == 255).all()


def test_composite_dataset_is_repeatable(synth_dataset):
    pairs = [p for p in load_pairs(synth_dataset) if p.label == "patches"]
    dataset = CompositeDataset(pairs, make_backgrounds(pairs, "inpaint", SIZE), n=5, size=SIZE, seed=3)
    a, b = dataset[2], dataset[2]
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and not torch.equal(a["hint"], dataset[3]["hint"])
    assert a["pixel_values"].shape == (3, SIZE, SIZE) and a["hint"].shape == (3, SIZE, SIZE)
    assert torch.equal(a["hint"][0] == 1.0, a["mask"][0] == 1.0)


def test_latent_mask_is_downsampled_and_dilated():
    mask = np.zeros((64, 64), bool)
    mask[32:40, 32:40] = True
    small = latent_mask(mask, 8, dilation=5)
    assert small.shape == (8, 8) and small[4, 4] and small[2:7, 2:7].all() and small.sum() == 25


def test_pixel_composite_is_exact_outside_mask():
    foreground, background = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16)
    mask = (torch.rand(1, 1, 16, 16) > 0.7).float()
    out = composite(foreground, background, mask)
    keep = (mask == 0).expand_as(out)
    assert torch.equal(out[keep], background[keep]) and torch.equal(out[~keep], foreground[~keep])


def _inputs(base, seed=0):
    g = torch.Generator().manual_seed(seed)
    background = torch.rand(1, 3, SIZE, SIZE, generator=g) * 0.1 + torch.linspace(-0.5, 0.5, SIZE)  # a lit, grainy surface
    mask_np = np.zeros((SIZE, SIZE), bool)
    mask_np[20:36, 24:32] = True
    mask = torch.from_numpy(mask_np).float()[None, None]
    mask_latent = torch.from_numpy(latent_mask(mask_np, SIZE // base.vae_factor, 5)).float()[None, None]
    hint = torch.from_numpy(trimap(mask_np)).float().div(255)[None, None].expand(-1, 3, -1, -1)
    return background, mask, mask_latent, hint


def test_decoder_adaptation_leaves_the_vae_bit_identical(base):
    background, mask, *_ = _inputs(base)
    before = {k: v.clone() for k, v in base.vae.state_dict().items()}
    latents = torch.randn(1, 4, SIZE // 8, SIZE // 8)
    plain = adapt_decoder(base.vae, latents, background, mask, steps=0, lr=1e-3)
    adapted = adapt_decoder(base.vae, latents, background, mask, steps=5, lr=1e-3)
    after = base.vae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in base.vae.parameters())
    assert not torch.allclose(plain, adapted)


def test_blending_and_adaptation_restore_the_background(base):
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(8, 8, 16, 16)).eval()
    background, mask, mask_latent, hint = _inputs(base)
    text, empty = base.embed(["a steel surface with scratches"]), base.embed([""])
    latents = blended_sample(base, controlnet, text, empty, hint, background, mask, mask_latent, steps=6,
                             guidance_scale=9.0, latent_from=0.34, pixel_from=0.67, generator=torch.Generator().manual_seed(0))
    keep = (mask == 0).expand_as(background)
    plain = adapt_decoder(base.vae, latents, background, mask, steps=0, lr=1e-3)
    adapted = adapt_decoder(base.vae, latents, background, mask, steps=60, lr=3e-3)
    error_plain = (plain - background)[keep].abs().mean()
    error_adapted = (adapted - background)[keep].abs().mean()
    print(f"background error: plain decoder {error_plain:.3f}, adapted {error_adapted:.3f}")
    # a random VAE cannot reconstruct anything; the adapted decoder reproduces the background
    assert error_adapted < 0.3 * error_plain and error_adapted < 0.06


def test_missing_base_folder_is_a_clear_error(tmp_path, tiny_sd):
    with pytest.raises(DefFillerError, match="base model folder not found"):
        check_base(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    (partial / "unet").mkdir(parents=True)
    with pytest.raises(DefFillerError, match=r"missing \['vae', 'text_encoder', 'tokenizer', 'scheduler'\]"):
        check_base(partial)


def test_training_step_updates_only_the_controlnet(base):
    from deffiller.baselines.adabldm.train import ControlNetTask, build_controlnet

    controlnet = build_controlnet(base, AdaBLDMConfig())
    task = ControlNetTask(base, controlnet, base.embed(["x"]), base.embed([""]))
    frozen = {name: p.clone() for name, p in [*base.unet.named_parameters(), *base.vae.named_parameters(),
                                              *base.text_encoder.named_parameters()]}
    before = {name: p.clone() for name, p in controlnet.named_parameters()}
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=1e-3, weight_decay=0.0)  # only gradients move weights
    background, mask, _, hint = _inputs(base)
    batch = {"pixel_values": background, "hint": hint}
    for step in range(2):  # the zero convolutions only let gradients reach the rest of the ControlNet after one step
        optimizer.zero_grad()
        task(batch, torch.Generator().manual_seed(step)).backward()
        optimizer.step()
    changed = [name for name, p in controlnet.named_parameters() if not torch.equal(p, before[name])]
    assert any("zero_conv" in n or "controlnet_down_blocks" in n for n in changed)
    assert any(n.startswith("down_blocks") for n in changed)
    current = dict([*base.unet.named_parameters(), *base.vae.named_parameters(), *base.text_encoder.named_parameters()])
    assert all(torch.equal(current[name], value) for name, value in frozen.items())
    assert all(p.grad is None for p in current.values())


def test_train_then_generate_pairs_images_with_masks(tmp_path, synth_dataset, tiny_sd):
    from deffiller.baselines.adabldm import generate_adabldm, train_adabldm
    from deffiller.config import load_profile

    profile = load_profile("tiny", {"paths.outputs": str(tmp_path / "outputs"), "data.per_class": 3})
    summary = train_adabldm(profile, data=synth_dataset, base=tiny_sd, out_dir=tmp_path / "model",
                            classes=["inclusion", "scratches"], progress=False)
    assert summary["classes"] == ["inclusion", "scratches"] and "backgrounds: inpaint" in summary["lines"][0]
    log = [json.loads(line) for line in (tmp_path / "model" / "inclusion" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in log)
    assert not (tmp_path / "model" / "inclusion" / "checkpoints").exists()

    masks = tmp_path / "masks"
    masks.mkdir()
    for name in ("In_3", "Sc_7"):
        mask = np.zeros((200, 200), np.uint8)
        mask[60:120, 90:110] = 255
        save_image(masks / f"{name}.png", mask)
    out = generate_adabldm(tmp_path / "model", masks, tmp_path / "gen", seed=1, progress=False)["out_dir"]
    for name in ("In_3", "Sc_7"):
        image, gt = read_image(out / "Source Images" / f"{name}.bmp"), read_image(out / "Ground truth" / f"{name}.png")
        assert image.shape == gt.shape == (200, 200)
        assert np.array_equal(gt > 127, read_image(masks / f"{name}.png") > 127)
    first = read_image(out / "Source Images" / "In_3.bmp")
    (out / "Source Images" / "Sc_7.bmp").unlink()  # resume: only the missing image is made again, identically
    assert generate_adabldm(tmp_path / "model", masks, out, seed=1, progress=False)["generated"] == 1
    assert np.array_equal(read_image(out / "Source Images" / "In_3.bmp"), first)
    assert (out / "Source Images" / "Sc_7.bmp").is_file()

    save_image(masks / "Pa_1.png", np.zeros((200, 200), np.uint8))
    with pytest.raises(DefFillerError, match=r"no AdaBLDM model for class\(es\) \['patches'\]"):
        generate_adabldm(tmp_path / "model", masks, out, progress=False)


def test_cli_without_base_trains_and_generates_on_a_random_base(tmp_path, monkeypatch, synth_dataset, capsys):
    """`--profile tiny` as on a clean clone, where adabldm.base is null: a random base is built once in the model folder."""
    import yaml

    from deffiller.cli import main
    from deffiller.config import configs_dir

    tiny = yaml.safe_load((configs_dir() / "tiny.yaml").read_text())
    assert tiny["adabldm"]["base"] is None
    tiny["paths"].update(outputs=str(tmp_path / "outputs"), weights=str(tmp_path / "weights"))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    monkeypatch.setenv("DEFFILLER_CONFIGS", str(tmp_path / "configs"))
    model, masks = tmp_path / "model", tmp_path / "masks"
    train = ["baseline", "adabldm", "train", "--profile", "tiny", "--data", str(synth_dataset), "--class", "scratches",
             "--out", str(model)]
    assert main(train) == 0
    assert f"RANDOM BASE: adabldm.base is null and no --base was given, so {model / 'random_base'}" in capsys.readouterr().out
    weights = model / "random_base" / "unet" / "diffusion_pytorch_model.safetensors"
    built = weights.stat().st_mtime_ns
    assert main(train) == 0 and "scratches: already trained" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == built  # built once, reused

    masks.mkdir()
    for name in ("Sc_1", "Sc_2"):
        save_image(masks / f"{name}.png", read_image(synth_dataset / "Ground truth" / f"{name}.png"))
    assert main(["baseline", "adabldm", "generate", "--model", str(model), "--masks", str(masks), "--out",
                 str(tmp_path / "gen")]) == 0
    out = capsys.readouterr().out
    assert "2 images generated, 0 kept from before" in out and "(the random base made at training)" in out
    for name in ("Sc_1", "Sc_2"):
        image, gt = read_image(tmp_path / "gen" / "Source Images" / f"{name}.bmp"), read_image(tmp_path / "gen" / "Ground truth" / f"{name}.png")
        assert image.shape == gt.shape == (200, 200) and image.std() > 0
        assert np.array_equal(gt > 127, read_image(masks / f"{name}.png") > 127)


def test_bad_mask_folders_are_clear_errors(tmp_path):
    from deffiller.baselines.adabldm.generate import read_masks

    with pytest.raises(DefFillerError, match="mask folder not found"):
        read_masks(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DefFillerError, match="no mask images"):
        read_masks(tmp_path / "empty")
    (tmp_path / "odd").mkdir()
    save_image(tmp_path / "odd" / "defect7.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DefFillerError, match="defect7: unknown class prefix"):
        read_masks(tmp_path / "odd")


def test_interrupted_class_resumes_to_the_same_weights(tmp_path, synth_dataset, tiny_sd, monkeypatch):
    from diffusers import ControlNetModel

    from deffiller.baselines.adabldm.train import ControlNetTask, train_adabldm
    from deffiller.config import load_profile

    profile = load_profile("tiny", {"data.per_class": 2, "adabldm.composites": 4, "adabldm.epochs": 2,
                                    "adabldm.max_steps": None, "adabldm.lr": 1e-3})  # 4 steps, checkpoints at 2 and 4

    def run(out, resume=False):
        return train_adabldm(profile, data=synth_dataset, base=tiny_sd, out_dir=out, classes=["inclusion"],
                             resume=resume, progress=False)

    run(tmp_path / "straight")
    calls, forward = [], ControlNetTask.forward

    def crash_on_third(self, batch, generator):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return forward(self, batch, generator)

    monkeypatch.setattr(ControlNetTask, "forward", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crashed")
    monkeypatch.setattr(ControlNetTask, "forward", forward)
    with pytest.raises(DefFillerError, match="inclusion exists; pass --resume"):
        run(tmp_path / "crashed")
    summary = run(tmp_path / "crashed", resume=True)
    class_dir = tmp_path / "crashed" / "inclusion"
    assert summary["runs"]["inclusion"]["steps"] == 4 and not (class_dir / "checkpoints").exists()
    assert [json.loads(line)["step"] for line in (class_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert json.loads((class_dir / "run_summary.json").read_text())["resumed_from"] == 2
    reference, resumed = (ControlNetModel.from_pretrained(tmp_path / d / "inclusion" / "controlnet").state_dict()
                          for d in ("straight", "crashed"))
    assert reference.keys() == resumed.keys() and all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert "inclusion: already trained" in run(tmp_path / "crashed")["lines"][1]


def test_training_pairs_from_a_manifest_use_its_train_rows(tmp_path, synth_dataset):
    from deffiller.baselines.common import training_set
    from deffiller.config import load_profile
    from deffiller.data.splits import substitution_split, write_manifest

    split = substitution_split(load_pairs(synth_dataset), seed=0)
    write_manifest(tmp_path / "split.csv", split)
    pairs, described, classes = training_set(load_profile("tiny"), train_manifest=tmp_path / "split.csv")
    assert sorted(p.name for p in pairs) == sorted(p.name for p in split["train"]) and "train" in described
    assert classes == ["inclusion", "patches", "scratches"]
    with pytest.raises(DefFillerError, match=r"class\(es\) \['rust'\] not in the training data"):
        training_set(load_profile("tiny"), train_manifest=tmp_path / "split.csv", classes=["rust"])


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys, synth_dataset):
    from deffiller.cli import main

    assert main(["baseline", "adabldm", "train", "--profile", "tiny", "--data", str(synth_dataset),
                 "--base", str(tmp_path / "no-sd"), "--out", str(tmp_path / "model")]) == 2
    assert "no-sd: base model folder not found" in capsys.readouterr().err
    (tmp_path / "masks").mkdir()
    assert main(["baseline", "adabldm", "generate", "--model", str(tmp_path / "model"), "--masks",
                 str(tmp_path / "masks"), "--out", str(tmp_path / "gen")]) == 2
    assert "no mask images" in capsys.readouterr().err
    save_image(tmp_path / "masks" / "In_1.png", np.zeros((8, 8), np.uint8))
    assert main(["baseline", "adabldm", "generate", "--model", str(tmp_path / "model"), "--masks",
                 str(tmp_path / "masks"), "--out", str(tmp_path / "gen")]) == 2
    assert "not an AdaBLDM model folder" in capsys.readouterr().err
