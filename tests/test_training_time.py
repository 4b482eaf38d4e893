"""Fig. 10's training times: every trainer records the wall time of its whole training, summed over resumes, in its
summary, and the experiments read those summaries (not the seconds of the logged steps, which miss the others).

A fake clock advances 10 s per training step, so the expected totals are exact; each run is killed once after a
checkpoint and resumed. The step killed mid-way is not counted: nothing it computed was kept."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

import deffiller.detection.train as detect_train
import deffiller.utils.clock as clock
from deffiller.baselines.dfmgan.train import fit
from deffiller.experiments.baselines import training_seconds_tree
from deffiller.experiments.common import training_seconds
from deffiller.training.loop import TrainingTask, LoopConfig, checkpoint_dirs, train

STEP_SECONDS = 10.0


class Killed(Exception):
    pass


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def fake_time(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(clock, "time", fake)
    return fake


class LinearTask(TrainingTask):
    def __init__(self, fake: FakeTime, kill_at_call: int | None = None):
        super().__init__()
        self.layer, self.fake, self.calls, self.kill_at_call = torch.nn.Linear(2, 1), fake, 0, kill_at_call

    def trainable_groups(self):
        return {"layer": list(self.layer.parameters())}

    def forward(self, batch, generator):
        self.fake.now += STEP_SECONDS
        self.calls += 1
        if self.calls == self.kill_at_call:
            raise Killed
        return self.layer(batch["x"]).pow(2).mean()


def test_the_loop_sums_wall_time_over_resumes(tmp_path, fake_time):
    dataset = [{"x": torch.full((2,), float(i))} for i in range(4)]
    config = LoopConfig(max_steps=6, batch_size=2, warmup_steps=0, checkpoint_every=2, log_every=5, device="cpu")
    with pytest.raises(Killed):  # killed in step 3, after the checkpoint of step 2
        train(LinearTask(fake_time, kill_at_call=3), dataset, config, tmp_path, progress=False)
    summary = train(LinearTask(fake_time), dataset, config, tmp_path, resume=True, progress=False)
    assert summary["train_seconds"] == 6 * STEP_SECONDS
    assert training_seconds(tmp_path) == 6 * STEP_SECONDS
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [5, 6]  # what summing the log's seconds would have counted


class FakeGANTask(TrainingTask):
    """What `fit` needs of a DFMGAN stage: its settings, one optimizer per network, a step of several updates."""

    def __init__(self, fake: FakeTime, kill_at_step: int | None = None):
        super().__init__()
        self.cfg = SimpleNamespace(log_every=50, checkpoint_every=2, batch=4, lr=0.1, betas=(0.0, 0.99), device="cpu")
        self.G, self.D = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
        self.fake, self.kill_at_step = fake, kill_at_step

    def trainable_groups(self):
        return {"G": list(self.G.parameters()), "D": list(self.D.parameters())}

    def configure_optimizers(self, config):
        return {name: (torch.optim.Adam(params, lr=config.lr), None) for name, params in self.trainable_groups().items()}

    def training_step(self, model, batch, generator, step, update):
        self.fake.now += STEP_SECONDS
        if step + 1 == self.kill_at_step:
            raise Killed
        for name in ("G", "D"):
            update(getattr(self, name)(batch["x"]).pow(2).mean(), name)
        return {"loss_G": 1.0}


REALS = [{"x": torch.ones(2)}] * 4


def test_dfmgan_stages_record_their_time_and_the_tree_sums_stages_and_classes(tmp_path, fake_time):
    stage1 = tmp_path / "dfmgan" / "stage1"
    with pytest.raises(Killed):
        fit(FakeGANTask(fake_time, kill_at_step=5), REALS, 6, stage1, 0, False, "stage 1", progress=False)
    fit(FakeGANTask(fake_time), REALS, 6, stage1, 0, True, "stage 1", progress=False)
    assert training_seconds(stage1) == 6 * STEP_SECONDS
    for label, steps in (("inclusion", 3), ("patches", 2), ("scratches", 1)):
        fit(FakeGANTask(fake_time), REALS, steps, tmp_path / "dfmgan" / label, 0, False, label, progress=False)
    assert training_seconds_tree(tmp_path / "dfmgan") == (6 + 3 + 2 + 1) * STEP_SECONDS
    # the log holds only the steps at log_every and the last: its seconds would undercount
    assert [json.loads(line)["step"] for line in (stage1 / "metrics.jsonl").read_text().splitlines()] == [6]


def test_a_tree_of_fake_summaries_sums_and_unknown_times_stay_unknown(tmp_path):
    runs = {"stage1": 100.5, "inclusion": 20.0, "patches": 30.25, "scratches": 10.0}
    for name, seconds in runs.items():
        (tmp_path / "m" / name).mkdir(parents=True)
        (tmp_path / "m" / name / "run_summary.json").write_text(json.dumps({"train_seconds": seconds}))
        (tmp_path / "m" / name / "metrics.jsonl").write_text(json.dumps({"step": 50, "seconds": 0.5}) + "\n")
    assert training_seconds_tree(tmp_path / "m") == sum(runs.values())
    (tmp_path / "m" / "patches" / "run_summary.json").write_text(json.dumps({"train_seconds": None}))
    assert math.isnan(training_seconds_tree(tmp_path / "m"))  # a run from before times were recorded
    (tmp_path / "m" / "patches" / "run_summary.json").write_text(json.dumps({"train_seconds": 30.25}))
    (tmp_path / "m" / "stage1" / "run_summary.json").unlink()  # a stage trained before summaries were written
    assert math.isnan(training_seconds_tree(tmp_path / "m"))
    assert math.isnan(training_seconds_tree(tmp_path / "empty")) and math.isnan(training_seconds(tmp_path / "none"))


def test_a_checkpoint_without_a_recorded_time_gives_an_unknown_total(tmp_path, fake_time):
    run = tmp_path / "stage"
    with pytest.raises(Killed):
        fit(FakeGANTask(fake_time, kill_at_step=3), REALS, 4, run, 0, False, "s", progress=False)
    state_file = checkpoint_dirs(run)[-1] / "loop_state.json"
    state = json.loads(state_file.read_text())
    del state["train_seconds"]
    state_file.write_text(json.dumps(state))
    fit(FakeGANTask(fake_time), REALS, 4, run, 0, True, "s", progress=False)
    assert math.isnan(training_seconds(run))


def test_detector_training_sums_wall_time_over_resumes(synth_dataset, tmp_path, fake_time, monkeypatch):
    from deffiller.data.layout import load_pairs

    build, forwards = detect_train.create_detector, []

    def timed_detector(*args, **kwargs):
        net = build(*args, **kwargs)
        net.register_forward_pre_hook(tick)
        return net

    def tick(*_):
        fake_time.now += STEP_SECONDS
        forwards.append(1)
        if len(forwards) == 3:  # killed in step 3, after the checkpoint of step 2
            raise Killed

    monkeypatch.setattr(detect_train, "create_detector", timed_detector)
    cfg = detect_train.DetectConfig(epochs=4, max_steps=4, batch_size=4, input_size=32, checkpoint_every=1)
    pairs = load_pairs(synth_dataset)[:4]
    with pytest.raises(Killed):
        detect_train.train_detector("minet", pairs, tmp_path, cfg)
    detect_train.train_detector("minet", pairs, tmp_path, cfg, resume=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train_seconds"] == 4 * STEP_SECONDS
