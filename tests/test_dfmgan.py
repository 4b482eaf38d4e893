"""DFMGAN baseline: networks, mask gating, training stages, resume, generation (CPU, tiny profile, seconds)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deffiller.baselines.dfmgan.augment import DiffAugment
from deffiller.baselines.dfmgan.config import DFMGANConfig
from deffiller.baselines.dfmgan.data import PairSampler, WindowSampler, clean_windows, stage1_sampler
from deffiller.baselines.dfmgan.generate import generate_dfmgan
from deffiller.baselines.dfmgan.layers import ModulatedConv2d, upsample2d, fir_kernel
from deffiller.baselines.dfmgan.model import build_discriminator, build_generator, build_match_discriminator, load_state
from deffiller.baselines.dfmgan.train import fit, stage2_task, train_dfmgan
from deffiller.baselines.dfmgan.trainer import DFMGANTask
from deffiller.cli import main
from deffiller.config import load_profile
from deffiller.data.layout import load_pairs
from deffiller.errors import DefFillerError
from deffiller.training.loop import checkpoint_dirs
from deffiller.utils.io import read_image


@pytest.fixture(scope="module")
def cfg() -> DFMGANConfig:
    return load_profile("tiny").section(DFMGANConfig).check()


def test_generator_and_discriminators_shapes(cfg):
    torch.manual_seed(0)
    n, r = 3, cfg.resolution
    z = torch.randn(n, cfg.z_dim)
    img, mask = build_generator(cfg, defect=False)(z)
    assert img.shape == (n, 1, r, r) and mask is None
    img, mask = build_generator(cfg, defect=True)(z, torch.randn(n, cfg.z_dim))
    assert img.shape == (n, 1, r, r) and mask.shape == (n, 1, r, r)
    assert build_discriminator(cfg)(img).shape == (n, 1)
    assert build_match_discriminator(cfg)(torch.cat([img, mask], 1)).shape == (n, 1)


def test_fir_upsampling_keeps_a_constant_and_doubles_the_size():
    x = torch.full((1, 2, 8, 8), 3.0)
    y = upsample2d(x, fir_kernel())
    assert y.shape == (1, 2, 16, 16)
    assert torch.allclose(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 3.0))


def test_demodulation_gives_unit_output_std_for_unit_inputs():
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 32, 3, w_dim=16)
    with torch.no_grad():
        conv.affine.weight.mul_(5)  # large, uneven styles: demodulation must undo their scale
        x, w = torch.randn(8, 64, 32, 32), torch.randn(8, 16)
        std = conv(x, w).std().item()
        conv.demodulate = False
        raw_std = conv(x, w).std().item()
    assert 0.9 < std < 1.1
    assert not 0.9 < raw_std < 1.1


def test_defect_features_are_exactly_zero_outside_the_mask(cfg):
    torch.manual_seed(1)
    G = build_generator(cfg, defect=True)
    captured = {}
    for name, block in G.synthesis.defect_blocks.items():
        block.register_forward_hook(lambda module, inputs, output, name=name: captured.__setitem__(name, output))
    G(torch.randn(4, cfg.z_dim), torch.randn(4, cfg.z_dim))
    assert len(captured) == len(G.synthesis.defect_blocks) >= 2
    for name, (res_x, mask) in captured.items():
        off = (mask < 0).expand_as(res_x)
        assert off.any() and (~off).any(), f"{name}: the random mask should be partly on"
        assert torch.all(res_x[off] == 0), name
        assert res_x[~off].abs().sum() > 0, name


def test_mask_off_everywhere_leaves_the_backbone_image_unchanged(cfg):
    torch.manual_seed(2)
    G1 = build_generator(cfg, defect=False)
    G2 = build_generator(cfg, defect=True)
    G2.load_state_dict(G1.state_dict(), strict=False)
    first = G2.synthesis.defect_blocks[f"b{cfg.res_start}"]
    with torch.no_grad():
        first.to_mask.bias.fill_(-1e4)  # the mask head now says "off" at every pixel
    z = torch.randn(2, cfg.z_dim)
    backbone, _ = G1(z, noise_mode="const")
    image, mask = G2(z, torch.randn(2, cfg.z_dim), noise_mode="const")
    assert (mask < 0).all()
    assert torch.equal(image, backbone)


def test_diffaugment_is_differentiable_and_changes_inputs():
    torch.manual_seed(3)
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    y = DiffAugment("color,translation,cutout")(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.square().sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(DefFillerError, match="diffaugment"):
        DiffAugment("color,flip")


def test_clean_windows_never_touch_the_dilated_mask():
    mask = np.zeros((60, 60), bool)
    mask[:, 28:31] = True  # a vertical scratch: clean 24 px squares exist only left and right of it
    windows = clean_windows([mask], side=24, margin=2)
    assert len(windows)
    for _, top, left, side in windows:
        assert not mask[max(top - 2, 0) : top + side + 2, max(left - 2, 0) : left + side + 2].any()
    assert not len(clean_windows([mask], side=30, margin=2))


def _params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before, module):
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v)}


def test_stage1_step_trains_generator_and_discriminator(cfg, synth_dataset, tmp_path):
    torch.manual_seed(4)
    reals, described = stage1_sampler(load_pairs(synth_dataset), "all_images", cfg.resolution, 64, 4)
    assert isinstance(reals, WindowSampler) and described.startswith("all_images")
    G, D = build_generator(cfg, defect=False), build_discriminator(cfg)
    task = DFMGANTask(G, D, cfg)
    g0, d0 = _params(G), _params(D)
    logs = fit(task, reals, 1, tmp_path, 0, False, "stage 1", progress=False)  # step 0 runs the lazy PL and R1 phases too
    assert {"loss_G", "pl_penalty", "loss_D", "r1_D"} <= set(logs)
    assert _changed(g0, G) == set(g0) and _changed(d0, D) == set(d0)
    assert json.loads((tmp_path / "run_summary.json").read_text())["step"] == 1


def test_stage2_step_trains_only_defect_parts(cfg, synth_dataset, tmp_path):
    torch.manual_seed(5)
    stage1 = {"G_ema": build_generator(cfg, defect=False).state_dict(), "D": build_discriminator(cfg).state_dict()}
    pairs = [p for p in load_pairs(synth_dataset) if p.label == "scratches"]
    task = stage2_task(cfg, stage1, torch.device("cpu"))
    G, D, Dm = task.G, task.D, task.d_match
    g0, d0, m0 = _params(G), _params(D), _params(Dm)
    logs = fit(task, PairSampler(pairs, cfg.resolution), 1, tmp_path, 0, False, "stage 2", progress=False)
    assert {"loss_G_match", "loss_ms", "pl_penalty", "loss_D_match", "r1_D_match"} <= set(logs)
    defect = {k for k in g0 if k.startswith(("defect_mapping.", "synthesis.defect_blocks."))}
    assert defect and _changed(g0, G) == defect  # the backbone is bit-identical
    assert all(p.grad is None for k, p in G.named_parameters() if k not in defect)
    assert _changed(d0, D) == set(d0) and _changed(m0, Dm) == set(m0)


def _tiny(**overrides):
    return load_profile("tiny", overrides={f"dfmgan.{k}": v for k, v in overrides.items()})


def _states(folder):
    return {p.relative_to(folder).as_posix(): load_state(p) for p in sorted(folder.rglob("model.pt"))}


def _losses(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


def test_interrupted_training_resumes_bit_exactly(tmp_path, synth_dataset, monkeypatch):
    profile = _tiny(checkpoint_every=1)
    kwargs = dict(data=synth_dataset, classes=["patches"], progress=False)
    straight = train_dfmgan(profile, out_dir=tmp_path / "straight", **kwargs)

    original = DFMGANTask.training_step
    crash_at = {False: 3, True: 1}  # stage 1 dies before its 4th step, stage 2 before its 2nd

    def crashing(self, model, batch, generator, step, update):
        if step == crash_at.get(self.defect):
            crash_at.pop(self.defect)
            raise KeyboardInterrupt
        return original(self, model, batch, generator, step, update)

    monkeypatch.setattr(DFMGANTask, "training_step", crashing)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_dfmgan(profile, out_dir=out, **kwargs)
    assert checkpoint_dirs(out / "stage1") and not (out / "stage1" / "model.pt").exists()
    with pytest.raises(DefFillerError, match="--resume"):
        train_dfmgan(profile, out_dir=out, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        train_dfmgan(profile, out_dir=out, resume=True, **kwargs)
    assert checkpoint_dirs(out / "patches")
    resumed = train_dfmgan(profile, out_dir=out, resume=True, **kwargs)

    assert not crash_at and resumed["classes"] == straight["classes"] == ["patches"]
    expected, got = _states(tmp_path / "straight"), _states(out)
    assert sorted(got) == ["patches/model.pt", "stage1/model.pt"] == sorted(expected)
    for file, state in expected.items():
        for net, tensors in state.items():
            for key, value in tensors.items():
                assert torch.equal(value, got[file][net][key]), f"{file} {net}.{key}"
    for run in ("stage1", "patches"):
        assert _losses(out / run / "metrics.jsonl") == _losses(tmp_path / "straight" / run / "metrics.jsonl")
    assert not list(out.rglob("checkpoints"))


def test_changed_settings_refuse_an_existing_model_folder(tmp_path, synth_dataset, monkeypatch):
    monkeypatch.setattr(DFMGANTask, "training_step", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        train_dfmgan(_tiny(), data=synth_dataset, out_dir=tmp_path, progress=False)
    with pytest.raises(DefFillerError, match="other dfmgan settings"):
        train_dfmgan(_tiny(lambda_ms=1.0), data=synth_dataset, out_dir=tmp_path, progress=False)


@pytest.mark.parametrize("key, value, message", [
    ("stage1_source", "inpainted", "stage1_source"),
    ("res_start", 64, "res_start"),
    ("batch", 3, "even batch"),
])
def test_bad_settings_are_clear_errors(key, value, message):
    with pytest.raises(DefFillerError, match=message):
        _tiny(**{key: value}).section(DFMGANConfig).check()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_dataset):
    """Two classes trained through the CLI with the tiny profile."""
    out = tmp_path_factory.mktemp("dfmgan-model")
    assert main(["baseline", "dfmgan", "train", "--profile", "tiny", "--data", str(synth_dataset),
                 "--class", "inclusion", "--class", "scratches", "--out", str(out)]) == 0
    return out


def test_cli_train_records_stage1_source_and_classes(trained):
    meta = json.loads((trained / "dfmgan.json").read_text())
    assert meta["classes"] == ["inclusion", "scratches"]
    assert meta["stage1"]["source"].startswith("clean_crops")
    assert (trained / "stage1" / "model.pt").is_file() and not list(trained.rglob("checkpoints"))
    lines = (trained / "inclusion" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]


def test_cli_generate_writes_binary_masks_with_matching_images(trained, tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["baseline", "dfmgan", "generate", "--model", str(trained), "--per-class", "2", "--out", str(out),
                 "--seed", "7"]) == 0
    images = sorted(p.name for p in (out / "Source Images").iterdir())
    masks = sorted(p.name for p in (out / "Ground truth").iterdir())
    assert images == ["In_1.bmp", "In_2.bmp", "Sc_1.bmp", "Sc_2.bmp"]
    assert masks == [name.replace(".bmp", ".png") for name in images]
    for name in masks:
        mask = read_image(out / "Ground truth" / name)
        assert mask.shape == (200, 200) and set(np.unique(mask)) <= {0, 255}
        assert read_image(out / "Source Images" / name.replace(".png", ".bmp")).shape == (200, 200)
    assert load_pairs(out)  # readable as a dataset by the rest of the project
    assert "2 new pairs" in capsys.readouterr().out

    again = generate_dfmgan(trained, 3, tmp_path / "again", seed=7, classes=["inclusion"], progress=False)
    assert again["lines"][0].startswith("inclusion: 3 new pairs")
    for name in ("Source Images/In_1.bmp", "Ground truth/In_2.png"):  # a pair depends only on seed and name
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    kept = generate_dfmgan(trained, 3, tmp_path / "again", seed=7, classes=["inclusion"], progress=False)
    assert kept["lines"][0].startswith("inclusion: 0 new pairs (3 kept)")


def test_generate_refuses_untrained_classes_and_foreign_folders(trained, tmp_path):
    with pytest.raises(DefFillerError, match="patches"):
        generate_dfmgan(trained, 1, tmp_path / "x", classes=["patches"], progress=False)
    with pytest.raises(DefFillerError, match="not a DFMGAN model folder"):
        generate_dfmgan(tmp_path, 1, tmp_path / "x", progress=False)
    assert main(["baseline", "dfmgan", "generate", "--model", str(tmp_path), "--per-class", "1",
                 "--out", str(tmp_path / "x")]) == 2
