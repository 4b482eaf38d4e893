"""The floor and spread under the generation tables: the `real` rows (disjoint real sets through the resolution path,
with KID), mask adherence (`mask S`) by a judge, Table 1's rows, and the claims check reading the tables as written."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from deffiller.config import REPO_ROOT, load_profile
from deffiller.data.layout import IMAGE_DIRS, MASK_DIRS, load_pairs
from deffiller.data.source import DatasetSource
from deffiller.errors import DefFillerError
from deffiller.evaluation.mask_adherence import JudgeConfig, judge_note, mask_adherence
from deffiller.experiments import common, generation
from deffiller.experiments.common import KID, MASK_S, NOTE, REAL, ExperimentsConfig, fid_frame
from deffiller.experiments.masks import round_trip
from deffiller.training.mask_ddpm import MaskDDPMConfig
from deffiller.reporting.claims import HOLDS, check_claims, floor_measures
from deffiller.reporting.outputs import Outputs
from deffiller.reporting.paper import paper_table
from deffiller.utils.io import read_image, save_image

OFFICIAL = REPO_ROOT.parent / "shared" / "weights" / "minet" / "MINet.pth"


@pytest.fixture
def judge():
    if not OFFICIAL.is_file():
        pytest.skip(f"official MINet checkpoint not found at {OFFICIAL}")
    return JudgeConfig(weights=str(OFFICIAL), input_size=192, device="cpu")


def _profile(tmp_path, **overrides):
    """tiny writing under tmp_path; 2 eval pairs per class (the synthetic set has 4: 2 for the floor)."""
    return load_profile("tiny", {"paths.outputs": str(tmp_path / "outputs"), "paths.figures": str(tmp_path / "figures"),
                                 "experiments.eval_per_class": 2, "experiments.judge.weights": str(OFFICIAL),
                                 "vae.max_steps": 2, **overrides})


def test_floor_set_is_disjoint_same_count_and_through_the_resolution_path(tmp_path, synth_dataset):
    profile = _profile(tmp_path)
    reference, floor = common.floor_sets(profile, DatasetSource(synth_dataset, synthetic=True))
    assert reference == common.eval_set(profile, DatasetSource(synth_dataset, synthetic=True))
    ours, theirs = load_pairs(reference), load_pairs(floor)
    assert not {p.name for p in ours} & {p.name for p in theirs}
    count = lambda pairs: pd.Series([p.label for p in pairs]).value_counts().to_dict()  # noqa: E731
    assert count(ours) == count(theirs) == {"inclusion": 2, "patches": 2, "scratches": 2}
    for pair in theirs:
        original = read_image(synth_dataset / IMAGE_DIRS[0] / pair.image.name)
        written = read_image(pair.image)
        assert written.shape == original.shape == (200, 200)
        assert np.array_equal(written, common.through_resolution(synth_dataset / IMAGE_DIRS[0] / pair.image.name, 64, 200))
        assert np.abs(written.astype(int) - original).mean() > 0.5  # 64 px and back lost detail
        assert np.array_equal(read_image(pair.mask), read_image(synth_dataset / MASK_DIRS[0] / pair.mask.name))
    # a profile at another resolution rebuilds the floor set instead of reusing it
    other = _profile(tmp_path, **{"data.image_size": 32})
    _, again = common.floor_sets(other, DatasetSource(synth_dataset, synthetic=True))
    image = load_pairs(again)[0].image
    assert np.array_equal(read_image(image), common.through_resolution(synth_dataset / IMAGE_DIRS[0] / image.name, 32, 200))


def test_floor_needs_two_disjoint_sets(tmp_path, synth_dataset):
    with pytest.raises(DefFillerError, match="experiments.floor_per_class to at most 2"):
        common.floor_sets(_profile(tmp_path, **{"experiments.eval_per_class": 3}), DatasetSource(synth_dataset, True))
    reference, floor = common.floor_sets(_profile(tmp_path, **{"experiments.eval_per_class": 3,
                                                               "experiments.floor_per_class": 1}),
                                         DatasetSource(synth_dataset, True))
    assert [p.name for p in load_pairs(reference)] == ["In_1", "Pa_1", "Sc_1"]
    assert [p.name for p in load_pairs(floor)] == ["In_2", "Pa_2", "Sc_2"]


def test_real_row_has_fid_kid_and_mask_s(tmp_path, synth_dataset, judge):
    profile = _profile(tmp_path)
    row = common.floor_row(profile, DatasetSource(synth_dataset, synthetic=True), "strategy")
    assert row["strategy"] == REAL and "2 per class" in row[NOTE]
    assert all(math.isfinite(row[c]) and row[c] > 0 for c in ("inclusion", "patches", "scratches", "AVG"))
    assert row["AVG"] == pytest.approx(np.mean([row[c] for c in ("inclusion", "patches", "scratches")]))
    assert math.isfinite(row[KID]) and 0 <= row[MASK_S] <= 1
    frame = fid_frame([{"strategy": "gligen", "AVG": 1.0, NOTE: "x", MASK_S: 0.5, KID: 0.1}, row],
                      profile.data.classes)
    assert list(frame.columns) == ["strategy", "inclusion", "patches", "scratches", "AVG", KID, MASK_S, NOTE]


def test_mask_floor_goes_through_the_producer_resolution(synth_dataset):
    cfg = MaskDDPMConfig(resolution=16, upsample="nearest")
    path = sorted((synth_dataset / MASK_DIRS[0]).iterdir())[0]
    original, trip = read_image(path) > 127, round_trip(path, cfg, 200)
    assert trip.shape == (200, 200) and set(np.unique(trip)) <= {0, 255}
    # nearest from 16 px: blocks, at most 16 distinct rows and columns, no longer the original mask
    assert not np.array_equal(trip > 127, original) and (trip > 127).any()
    assert len(np.unique(trip, axis=0)) <= 16 and np.unique(trip, axis=1).shape[1] <= 16 < len(np.unique(original, axis=0))


def test_mask_adherence_tells_an_image_that_follows_its_mask(tmp_path, synth_dataset, judge):
    """A dark defect painted on grey texture where the mask says scores far above the same defect misplaced (the mask
    turned 180 degrees) and above noise. (A bare white-on-black mask is no steel image: MINet marks its background.)"""
    masks = sorted((synth_dataset / MASK_DIRS[0]).iterdir())
    rng = np.random.default_rng(0)
    paint = lambda m: np.clip(rng.normal(140, 12, m.shape) - 70 * (m > 127), 0, 255).astype(np.uint8)  # noqa: E731
    cases = {"follows": paint, "misplaced": lambda m: paint(m[::-1, ::-1]),
             "noise": lambda m: rng.integers(0, 256, m.shape, np.uint8)}
    for name, image_of in cases.items():
        (tmp_path / name / MASK_DIRS[0]).mkdir(parents=True)
        for path in masks:
            shutil.copy(path, tmp_path / name / MASK_DIRS[0] / path.name)
            save_image(tmp_path / name / IMAGE_DIRS[0] / f"{path.stem}.bmp", image_of(read_image(path)))
    s = {name: mask_adherence(tmp_path / name, judge, tmp_path / "cache") for name in cases}
    assert s["follows"] > 0.7 and s["follows"] > max(s["misplaced"], s["noise"]) + 0.2, s
    # the second time it comes from the cache
    assert mask_adherence(tmp_path / "follows", judge, tmp_path / "cache") == s["follows"]
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_a_missing_judge_is_an_error_or_an_empty_column(tmp_path):
    absent = JudgeConfig(weights=str(tmp_path / "absent.pth"))
    with pytest.raises(DefFillerError, match="absent.pth.*if_missing: skip"):
        mask_adherence(tmp_path, absent)
    skip = JudgeConfig(weights=str(tmp_path / "absent.pth"), if_missing="skip")
    assert math.isnan(mask_adherence(tmp_path, skip)) and "not computed" in judge_note(skip)
    with pytest.raises(DefFillerError, match="if_missing"):
        mask_adherence(tmp_path, JudgeConfig(if_missing="ignore"))


def test_table1_rows_are_the_papers(tmp_path):
    cfg = load_profile("tiny").section(ExperimentsConfig)
    assert generation.table1_rows(cfg) == [("no adaptation", "gligen", False), ("sd", "sd", True),
                                           ("gligen", "gligen", True), ("scratch", "scratch", True)]
    assert set(paper_table("table1")["strategy"]) == {"no adaptation", "sd", "gligen"}
    assert "beyond the paper" in generation.table1_note("scratch", "scratch", 6)
    assert "beyond the paper" not in generation.table1_note("sd", "sd", 6)
    assert generation.table1_note("no adaptation", "gligen", 0) == "gligen prior as loaded, 0 training steps"
    for profile in ("tiny", "smoke", "paper"):
        cfg = load_profile(profile).section(ExperimentsConfig)
        assert cfg.no_adaptation and cfg.main_init in cfg.inits


def test_no_adaptation_trains_zero_steps(tmp_path, synth_dataset):
    profile = _profile(tmp_path)
    source = DatasetSource(synth_dataset, synthetic=True)
    summary = generation.train(profile, source, "scratch", adapted=False)
    run = generation.model_run(profile, "scratch", adapted=False)
    assert run != generation.model_run(profile, "scratch") and summary["step"] == 0
    assert (run / "model" / "model_index.json").is_file() and not (run / "checkpoints").exists()


def test_claims_read_the_tables_as_the_notebooks_write_them(tmp_path):
    profile = _profile(tmp_path)
    outputs = Outputs(profile, "test")
    classes = profile.data.classes

    def row(key, label, fid, s, **extra):
        return {key: label, **{c: fid for c in classes}, "AVG": fid, KID: 0.01, MASK_S: s, **extra}

    table1 = [row("strategy", "no adaptation", 300.0, 0.4, note="gligen prior as loaded, 0 training steps"),
              row("strategy", "sd", 80.0, 0.6), row("strategy", "gligen", 50.0, 0.8),
              row("strategy", "scratch", 350.0, 0.3, note="scratch init, 6 training steps; beyond the paper"),
              row("strategy", REAL, 40.0, 0.9, note="two disjoint sets")]
    outputs.table("table1", fid_frame(table1, classes))
    outputs.table("table2", fid_frame([row("guidance", 3.0, 50.0, 0.8), row("guidance", 7.0, 60.0, 0.7),
                                       row("guidance", REAL, 40.0, 0.9)], classes))
    outputs.table("fid_seeds", fid_frame([{k: v for k, v in row("seed", s, f, 0.8).items()} for s, f in
                                          ((0, 50.0), (1, 51.0))], classes))
    claims = check_claims(outputs.folder).set_index("claim")["verdict"]
    assert claims.filter(like="lowest AVG FID of the paper's rows").item() == HOLDS  # 50 vs 80, 300; spread 1
    assert claims.filter(like="no adaptation gives the highest").item() == HOLDS
    assert claims.filter(like="guidance 3 gives the lowest").item() == HOLDS  # `real` is not a guidance
    floor = floor_measures(outputs.folder).set_index(["table", "measure"])["this run"]
    assert floor[("Table 1", "AVG FID, DefFiller / real")] == "1.25"
    assert floor[("Table 1", "mask S, real - DefFiller")] == "0.100"


def test_judge_note_names_the_size_the_judge_runs_at():
    assert "run at its official test size, draws" in judge_note(JudgeConfig())
    assert "run at 224 px, draws" in judge_note(JudgeConfig(input_size=224))
