"""Detector rows over several training seeds: mean and sample std per (network, method), runs cached per seed,
notes for short training and for rows that are equal in every metric."""
import json

import numpy as np
import pandas as pd
import pytest

from deffiller.config import load_profile
from deffiller.data.synth import synthesize
from deffiller.detection.protocols import IDENTICAL_NOTE, SHORT_NOTE, run_seeds, seed_table, substitution
from deffiller.detection.train import DetectConfig
from deffiller.errors import DefFillerError
from deffiller.experiments.detection import detector_tables
from deffiller.reporting.claims import read_table
from deffiller.reporting.outputs import Outputs


def runs(rows):
    return pd.DataFrame([{"network": n, "method": m, "seed": k, "S": s, "MAE": mae, "maxE": 0.5, "maxF": 0.4}
                         for n, m, k, s, mae in rows])


def test_seed_table_gives_mean_sample_std_and_notes():
    table = seed_table(runs([("minet", "None", 0, 0.70, 0.1), ("minet", "None", 1, 0.80, 0.2),
                             ("minet", "None", 2, 0.90, 0.3), ("minet", "DefFiller", 0, 0.75, 0.1),
                             ("csepnet", "None", 0, 0.5, 0.2), ("csepnet", "DefFiller", 0, 0.5, 0.2)]),
                       short_training=("csepnet",))
    assert list(table.columns) == ["network", "method", "S", "MAE", "maxE", "maxF", "S std", "MAE std", "maxE std",
                                   "maxF std", "seeds", "note"]
    assert list(zip(table["network"], table["method"])) == [("minet", "None"), ("minet", "DefFiller"),
                                                            ("csepnet", "None"), ("csepnet", "DefFiller")]
    none = table.iloc[0]
    assert none["S"] == pytest.approx(0.8) and none["S std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert none["seeds"] == 3 and none["maxE std"] == 0 and none["note"] == ""
    assert np.isnan(table.iloc[1]["S std"]) and table.iloc[1]["seeds"] == 1  # one seed: no std
    assert list(table["note"][2:]) == [f"{SHORT_NOTE}; {IDENTICAL_NOTE}"] * 2  # equal in every metric


def test_run_seeds_come_from_the_profile_seed_and_are_checked(synth_dataset, tmp_path):
    cfg = DetectConfig(seeds={"minet": 3})
    assert run_seeds(cfg, "minet", 5) == [5, 6, 7] and run_seeds(cfg, "csepnet", 5) == [5]
    with pytest.raises(DefFillerError, match="detect.seeds.minet"):
        run_seeds(DetectConfig(seeds={"minet": 0}), "minet", 0)
    profile = load_profile("tiny", {"detect.seeds": {"minnet": 2}})
    with pytest.raises(DefFillerError, match=r"detect.seeds: unknown network\(s\) \['minnet'\]"):
        substitution(synth_dataset, {}, profile, tmp_path, nets=["minet"])
    profile = load_profile("tiny", {"detect.short_training": ["tsrenet"]})
    with pytest.raises(DefFillerError, match=r"detect.short_training: unknown network\(s\) \['tsrenet'\]"):
        substitution(synth_dataset, {}, profile, tmp_path, nets=["minet"])
    profile = load_profile("tiny", {"detect.max_steps": {"minnet": 5}})
    with pytest.raises(DefFillerError, match=r"detect.max_steps: unknown network\(s\) \['minnet'\]"):
        substitution(synth_dataset, {}, profile, tmp_path, nets=["minet"])


def test_max_steps_per_network(tmp_path):
    from deffiller.data.layout import load_pairs
    from deffiller.detection.train import train_detector

    pairs = load_pairs(synthesize(tmp_path / "real", per_class=2, seed=0))
    cfg = DetectConfig(max_steps={"minet": 2, "csepnet": 50}, batch_size=2, input_size=64, checkpoint_every=100)
    train_detector("minet", pairs, tmp_path / "capped", cfg)
    assert json.loads((tmp_path / "capped" / "summary.json").read_text())["steps"] == 2
    train_detector("minet", pairs, tmp_path / "uncapped", DetectConfig(max_steps={"csepnet": 1}, epochs=1, batch_size=2,
                                                                       input_size=64, checkpoint_every=100))
    assert json.loads((tmp_path / "uncapped" / "summary.json").read_text())["steps"] == 3  # one epoch of 6 pairs


def test_substitution_trains_each_row_with_its_seeds_and_caches_each_run(tmp_path):
    real = synthesize(tmp_path / "real", per_class=5, seed=0)
    generated = synthesize(tmp_path / "gen", per_class=5, seed=7)
    overrides = {"detect.max_steps": 1, "data.per_class": None, "seed": 3}
    one = substitution(real, {"synthetic": generated}, load_profile("tiny", overrides), tmp_path / "out",
                       nets=["minet"])
    assert list(one["seed"]) == [3, 3]
    first = tmp_path / "out" / "substitution" / "minet" / "synthetic" / "seed3" / "scores.json"
    written = first.stat().st_mtime_ns

    two_seeds = load_profile("tiny", {**overrides, "detect.seeds": {"minet": 2}})
    two = substitution(real, {"synthetic": generated}, two_seeds, tmp_path / "out", nets=["minet"])
    assert list(zip(two["method"], two["seed"])) == [("None", 3), ("synthetic", 3), ("None", 4), ("synthetic", 4)]
    assert first.stat().st_mtime_ns == written  # the seed already run is read back, not retrained
    assert json.loads((first.parent.parent / "seed4" / "scores.json").read_text())["seed"] == 4
    assert two.iloc[0]["S"] != two.iloc[2]["S"]  # another seed, another model
    table = seed_table(two)
    assert list(table["seeds"]) == [2, 2] and (table["S std"] > 0).all()


def test_tables_5_and_8_follow_the_schema(tmp_path):
    profile = load_profile("tiny", {"paths.figures": str(tmp_path), "detect.short_training": ["csepnet"]})
    outputs = Outputs(profile, "08_substitution")
    detector_tables(outputs, "table5", runs([("minet", "None", 0, 0.7, 0.1), ("minet", "None", 1, 0.8, 0.2),
                                              ("csepnet", "None", 0, 0.6, 0.1)]), profile, "Table 5")
    table = read_table(tmp_path / "table5.csv")
    assert list(table.columns) == ["network", "method", "S", "MAE", "maxE", "maxF", "S std", "MAE std", "maxE std",
                                   "maxF std", "seeds", "note"]
    assert list(table["method"]) == ["None", "None"] and list(table["network"]) == ["MINet", "CSEPNet"]
    assert list(table["note"].fillna("")) == ["", SHORT_NOTE]
    assert len(pd.read_csv(tmp_path / "table5_detail.csv")) == 3  # every run
