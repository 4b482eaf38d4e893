"""DefFillerPipeline: guidance halves, save/load, batch independence, schedulers, input errors, bulk generation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_deffiller import tiny_parts, tiny_profile

from deffiller.errors import DefFillerError
from deffiller.models.text import encode_prompts
from deffiller.pipelines.generate import IMAGE_DIR, MASK_DIR, generate_from_masks
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
    tmp = tmp_path_factory.mktemp("deffiller_model")
    return save_pipeline(tiny_parts(tiny_profile(tmp)), TrainConfig(), CLASSES, tmp / "run" / "model")


@pytest.fixture
def pipe(model_dir):
    from deffiller.pipelines.generate import load_pipeline

    return load_pipeline(model_dir, device="cpu")


def _generators(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_guidance_uses_null_tokens_and_keeps_the_mask_in_both_halves(pipe):
    calls = []

    def spy(module, args, kwargs):
        calls.append(args)

    handle = pipe.unet.register_forward_pre_hook(spy, with_kwargs=True)
    pipe([_mask(0), _mask(1)], ["patches", "scratches"], generator=_generators(0, 1), num_inference_steps=2)
    handle.remove()
    assert len(calls) >= 2
    sample, _, text, sem, grounded = calls[0]
    assert sample.shape[0] == 4 and torch.equal(grounded, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert torch.equal(sem[:2], sem[2:]) and sem[2:, 2].sum() > 0 and sem[3, 3].sum() > 0  # classes -> channels 2, 3
    expected = encode_prompts(pipe.tokenizer, pipe.text_encoder, ["", "", "patches", "scratches"], "cpu")
    assert torch.equal(text, expected)


def test_guidance_scale_changes_the_result(pipe):
    run = lambda w: pipe([_mask(0)], ["patches"], generator=_generators(3), num_inference_steps=2,  # noqa: E731
                         guidance_scale=w, output_type="latent").images
    assert not torch.allclose(run(1.0), run(3.0))


def test_save_and_load_reproduce_images_bit_for_bit(pipe, tmp_path):
    first = pipe([_mask(0)], ["inclusion"], generator=_generators(7), num_inference_steps=3).images
    pipe.save_pretrained(tmp_path / "copy")
    reloaded = type(pipe).from_pretrained(tmp_path / "copy")
    again = reloaded([_mask(0)], ["inclusion"], generator=_generators(7), num_inference_steps=3).images
    assert first.dtype == np.uint8 and first.shape == (1, 64, 64, 3)
    assert np.array_equal(first, again)
    assert type(reloaded.unet.position_net).__name__ == "MaskEncoder"


def test_images_do_not_depend_on_the_batch(pipe):
    masks, classes = [_mask(0), _mask(1), _mask(2)], ["inclusion", "patches", "scratches"]
    together = pipe(masks, classes, generator=_generators(0, 1, 2), num_inference_steps=3, output_type="latent").images
    alone = torch.cat([pipe([m], [c], generator=_generators(s), num_inference_steps=3, output_type="latent").images
                       for s, (m, c) in enumerate(zip(masks, classes))])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


@pytest.mark.parametrize("scheduler", ["ddim", "dpm"])
def test_other_schedulers_sample(pipe, scheduler):
    pipe.use_scheduler(scheduler)
    images = pipe([_mask(0)], ["inclusion"], generator=_generators(0), num_inference_steps=3).images
    assert images.shape == (1, 64, 64, 3) and images.std() > 0


def test_bad_masks_and_classes_are_clear_errors(pipe):
    grey = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    cases = [
        (([grey], ["inclusion"]), "not a binary mask"),
        (([np.zeros((8, 8, 3), np.uint8)], ["inclusion"]), "single-channel"),
        (([_mask(0)], ["rust"]), r"unknown class.*rust"),
        (([_mask(0), _mask(1)], ["inclusion"]), "2 masks but 1 classes"),
    ]
    for (masks, classes), message in cases:
        with pytest.raises(DefFillerError, match=message):
            pipe(masks, classes, num_inference_steps=1)


def _masks_folder(folder, names):
    for i, name in enumerate(names):
        save_image(folder / f"{name}.png", _mask(i))
    return folder


def test_generate_writes_the_dataset_layout_and_resumes(model_dir, tmp_path):
    masks = _masks_folder(tmp_path / "masks", ["In_1", "Pa_4", "Sc_9"])
    out = tmp_path / "gen"
    result = generate_from_masks(model_dir.parent, masks, out, steps=2, seed=5, batch_size=2, progress=False, device="cpu")
    assert result["generated"] == 3
    image = read_image(out / IMAGE_DIR / "Pa_4.bmp", "RGB")
    assert image.shape == (200, 200, 3) and (image[..., 0] == image[..., 1]).all()  # 8-bit grey like the real data
    assert np.array_equal(read_image(out / MASK_DIR / "Pa_4.png") > 127, _mask(1) > 127)
    before = read_image(out / IMAGE_DIR / "Sc_9.bmp")
    (out / IMAGE_DIR / "Sc_9.bmp").unlink()
    again = generate_from_masks(model_dir, masks, out, steps=2, seed=5, batch_size=1, progress=False, device="cpu")
    assert (again["generated"], again["kept"]) == (1, 2)
    assert np.array_equal(read_image(out / IMAGE_DIR / "Sc_9.bmp"), before)
    with pytest.raises(DefFillerError, match="other settings.*seed"):
        generate_from_masks(model_dir, masks, out, steps=2, seed=6, progress=False, device="cpu")


def test_generate_needs_a_class_for_unprefixed_masks(model_dir, tmp_path):
    masks = _masks_folder(tmp_path / "masks", ["defect_1"])
    with pytest.raises(DefFillerError, match="unknown class prefix"):
        generate_from_masks(model_dir, masks, tmp_path / "a", steps=1, progress=False, device="cpu")
    result = generate_from_masks(model_dir, masks, tmp_path / "b", steps=1, class_name="scratches", progress=False,
                                 device="cpu")
    assert result["generated"] == 1 and (tmp_path / "b" / IMAGE_DIR / "defect_1.bmp").is_file()
    with pytest.raises(DefFillerError, match="no DefFiller model"):
        generate_from_masks(tmp_path, masks, tmp_path / "c", progress=False)


def test_generate_cli_reports_bad_input_without_traceback(model_dir, tmp_path, capsys):
    from deffiller.cli import main

    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "In_1.png").write_bytes(b"not a png")
    code = main(["generate", "--model", str(model_dir), "--masks", str(masks), "--out", str(tmp_path / "o"),
                 "--profile", "tiny", "--steps", "1"])
    assert code == 2 and "In_1.png" in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "generation.json").read_text())["steps"] == 1
