"""sample.uncond_grounding: null (the official sampler, the default) against mask (the paper's eq. 5)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tiny_deffiller import tiny_parts, tiny_profile

from deffiller.cli import main
from deffiller.config import load_profile
from deffiller.errors import DefFillerError
from deffiller.pipelines.deffiller import SampleConfig, guidance_form
from deffiller.pipelines.generate import IMAGE_DIR, load_pipeline
from deffiller.training.deffiller import TrainConfig, save_pipeline
from deffiller.utils.io import read_image, save_image

CLASSES = ("inclusion", "patches", "scratches")


def _mask(seed, size=200):
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    y, x = rng.integers(20, size - 60, 2)
    mask[y : y + 40, x : x + 25] = 255
    return mask


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guidance_model")
    return save_pipeline(tiny_parts(tiny_profile(tmp)), TrainConfig(), CLASSES, tmp / "run" / "model")


def _latents(pipe, **kwargs):
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    return pipe([_mask(0), _mask(1)], ["patches", "scratches"], generator=generators, num_inference_steps=2,
                output_type="latent", **kwargs).images


def _grounded_of_first_call(pipe, **kwargs):
    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args, kw: calls.append(args), with_kwargs=True)
    _latents(pipe, **kwargs)
    handle.remove()
    return calls[0][4]


@pytest.mark.parametrize("batched_cfg", [True, False])
def test_null_is_the_default_and_mask_keeps_the_tokens_in_both_halves(model_dir, batched_cfg):
    pipe = load_pipeline(model_dir, device="cpu")
    pipe.use_speed(dataclasses.replace(SampleConfig(), batched_cfg=batched_cfg, cache_conditioning=False))
    assert torch.equal(_grounded_of_first_call(pipe), torch.tensor([0.0, 0.0, 1.0, 1.0]) if batched_cfg
                       else torch.tensor([0.0, 0.0]))  # the unconditional half's call comes first when split
    assert torch.equal(_grounded_of_first_call(pipe, uncond_grounding="mask"),
                       torch.ones(4) if batched_cfg else torch.ones(2))
    default, null, eq5 = _latents(pipe), _latents(pipe, uncond_grounding=None), _latents(pipe, uncond_grounding="mask")
    assert torch.equal(default, null)
    assert not torch.allclose(default, eq5, atol=1e-4)


def test_mask_form_is_the_same_on_every_speed_path(model_dir):
    results = []
    for batched, cached in ((True, True), (False, False)):
        pipe = load_pipeline(model_dir, device="cpu")
        pipe.use_speed(dataclasses.replace(SampleConfig(), batched_cfg=batched, cache_conditioning=cached))
        results.append(_latents(pipe, uncond_grounding="mask"))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-5)


def test_unknown_form_is_a_clear_error(model_dir):
    with pytest.raises(DefFillerError, match="uncond_grounding must be null.*or 'mask'"):
        _latents(load_pipeline(model_dir, device="cpu"), uncond_grounding="text")


def test_profiles_default_to_the_official_sampler_and_the_report_line_names_the_form():
    for name in ("tiny", "smoke", "paper"):
        assert load_profile(name).section(SampleConfig).uncond_grounding is None
    assert "official sampler" in guidance_form(None) and "uncond_grounding: null" in guidance_form(None)
    assert "eq. 5" in guidance_form("mask") and "uncond_grounding: mask" in guidance_form("mask")


def test_the_report_names_the_form_of_its_profile(tmp_path):
    from deffiller.reporting.report import build_report

    for form, words in ((None, "official sampler (`sample.uncond_grounding: null`)"),
                        ("mask", "eq. 5 (`sample.uncond_grounding: mask`)")):
        profile = tiny_profile(tmp_path, **{"paths.figures": str(tmp_path / str(form)), "sample.uncond_grounding": form})
        markdown, _ = build_report(profile)
        assert words in markdown.read_text()


def test_cli_uncond_grounding_mask_differs_from_the_default(model_dir, tmp_path, capsys):
    for i, name in enumerate(["In_1", "Sc_2"]):
        save_image(tmp_path / "masks" / f"{name}.png", _mask(i))
    base = ["generate", "--model", str(model_dir.parent), "--masks", str(tmp_path / "masks"), "--profile", "tiny",
            "--steps", "2", "--threads", "1"]
    assert main(base + ["--out", str(tmp_path / "default")]) == 0
    assert "unconditional grounding null" in capsys.readouterr().out
    assert main(base + ["--out", str(tmp_path / "eq5"), "--uncond-grounding", "mask"]) == 0
    assert "unconditional grounding mask" in capsys.readouterr().out
    assert main(base + ["--out", str(tmp_path / "null"), "--uncond-grounding", "null"]) == 0
    image = lambda folder: read_image(tmp_path / folder / IMAGE_DIR / "In_1.bmp")  # noqa: E731
    assert np.array_equal(image("default"), image("null"))
    assert not np.array_equal(image("default"), image("eq5"))
    # a folder generated with one form refuses the other
    assert main(base + ["--out", str(tmp_path / "eq5")]) == 2
    assert "uncond_grounding" in capsys.readouterr().err
