"""The mask producer: tiny DDPM training and resume, seeded sampling into the dataset layout, the quality report, bad input."""
from __future__ import annotations

import json

import matplotlib.figure
import numpy as np
import pytest
import torch

from deffiller.cli import main
from deffiller.config import load_profile
from deffiller.data.layout import load_pairs
from deffiller.errors import DefFillerError
from deffiller.evaluation.mask_quality import (mask_quality, masks_figure, nearest_iou, quality_table, read_mask_set)
from deffiller.models.mask_ddpm import build_scheduler, build_unet
from deffiller.pipelines.mask_sampling import (CLASSES_FILE, load_mask_model, mask_seed, sample_masks)
from deffiller.training.mask_ddpm import MaskDataset, MaskDDPMConfig, MaskDDPMTask, train_mask_ddpm
from deffiller.utils.io import list_images, read_image, save_image

NAMES = {f"{p}_{i}.png" for p in ("In", "Pa", "Sc") for i in range(1, 5)}


@pytest.fixture(scope="module")
def tiny():
    return load_profile("tiny")


@pytest.fixture(scope="module")
def run_dir(tiny, synth_dataset, tmp_path_factory):
    """A tiny mask DDPM trained through the CLI on the synthetic dataset."""
    out = tmp_path_factory.mktemp("mask-run")
    assert main(["masks", "train", "--profile", "tiny", "--data", str(synth_dataset), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def sampled(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("mask-samples")
    assert main(["masks", "sample", "--model", str(run_dir), "--per-class", "4", "--out", str(out)]) == 0
    return out


def test_train_writes_a_loadable_model_and_a_log(run_dir, tiny):
    pipeline, classes = load_mask_model(run_dir)
    assert classes.classes == tiny.data.classes and classes.prefixes == tiny.data.prefixes
    assert json.loads((run_dir / "model" / CLASSES_FILE).read_text())["classes"] == list(tiny.data.classes)
    cfg = tiny.section(MaskDDPMConfig)
    assert pipeline.unet.config.sample_size == cfg.resolution and pipeline.unet.config.num_class_embeds == 3
    assert pipeline.scheduler.config.num_train_timesteps == cfg.train_timesteps
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == list(range(1, cfg.max_steps + 1))
    fresh = build_unet(cfg, 3)
    trained = dict(pipeline.unet.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in fresh.named_parameters())  # training moved the weights


def test_sample_cli_writes_binary_masks_at_both_sizes(sampled, tiny):
    settings = json.loads((sampled / "sampling.json").read_text())  # defaults from the training profile (tiny)
    assert (settings["sampler"], settings["steps"]) == ("ddim", tiny.section(MaskDDPMConfig).sampling_steps)
    for folder, size in ((sampled / "Ground truth", tiny.data.source_size),
                         (sampled / f"masks_{tiny.data.image_size}", tiny.data.image_size)):
        files = list_images(folder)
        assert {f.name for f in files} == NAMES
        for f in files:
            mask = read_image(f)
            assert mask.shape == (size, size)
            assert set(np.unique(mask)) <= {0, 255}
    # the two sizes are the same masks: the generator-size one, nearest-resized, matches the dataset-size one
    big = read_image(sampled / "Ground truth" / "In_1.png") > 127
    small = read_image(sampled / f"masks_{tiny.data.image_size}" / "In_1.png") > 127
    idx = (np.arange(tiny.data.image_size) + 0.5) * tiny.data.source_size / tiny.data.image_size
    assert (big[np.ix_(idx.astype(int), idx.astype(int))] == small).mean() > 0.95


def test_sampling_is_seeded_per_mask_not_per_batch(run_dir, tmp_path):
    kwargs = dict(steps=8, sampler="ddpm", image_size=64, progress=False, device="cpu")
    sample_masks(run_dir, tmp_path / "b12", 4, batch_size=12, **kwargs)
    sample_masks(run_dir, tmp_path / "b5", 4, batch_size=5, **kwargs)
    sample_masks(run_dir, tmp_path / "seed1", 4, batch_size=12, seed=1, **kwargs)
    for name in NAMES:
        for sub in ("Ground truth", "masks_64"):
            assert np.array_equal(read_image(tmp_path / "b12" / sub / name), read_image(tmp_path / "b5" / sub / name))
    differ = [not np.array_equal(read_image(tmp_path / "b12" / "masks_64" / n), read_image(tmp_path / "seed1" / "masks_64" / n))
              for n in NAMES]
    assert sum(differ) >= len(NAMES) - 1
    assert len({mask_seed(0, c, i) for c in range(3) for i in range(1, 100)}) == 297


def test_sampling_resumes_and_refuses_mixed_settings(run_dir, tmp_path):
    kwargs = dict(steps=4, sampler="ddim", image_size=64, progress=False, device="cpu")
    first = sample_masks(run_dir, tmp_path, 4, **kwargs)
    assert (first["drawn"], first["kept"]) == (12, 0)
    before = read_image(tmp_path / "masks_64" / "Pa_3.png")
    (tmp_path / "masks_64" / "Pa_3.png").unlink()
    (tmp_path / "Ground truth" / "Sc_1.png").unlink()
    again = sample_masks(run_dir, tmp_path, 4, **kwargs)
    assert (again["drawn"], again["kept"]) == (2, 10)
    assert np.array_equal(read_image(tmp_path / "masks_64" / "Pa_3.png"), before)
    assert sample_masks(run_dir, tmp_path, 6, **kwargs)["drawn"] == 6
    with pytest.raises(DefFillerError, match="other settings.*steps=4"):
        sample_masks(run_dir, tmp_path, 4, **{**kwargs, "steps": 5})


def test_sampling_bad_input(run_dir, tmp_path):
    with pytest.raises(DefFillerError, match="unknown class 'cracks'"):
        sample_masks(run_dir, tmp_path / "o", 2, classes=["cracks"], steps=2, progress=False)
    with pytest.raises(DefFillerError, match="at least 1"):
        sample_masks(run_dir, tmp_path / "o", 0, steps=2, progress=False)
    with pytest.raises(DefFillerError, match="sampling steps must be in"):
        sample_masks(run_dir, tmp_path / "o", 1, steps=100_000, progress=False)
    with pytest.raises(DefFillerError, match="not a mask model folder"):
        load_mask_model(tmp_path)
    assert main(["masks", "sample", "--profile", "tiny", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


def test_training_resume_continues_the_run(tiny, synth_dataset, tmp_path):
    """Two steps, stop, resume to four: the log holds steps 1-4 once and the weights equal an uninterrupted run's."""
    half = load_profile("tiny", {"masks.max_steps": 2})
    train_mask_ddpm(half, tmp_path / "resumed", data=synth_dataset, progress=False)
    with pytest.raises(DefFillerError, match="--resume"):
        train_mask_ddpm(tiny, tmp_path / "resumed", data=synth_dataset, progress=False)
    summary = train_mask_ddpm(tiny, tmp_path / "resumed", data=synth_dataset, resume=True, progress=False)
    assert summary["steps"] == tiny.section(MaskDDPMConfig).max_steps
    train_mask_ddpm(tiny, tmp_path / "straight", data=synth_dataset, progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4]
    resumed, _ = load_mask_model(tmp_path / "resumed")
    straight, _ = load_mask_model(tmp_path / "straight")
    for (name, a), (_, b) in zip(resumed.unet.named_parameters(), straight.unet.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_training_data_bad_input(synth_dataset, tmp_path):
    pairs = load_pairs(synth_dataset)
    with pytest.raises(DefFillerError, match=r"unknown class\(es\) \['patches', 'scratches'\]"):
        MaskDataset(pairs, ("inclusion",), 32)
    with pytest.raises(DefFillerError, match="no training masks"):
        MaskDataset([], ("inclusion",), 32)
    data = MaskDataset(pairs, ("inclusion", "patches", "scratches"), 32)
    assert data.masks.shape == (12, 1, 32, 32) and set(data.masks.unique().tolist()) == {-1.0, 1.0}
    assert data.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    with pytest.raises(DefFillerError, match="multiples of masks.norm_num_groups"):
        build_unet(MaskDDPMConfig(block_out_channels=(12, 16), norm_num_groups=8, attention_levels=()), 3)


def test_prediction_sets_the_training_target_and_the_sampler():
    clean = torch.where(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5, 1.0, -1.0)

    class Oracle(torch.nn.Module):  # predicts the clean mask exactly
        def forward(self, noisy, t, class_labels):
            return type("Out", (), {"sample": clean})

    losses = {}
    for prediction in ("epsilon", "sample"):
        scheduler = build_scheduler(MaskDDPMConfig(prediction=prediction, train_timesteps=50))
        task = MaskDDPMTask(Oracle(), scheduler, hflip=False)
        losses[prediction] = task({"mask": clean, "label": torch.zeros(2, dtype=torch.long)}, torch.Generator().manual_seed(1))
        assert scheduler.config.prediction_type == prediction
    assert losses["sample"] == 0 and losses["epsilon"] > 0.5
    with pytest.raises(DefFillerError, match="masks.prediction='v'"):
        build_scheduler(MaskDDPMConfig(prediction="v"))


def test_profiles_carry_the_papers_settings():
    paper = load_profile("paper").section(MaskDDPMConfig)
    assert (paper.resolution, paper.epochs, paper.batch_size, paper.lr) == (64, 200, 32, 1e-4)
    assert (paper.train_timesteps, paper.sampler, paper.sampling_steps, paper.per_class) == (1000, "ddpm", 1000, 300)
    assert paper.prediction == "epsilon"
    for name in ("tiny", "smoke"):
        cfg = load_profile(name).section(MaskDDPMConfig)
        assert build_unet(cfg, 3).config.sample_size == cfg.resolution


# ---- quality report -------------------------------------------------------------------------------------------------

def _write(folder, masks: dict[str, np.ndarray]):
    for name, mask in masks.items():
        save_image(folder / f"{name}.png", mask.astype(np.uint8))
    return folder


def _boxes(n: int, size: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """n rectangles per class at random places and sizes; scratches get two components."""
    rng = np.random.default_rng(seed)
    masks = {}
    for prefix in ("In", "Pa", "Sc"):
        for i in range(1, n + 1):
            mask = np.zeros((size, size), np.uint8)
            y, x, h, w = rng.integers(0, size // 2, 4)
            mask[y:y + h + 2, x:x + w + 2] = 255
            if prefix == "Sc":
                mask[:, -2:] = 255
            masks[f"{prefix}_{i}"] = mask
    return masks


def test_identical_sets_are_a_perfect_memorisation(tmp_path):
    real = _write(tmp_path / "real", _boxes(6))
    report = mask_quality(real, real, tmp_path / "q", fid=False)
    for label, r in report["classes"].items():
        assert r["area"]["ks"] == 0 and r["components"]["ks"] == 0
        assert r["memorisation"]["nearest_real_iou"]["q05"] == 1.0 and r["memorisation"]["share_above"] == 1.0
        assert r["memorisation"]["real_to_other_real_iou"]["mean"] < 1.0
        assert r["area"]["real"] == r["area"]["fake"]
    assert report["classes"]["scratches"]["components"]["real"]["mean"] > report["classes"]["inclusion"]["components"]["real"]["mean"]
    on_disk = json.loads((tmp_path / "q" / "mask_quality.json").read_text())
    assert on_disk["classes"]["patches"]["n_fake"] == 6
    for name in ("mask_quality.png", "fig8_masks.png"):
        assert (tmp_path / "q" / name).stat().st_size > 1000
    table = quality_table(report)
    assert list(table["class"]) == ["inclusion", "patches", "scratches"]


def test_quality_numbers_on_known_sets(tmp_path):
    real = {k: v for k, v in _boxes(5).items()}
    fake = {k: np.fliplr(v) for k, v in real.items() if not k.startswith("Sc")}  # same areas, moved
    fake["In_6"] = np.zeros((40, 40), np.uint8)  # empty
    fake["Pa_6"] = np.full((40, 40), 255, np.uint8)  # all foreground
    fake["Pa_7"] = np.full((40, 40), 255, np.uint8)
    _write(tmp_path / "real", real)
    _write(tmp_path / "fake", fake)
    with pytest.warns(UserWarning) as caught:
        report = mask_quality(tmp_path / "real", tmp_path / "fake", fid=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "scratches" in messages and "only in" in messages  # compared classes are those of both sets
    assert set(report["classes"]) == {"inclusion", "patches"}
    inclusion, patches = report["classes"]["inclusion"], report["classes"]["patches"]
    assert (inclusion["fake_empty"], inclusion["fake_full"], inclusion["fake_kept"]) == (1, 0, 5)
    assert (patches["fake_empty"], patches["fake_full"], patches["fake_kept"]) == (0, 2, 5)
    assert inclusion["area"]["ks"] == 0 and patches["components"]["ks"] == 0  # flips keep areas and components
    expected = nearest_iou(np.stack([np.fliplr(real[f"In_{i}"]) > 0 for i in range(1, 6)]),
                           np.stack([real[f"In_{i}"] > 0 for i in range(1, 6)]))
    assert inclusion["memorisation"]["nearest_real_iou"]["mean"] == pytest.approx(expected.mean())
    assert nearest_iou(np.ones((1, 4, 4), bool), np.stack([np.ones((4, 4), bool), np.eye(4, dtype=bool)]))[0] == 1.0
    assert nearest_iou(np.eye(4, dtype=bool)[None], np.ones((1, 4, 4), bool))[0] == pytest.approx(0.25)
    # a shifted distribution: every generated inclusion is twice as large in area
    grown = {f"In_{i}": np.kron(real[f"In_{i}"][:20, :20], np.ones((2, 2), np.uint8)) for i in range(1, 6)}
    _write(tmp_path / "grown", grown)
    with pytest.warns(UserWarning, match="only in"):
        shifted = mask_quality(tmp_path / "real", tmp_path / "grown", fid=False)["classes"]["inclusion"]
    assert shifted["area"]["ks"] > 0


def test_quality_attaches_per_class_fid(tmp_path, synth_dataset, monkeypatch):
    """Table 6 comes from deffiller.evaluation.fid (tested there; its 2048-d matrix square roots take minutes on a
    busy CPU), called per class on the two mask folders; its numbers land in the report and the table's AVG."""
    from deffiller.evaluation import fid

    calls = []

    def fake_fid(real, fake, per_class=None, **kwargs):
        calls.append((real, fake, per_class, kwargs.get("cache_dir")))
        scores = {"inclusion": 10.0, "patches": 20.0, "scratches": 60.0}
        return {"per_class": {c: {"fid": v, "kid_mean": v / 100} for c, v in scores.items()}, "warnings": ["few samples"]}

    monkeypatch.setattr(fid, "compute_fid", fake_fid)
    with pytest.warns(UserWarning, match="few samples"):
        report = mask_quality(synth_dataset, synth_dataset, fid=True, fid_cache_dir=tmp_path / "cache")
    assert calls == [(synth_dataset / "Ground truth", synth_dataset / "Ground truth", True, tmp_path / "cache")]
    assert report["classes"]["patches"]["fid"] == 20.0 and report["classes"]["scratches"]["kid_mean"] == 0.6
    table = quality_table(report).set_index("class")
    assert table.loc["AVG", "FID"] == pytest.approx(30.0)


def test_quality_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    real = _write(tmp_path / "real", _boxes(2))
    with pytest.raises(DefFillerError, match="no mask files"):
        mask_quality(real, tmp_path / "empty", fid=False)
    with pytest.raises(DefFillerError, match="not a folder"):
        mask_quality(real, tmp_path / "missing", fid=False)
    photo = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)
    _write(tmp_path / "photos", {"In_1": photo})
    with pytest.raises(DefFillerError, match="looks like an image"):
        mask_quality(real, tmp_path / "photos", fid=False)
    _write(tmp_path / "odd", {"Cr_1": np.zeros((40, 40), np.uint8)})
    with pytest.raises(DefFillerError, match="unknown class prefix"):
        mask_quality(real, tmp_path / "odd", fid=False)
    soft = {k: v.copy() for k, v in _boxes(2).items()}
    soft["In_1"][0, 0] = 128  # one anti-aliased pixel: binarised with a warning
    _write(tmp_path / "soft", soft)
    with pytest.warns(UserWarning, match="1 non-binary mask"):
        mask_quality(real, tmp_path / "soft", fid=False)
    assert main(["masks", "quality", "--real", str(real), "--fake", str(tmp_path / "empty"), "--out", str(tmp_path / "q"),
                 "--no-fid"]) == 2


def test_quality_cli_and_fig8_on_samples(sampled, synth_dataset, tmp_path, capsys):
    assert main(["masks", "quality", "--real", str(synth_dataset), "--fake", str(sampled), "--out", str(tmp_path),
                 "--no-fid", "--profile", "tiny"]) == 0
    report = json.loads((tmp_path / "mask_quality.json").read_text())
    assert {r["n_fake"] for r in report["classes"].values()} == {4}
    assert "inclusion" in capsys.readouterr().out
    fig = masks_figure(synth_dataset, sampled, per_class=3)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 3 * 6
    assert read_mask_set(sampled).size == 200
