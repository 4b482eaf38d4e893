"""The generic training loop: exact resume, trainable-only checkpoints, NaN stop, batches and warmup."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from deffiller.errors import DefFillerError
from deffiller.training.loop import (TrainingTask, LoopConfig, StepBatches, TrainingDiverged, checkpoint_dirs,
                                     step_generator, train)


class Regression(TrainingTask):
    """A frozen feature layer and a trained head; noise from the step generator."""

    def __init__(self, fail_at_call: int | None = None, nan: bool = False, noise: float = 0.1):
        super().__init__()
        self.noise = noise
        torch.manual_seed(0)
        self.features = torch.nn.Linear(4, 4).requires_grad_(False)
        self.head = torch.nn.Linear(4, 1)
        self.fail_at_call, self.nan, self.calls = fail_at_call, nan, 0

    def trainable_groups(self):
        return {"head": list(self.head.parameters())}

    def forward(self, batch, generator):
        self.calls += 1
        if self.calls == self.fail_at_call:
            raise KeyboardInterrupt
        x = batch["x"] + self.noise * torch.randn(batch["x"].shape, generator=generator, device=generator.device)
        loss = ((self.head(self.features(x)).squeeze(-1) - batch["y"]) ** 2).mean()
        return loss * float("nan") if self.nan and self.calls == 3 else loss


class Points(torch.utils.data.Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return {"x": torch.randn(4, generator=torch.Generator().manual_seed(i)), "y": torch.tensor(float(i))}


CONFIG = LoopConfig(max_steps=7, batch_size=3, lr=0.05, warmup_steps=3, checkpoint_every=2, device="cpu")


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_reaches_the_weights_of_an_uninterrupted_run(tmp_path):
    whole = train(Regression(), Points(), CONFIG, tmp_path / "whole", seed=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(Regression(fail_at_call=6), Points(), CONFIG, tmp_path / "cut", seed=3, progress=False)
    assert [p.name for p in checkpoint_dirs(tmp_path / "cut")] == ["step-4"]
    assert len(_losses(tmp_path / "cut")) == 5  # step 5 was logged after the last checkpoint
    resumed = train(Regression(), Points(), CONFIG, tmp_path / "cut", seed=3, resume=True, progress=False)
    assert resumed["resumed_from"] == 4 and whole["resumed_from"] is None
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "whole")
    final = {k: load_file(tmp_path / r / "checkpoints/step-7/trainable.safetensors") for k, r in (("a", "whole"), ("b", "cut"))}
    assert final["a"].keys() == {"head.weight", "head.bias"}  # frozen weights are not checkpointed
    for key in final["a"]:
        assert torch.equal(final["a"][key], final["b"][key])
    assert not torch.equal(final["a"]["head.weight"], Regression().head.weight.detach())


def test_existing_run_needs_resume_and_summary_counts_groups(tmp_path):
    summary = train(Regression(), Points(), LoopConfig(max_steps=2, batch_size=2, warmup_steps=1, checkpoint_every=1,
                                                       keep_checkpoints=2, device="cpu"), tmp_path, progress=False)
    assert summary["parameters"]["trainable"] == {"head": 5}
    assert summary["parameters"]["frozen"] == {"features": 20}
    assert json.loads((tmp_path / "run_summary.json").read_text())["status"] == "done"
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-1", "step-2"]
    with pytest.raises(DefFillerError, match="--resume"):
        train(Regression(), Points(), CONFIG, tmp_path, progress=False)
    again = train(Regression(), Points(), LoopConfig(max_steps=2, batch_size=2, warmup_steps=1, checkpoint_every=1,
                                                     device="cpu"), tmp_path, resume=True, progress=False)
    assert again["status"] == "done" and again["final_loss"] == summary["final_loss"] and len(_losses(tmp_path)) == 2


def test_gradient_accumulation_reaches_the_weights_of_the_whole_batch(tmp_path):
    """Without noise (drawn per micro-batch) two accumulated micro-batches of 2 are one batch of 4."""
    config = LoopConfig(max_steps=3, batch_size=4, lr=0.05, warmup_steps=0, checkpoint_every=3, device="cpu")
    accumulated = dataclasses.replace(config, gradient_accumulation_steps=2)
    for name, cfg in (("whole", config), ("accumulated", accumulated)):
        train(Regression(noise=0.0), Points(), cfg, tmp_path / name, progress=False)
    a, b = (load_file(tmp_path / name / "checkpoints/step-3/trainable.safetensors") for name in ("whole", "accumulated"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert _losses(tmp_path / "whole") == pytest.approx(_losses(tmp_path / "accumulated"), abs=1e-6)
    state = json.loads((tmp_path / "accumulated/checkpoints/step-3/loop_state.json").read_text())
    assert (state["processes"], state["gradient_accumulation_steps"]) == (1, 2)


def test_resume_on_another_layout_says_so(tmp_path, capsys):
    config = LoopConfig(max_steps=2, batch_size=4, warmup_steps=0, checkpoint_every=1, device="cpu")
    train(Regression(), Points(), config, tmp_path, progress=False)
    capsys.readouterr()
    train(Regression(), Points(), dataclasses.replace(config, max_steps=3), tmp_path, resume=True, progress=False)
    assert "note:" not in capsys.readouterr().err
    train(Regression(), Points(), dataclasses.replace(config, max_steps=4, gradient_accumulation_steps=2), tmp_path,
          resume=True, progress=False)
    assert "1 process(es) x 1 accumulation step(s); resuming on 1 x 2" in capsys.readouterr().err


def test_nan_loss_stops_cleanly_and_names_the_step(tmp_path):
    with pytest.raises(TrainingDiverged, match="at step 3"):
        train(Regression(nan=True), Points(), CONFIG, tmp_path, progress=False)
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert summary["status"] == "diverged" and summary["step"] == 2
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-2"]


def test_stray_trainable_parameter_is_refused(tmp_path):
    task = Regression()
    task.features.weight.requires_grad_(True)
    with pytest.raises(ValueError, match="features.weight"):
        train(task, Points(), CONFIG, tmp_path, progress=False)


def test_warmup_is_linear_from_zero_then_constant(tmp_path):
    train(Regression(), Points(), CONFIG, tmp_path, progress=False)
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.0, 0.05 / 3, 0.1 / 3, 0.05, 0.05, 0.05, 0.05])


def test_batches_are_a_function_of_the_step_and_shard_across_processes():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    single = take(StepBatches(10, 4, seed=1, start_step=0), 6)
    assert sorted(sum(single[:5], [])) == sorted(list(range(10)) * 2)  # two whole epochs in 5 batches of 4
    assert take(StepBatches(10, 4, seed=1, start_step=3), 3) == single[3:]
    ranks = [take(StepBatches(10, 4, seed=1, start_step=0, process=r, processes=2), 6) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == single
    # one process accumulating 2 micro-batches a step takes both halves in the order of the two processes
    accumulated = take(StepBatches(10, 4, seed=1, start_step=0, accumulation=2), 12)
    assert accumulated == [half for pair in zip(*ranks) for half in pair]
    with pytest.raises(DefFillerError, match="multiple of 4"):
        StepBatches(10, 6, seed=1, start_step=0, processes=2, accumulation=2)


def test_step_generators_differ_by_step_and_process():
    draw = lambda *k: torch.rand(3, generator=step_generator(*k, device="cpu"))  # noqa: E731
    assert torch.equal(draw(0, 5, 0), draw(0, 5, 0))
    assert not torch.equal(draw(0, 5, 0), draw(0, 6, 0))
    assert not torch.equal(draw(0, 5, 0), draw(0, 5, 1))


# --- DefFiller on the loop -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from deffiller.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("deffiller_data") / "SD-saliency-900", per_class=2, seed=0)


def _final_unet(run):
    return load_file(run / "model" / "unet" / "diffusion_pytorch_model.safetensors")


def test_deffiller_resume_matches_an_uninterrupted_run(tmp_path, tiny_data, monkeypatch):
    from tiny_deffiller import tiny_profile

    from deffiller.training.deffiller import DefFillerTask, train_deffiller

    profile = tiny_profile(tmp_path, **{"train.max_steps": 5, "train.checkpoint_every": 2, "train.drop_prob": 0.5})
    whole = train_deffiller(profile, "scratch", tmp_path / "whole", data=tiny_data, progress=False)
    groups = whole["parameters"]["trainable"]
    assert set(groups) == {"fusers", "mask_encoder", "downsampler", "conv_in.weight"} and all(groups.values())
    assert set(whole["parameters"]["frozen"]) == {"unet", "vae", "text_encoder"}

    forward, calls = DefFillerTask.forward, []

    def interrupted(self, batch, generator):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return forward(self, batch, generator)

    monkeypatch.setattr(DefFillerTask, "forward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_deffiller(profile, "scratch", tmp_path / "cut", data=tiny_data, progress=False)
    monkeypatch.setattr(DefFillerTask, "forward", forward)
    assert [p.name for p in checkpoint_dirs(tmp_path / "cut")] == ["step-2"]
    resumed = train_deffiller(profile, "scratch", tmp_path / "cut", data=tiny_data, resume=True, progress=False)
    assert resumed["resumed_from"] == 2
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "whole")
    a, b = _final_unet(tmp_path / "whole"), _final_unet(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    untouched = _final_unet(tmp_path / "whole")["conv_in.bias"]
    from deffiller.data.layout import load_pairs
    from deffiller.training.parts import build_parts

    initial = build_parts(profile, "scratch", load_pairs(tiny_data), progress=False).unet
    assert torch.equal(untouched, initial.conv_in.bias.detach())  # frozen: the bias of conv_in never moves
    assert not torch.equal(a["conv_in.weight"], initial.conv_in.weight.detach())


def test_trainable_all_trains_the_backbone_too(tmp_path, tiny_data):
    from tiny_deffiller import tiny_profile

    from deffiller.data.layout import load_pairs
    from deffiller.errors import DefFillerError
    from deffiller.training.deffiller import train_deffiller
    from deffiller.training.parts import build_parts

    profile = tiny_profile(tmp_path, **{"train.max_steps": 2, "train.trainable": "all"})
    summary = train_deffiller(profile, "scratch", tmp_path / "all", data=tiny_data, progress=False)
    assert set(summary["parameters"]["trainable"]) == {"fusers", "mask_encoder", "downsampler", "conv_in.weight", "backbone"}
    assert set(summary["parameters"]["frozen"]) == {"vae", "text_encoder"}
    initial = build_parts(profile, "scratch", load_pairs(tiny_data), progress=False).unet
    trained = _final_unet(tmp_path / "all")
    assert not torch.equal(trained["conv_in.bias"], initial.conv_in.bias.detach())
    assert not torch.equal(trained["up_blocks.1.resnets.0.conv1.weight"], initial.up_blocks[1].resnets[0].conv1.weight.detach())
    with pytest.raises(DefFillerError, match="train.trainable"):
        train_deffiller(tiny_profile(tmp_path, **{"train.trainable": "most"}), "scratch", tmp_path / "bad", data=tiny_data,
                        progress=False)


def test_train_then_generate_from_the_command_line(tmp_path, tiny_data):
    import yaml

    from deffiller.cli import main
    from deffiller.config import configs_dir

    raw = yaml.safe_load((configs_dir() / "tiny.yaml").read_text())
    raw["paths"]["outputs"] = str(tmp_path / "outputs")
    raw["vae"]["max_steps"] = 2
    raw["train"]["max_steps"] = 2
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    assert main(["train", "--profile", str(tmp_path / "p.yaml"), "--init", "scratch", "--out", str(run),
                 "--data", str(tiny_data)]) == 0
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["status"] == "done" and summary["init"] == "scratch" and summary["step"] == 2
    assert main(["generate", "--model", str(run), "--masks", str(tiny_data / "Ground truth"), "--out", str(tmp_path / "g"),
                 "--profile", str(tmp_path / "p.yaml"), "--steps", "2"]) == 0
    assert len(list((tmp_path / "g" / "Source Images").glob("*.bmp"))) == 6
