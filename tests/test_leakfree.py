"""The leak-free protocol (beyond the paper): every generator a protocol uses trains only on the detectors' training
split, into its own folders, and the table, the report section and the claims follow. The generators and detectors are
replaced by recorders (what each trainer would train on is resolved from the arguments it gets, as the trainers
themselves resolve them; tests/test_train_split.py proves each trainer keeps to a manifest's train rows)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tiny_deffiller import tiny_profile

import deffiller.experiments.baselines as baselines
import deffiller.experiments.generation as generation
import deffiller.experiments.leakfree as leakfree
import deffiller.experiments.masks as masks
import deffiller.experiments.priors as priors
from deffiller.config import load_profile
from deffiller.data.splits import read_manifest, training_pairs
from deffiller.detection.protocols import expansion_pairs, substitution_pairs
from deffiller.detection.train import DetectConfig
from deffiller.errors import DefFillerError
from deffiller.reporting.claims import HOLDS, NOT_RUN, check_claims
from deffiller.reporting.report import build_report

# protocol -> (detector split, generators trained, methods of its table, table)
PROTOCOLS = {
    "expansion": (expansion_pairs, {"deffiller", "mask_ddpm", "adabldm", "dfmgan", "sd-like prior",
                                    "gligen-like prior"}, {"DFMGAN", "AdaBLDM", "DefFiller"}, "table8_leakfree"),
    "substitution": (substitution_pairs, {"deffiller", "adabldm", "sd-like prior", "gligen-like prior"},
                     {"AdaBLDM", "DefFiller"}, "table5_leakfree"),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """10 pairs per class: both splits have test pairs (expansion 2 train / 8 test, substitution 9 / 1)."""
    from deffiller.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth") / "SD-saliency-900", per_class=10, seed=0)


@pytest.fixture
def recorded(dataset, tmp_path, monkeypatch):
    """The tiny profile on `dataset` with every trainer, generator and detector protocol replaced by a recorder."""
    monkeypatch.setenv("DEFFILLER_DATASET", str(dataset))
    calls = {}

    def trainer(name, result=lambda out: {}):
        def fake(profile, *args, **kwargs):
            out = Path(kwargs.get("out_dir") or args[-1])
            pairs, described = training_pairs(profile, kwargs.get("data"), kwargs.get("train_manifest"))
            calls[name] = {"pairs": {p.name for p in pairs}, "out": out, "data": described, "profile": profile}
            return result(out)
        return fake

    def prior(name):
        def fake(profile, *args):
            pairs = args[0] if len(args) == 3 else None  # build_sd_like(profile, pairs, out, cfg)
            calls[name] = {"pairs": pairs and {p.name for p in pairs}, "out": Path(args[-2]), "profile": profile}
            return Path(args[-2])
        return fake

    def protocol(real_root, generated, profile, out, trainer=None):
        calls["detectors"] = {"generated": dict(generated), "out": Path(out)}
        return pd.DataFrame([{"network": net, "method": method, "seed": profile.seed, "S": 0.5 + 0.01 * i, "MAE": 0.1,
                              "maxE": 0.5, "maxF": 0.5, "meanF": 0.4, "wF": 0.4, "n_train": 2, "n_test": 8}
                             for net in profile.section(DetectConfig).nets
                             for i, method in enumerate(["None", *generated])])

    monkeypatch.setattr(generation, "train_deffiller", trainer("deffiller"))
    monkeypatch.setattr(masks, "train_mask_ddpm", trainer("mask_ddpm", lambda out: {"model": str(out / "model")}))
    monkeypatch.setattr(baselines, "train_adabldm", trainer("adabldm"))
    monkeypatch.setattr(baselines, "train_dfmgan", trainer("dfmgan"))
    monkeypatch.setattr(priors, "build_sd_like", prior("sd-like prior"))
    monkeypatch.setattr(priors, "build_gligen_like", prior("gligen-like prior"))
    for module, name in ((generation, "generate_from_masks"), (masks, "sample_masks"),
                         (baselines, "generate_adabldm"), (baselines, "generate_dfmgan")):
        monkeypatch.setattr(module, name, lambda *a, **k: {})
    monkeypatch.setattr(leakfree, "expansion", protocol)
    monkeypatch.setattr(leakfree, "substitution", protocol)
    profile = tiny_profile(tmp_path, **{"paths.figures": str(tmp_path / "figures"),
                                        "leak_free.substitution": True})
    return profile, calls


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_no_generator_sees_a_detector_test_image(recorded, dataset, protocol):
    profile, calls = recorded
    detector_split, trained, methods, _ = PROTOCOLS[protocol]
    outputs = leakfree.run(profile, protocol)
    split = detector_split(dataset, profile)
    train, test = ({p.name for p in split[side]} for side in ("train", "test"))
    assert test and train and not train & test

    manifest = leakfree.root(profile, protocol) / "split.csv"  # what the generators were given: the detectors' split
    assert {p.name for p in read_manifest(manifest, "train")} == train
    assert {p.name for p in read_manifest(manifest, "test")} == test

    assert set(calls) == trained | {"detectors"}
    root = leakfree.root(profile, protocol)
    for name in trained:
        call = calls[name]
        assert call["out"].is_relative_to(root), name  # its own run folder, the paper's runs untouched
        if call["pairs"] is not None:  # the GLIGEN-like prior trains on synthetic scenes only
            assert call["pairs"] == train and not call["pairs"] & test, name
    assert calls["deffiller"]["data"] == f"{manifest} (train rows)"
    # the generators start from the stand-in priors rebuilt on the split, not from those of notebook 03
    sd_weights = calls["deffiller"]["profile"].raw["model"]["sd_weights"]
    assert Path(sd_weights) == calls["sd-like prior"]["out"] and Path(sd_weights).is_relative_to(root)
    own = calls["deffiller"]["profile"]  # what a command launched on several processes loads: this very profile
    assert load_profile(own.source, own.overrides) == own and own.path("outputs") == profile.path("outputs")

    generated = calls["detectors"]["generated"]
    assert set(generated) == methods and all(Path(p).is_relative_to(root) for p in generated.values())
    assert calls["detectors"]["out"].is_relative_to(root)
    provenance = json.loads((outputs.folder / f"provenance_{outputs.notebook}.json").read_text())
    assert provenance["leak_free"]["train_split"] == str(manifest)


def test_the_table_has_every_network_and_method(recorded):
    profile, _ = recorded
    leakfree.run(profile, "expansion")
    figures = profile.path("figures")
    table = pd.read_csv(figures / "table8_leakfree.csv", keep_default_na=False)
    nets = {"csepnet": "CSEPNet", "minet": "MINet"}
    assert [(r.network, r.method) for r in table.itertuples()] == [
        (nets[n], m) for n in profile.section(DetectConfig).nets for m in ("None", "DFMGAN", "AdaBLDM", "DefFiller")]
    assert set(pd.read_csv(figures / "table8_leakfree_detail.csv")["method"].fillna("None")) == {
        "None", "DFMGAN", "AdaBLDM", "DefFiller"}
    assert "leak-free (beyond the paper)" in (figures / "table8_leakfree.md").read_text()


def test_real_data_only_runs_are_reused_from_the_paper_protocol(recorded):
    profile, _ = recorded
    paper = profile.path("outputs") / "detection" / "expansion" / "minet"
    for method in ("None", "DefFiller"):
        (paper / method / "seed0").mkdir(parents=True)
        (paper / method / "seed0" / "scores.json").write_text(json.dumps({"method": method}))
    leakfree.run(profile, "expansion")
    ours = leakfree.root(profile, "expansion") / "detection" / "expansion" / "minet"
    assert json.loads((ours / "None" / "seed0" / "scores.json").read_text()) == {"method": "None"}
    assert not (ours / "DefFiller").exists()  # generated data differs: trained anew


def test_generators_of_another_split_are_not_reused(recorded):
    profile, _ = recorded
    leakfree.run(profile, "expansion")
    reseeded = tiny_profile(profile.path("outputs").parent, seed=1, **{"paths.figures": str(profile.path("figures"))})
    with pytest.raises(DefFillerError, match="trained on the train rows of .*split.csv, not on this run's split"):
        leakfree.run(reseeded, "expansion")


def test_off_in_the_profile_makes_nothing(recorded):
    profile, calls = recorded
    assert leakfree.run(tiny_profile(profile.path("outputs").parent, **{"leak_free.expansion": False})) is None
    assert not calls and not leakfree.root(profile, "expansion").exists()
    with pytest.raises(DefFillerError, match="unknown leak-free protocol"):
        leakfree.run(profile, "standard")


def _table8(s_none: float, s_deffiller: float, s_dfmgan: float) -> pd.DataFrame:
    return pd.DataFrame([{"network": "MINet", "method": m, "S": s, "MAE": 0.1, "maxE": 0.5, "maxF": 0.5, "S std": 0.01,
                          "MAE std": 0.01, "maxE std": 0.01, "maxF std": 0.01, "seeds": 3, "note": ""}
                         for m, s in (("None", s_none), ("DFMGAN", s_dfmgan), ("DefFiller", s_deffiller))])


def test_report_section_and_claims_on_the_leak_free_table(tmp_path):
    profile = tiny_profile(tmp_path, **{"paths.figures": str(tmp_path)})
    text = build_report(profile)[0].read_text()
    assert "### Table 8, leak-free (beyond the paper)" in text
    assert "_Not run: `leak_free.expansion` is off in this profile, or notebook 09 has not run" in text
    claims = check_claims(tmp_path)
    assert set(claims.loc[claims["table"] == "Table 8 (leak-free)", "verdict"]) == {NOT_RUN}

    _table8(0.70, 0.75, 0.69).to_csv(tmp_path / "table8.csv", index=False)
    _table8(0.70, 0.60, 0.65).to_csv(tmp_path / "table8_leakfree.csv", index=False)  # the gain does not survive
    text = build_report(profile)[0].read_text()
    section = text.split("### Table 8, leak-free (beyond the paper)")[1].split("###")[0]
    assert "0.6" in section and "Not run" not in section
    assert text.index("### Table 8:") < text.index("### Table 8, leak-free")
    claims = check_claims(tmp_path).set_index(["table", "claim"])["verdict"]
    raises = "MINet: adding DefFiller pairs raises S"
    assert claims[("Table 8", raises)] == HOLDS and claims[("Table 8 (leak-free)", raises)] == "does not hold"
    assert claims[("Table 8 (leak-free)", "adding DFMGAN pairs lowers S on average over the detectors")] == HOLDS
    claims_section = text.split("## Tables")[0]
    assert "Table 8 (leak-free)" in claims_section
