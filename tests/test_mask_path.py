"""New masks reach DefFiller by one nearest resize from the mask generator's resolution (the paper: 64 -> 256), not
through the dataset-size copy (64 -> 200 -> 256); the generated dataset keeps the dataset-size mask as drawn."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import ImagePipelineOutput
from PIL import Image
from tiny_deffiller import tiny_parts, tiny_profile

import deffiller.baselines.adabldm.generate as adabldm_generate
from deffiller.models.mask_ddpm import build_scheduler, build_unet
from deffiller.pipelines.deffiller import DefFillerPipeline
from deffiller.pipelines.generate import MASK_DIR, generate_from_masks
from deffiller.pipelines.mask_sampling import (SOURCE_DIR, MaskClasses, MaskDDPMPipeline, mask_file_at, sample_masks,
                                               save_mask_model)
from deffiller.training.deffiller import TrainConfig, save_pipeline
from deffiller.training.mask_ddpm import MaskDDPMConfig
from deffiller.utils.io import list_images, read_image

PER_CLASS = 2


def _nearest(mask: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 127


@pytest.fixture
def sampled(tmp_path, monkeypatch):
    """New masks drawn by a random mask DDPM at the paper's sizes (64 -> 256, dataset 200), where two nearest resizes
    differ from one (at tiny's 32 -> 64 they agree), with the generator's binarised samples by name."""
    profile = tiny_profile(tmp_path, **{"data.image_size": 256, "masks.resolution": 64})
    cfg = profile.section(MaskDDPMConfig)
    torch.manual_seed(0)
    save_mask_model(MaskDDPMPipeline(build_unet(cfg, 3), build_scheduler(cfg)), tmp_path / "mask_model",
                    MaskClasses(profile.data.classes, profile.data.prefixes))
    drawn = []  # the generator's continuous samples, in drawing order (class by class, index by index)
    draw = MaskDDPMPipeline.__call__
    monkeypatch.setattr(MaskDDPMPipeline, "__call__", lambda self, *a, **k: drawn.append(draw(self, *a, **k)) or drawn[-1])
    new = tmp_path / "new_masks"
    sample_masks(tmp_path / "mask_model", new, PER_CLASS, steps=2, sampler="ddim", source_size=profile.data.source_size,
                 image_size=profile.data.image_size, progress=False, device="cpu")
    names = [f"{prefix}_{i}" for prefix in profile.data.prefixes for i in range(1, PER_CLASS + 1)]
    samples = torch.cat(drawn)[:, 0].numpy() > 0  # binarised at the generator's resolution
    assert samples.shape == (len(names), cfg.resolution, cfg.resolution)
    return profile, new, dict(zip(names, samples))


def _check_one_resize(seen: dict, samples: dict, size: int, source_size: int) -> None:
    assert sorted(seen) == sorted(samples)
    twice = 0
    for name, mask in seen.items():
        assert mask.shape == (size, size) and np.array_equal(mask, _nearest(samples[name], size))  # once, nearest
        twice += not np.array_equal(mask, _nearest(_nearest(samples[name], source_size), size))  # reading 200 px
    assert twice  # the test tells the two paths apart


def test_a_generated_mask_reaches_deffiller_by_one_nearest_resize(sampled, tmp_path, monkeypatch):
    profile, new, samples = sampled
    size, source_size = profile.data.image_size, profile.data.source_size
    seen = []

    def spy(self, masks, classes, generator=None, **kwargs):
        seen.extend(masks)
        return ImagePipelineOutput(images=np.zeros((len(masks), size, size, 3), np.uint8))

    monkeypatch.setattr(DefFillerPipeline, "__call__", spy)
    model = save_pipeline(tiny_parts(profile), TrainConfig(), profile.data.classes, tmp_path / "run" / "model")
    out = tmp_path / "generated"
    generate_from_masks(model, new / SOURCE_DIR, out, steps=1, batch_size=1, source_size=source_size, progress=False,
                        device="cpu")
    order = [p.stem for p in list_images(new / SOURCE_DIR)]
    _check_one_resize(dict(zip(order, seen)), samples, size, source_size)
    for name, binary in samples.items():
        # the generated dataset keeps the dataset-size mask as it was drawn (itself one resize from the generator's)
        kept = read_image(out / MASK_DIR / f"{name}.png") > 127
        assert np.array_equal(kept, read_image(new / SOURCE_DIR / f"{name}.png") > 127)
        assert np.array_equal(kept, _nearest(binary, source_size))


def test_adabldm_reads_new_masks_at_its_size_too(sampled, tmp_path, monkeypatch):
    profile, new, samples = sampled
    size = profile.data.image_size
    model = SimpleNamespace(classes=list(profile.data.classes), image_size=size, source_size=profile.data.source_size,
                            meta={}, base=SimpleNamespace(path="base"))
    seen = {}

    def image_for(model, label, mask, seed, name):
        seen[name] = mask
        return np.zeros((size, size), np.uint8)

    monkeypatch.setattr(adabldm_generate.AdaBLDM, "load", lambda *a: model)
    monkeypatch.setattr(adabldm_generate, "_image_for", image_for)
    adabldm_generate.generate_adabldm("model", new / SOURCE_DIR, tmp_path / "adabldm", progress=False)
    _check_one_resize(seen, samples, size, profile.data.source_size)


def test_other_masks_are_read_as_they_are(tmp_path):
    (tmp_path / SOURCE_DIR).mkdir()
    real = tmp_path / SOURCE_DIR / "In_1.png"
    assert mask_file_at(real, 64) == real  # a dataset folder, not `masks sample` output (no sampling.json)
    (tmp_path / "sampling.json").write_text("{}")
    assert mask_file_at(real, 64) == real  # no copy at that size
    (tmp_path / "masks_64").mkdir()
    (tmp_path / "masks_64" / "In_1.png").write_bytes(b"")
    assert mask_file_at(real, 64) == tmp_path / "masks_64" / "In_1.png"
    assert mask_file_at(real, 256) == real
