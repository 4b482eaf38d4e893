"""`--profile` and `--set SECTION.KEY=VALUE` on every command that reads a profile: the same default profile,
YAML-parsed values that reach the code the command runs, an own folder for a changed profile, and a clear error,
naming the valid ones, for a section or key that does not exist."""
from __future__ import annotations

import argparse
import json
import re
import sys
import types

import pytest
import yaml

from deffiller.cli import build_parser, main
from deffiller.cli.settings import SECTIONS, parse_settings, section_class
from deffiller.config import DEFAULT_PROFILE, PROFILES, REPO_ROOT, Profile, configs_dir, load_profile
from deffiller.errors import DefFillerError
from deffiller.reporting.outputs import Outputs


def profile_parsers(parser: argparse.ArgumentParser, path=()):
    """(command words, parser) of every (sub)command that has a --profile option."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from profile_parsers(sub, (*path, name))
        elif "--profile" in action.option_strings:
            yield path, parser


def option(parser, flag):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_every_command_with_a_profile_takes_set_and_defaults_to_the_same_profile():
    found = dict(profile_parsers(build_parser()))
    assert {" ".join(words) for words in found} == {
        "train", "generate", "masks train", "masks sample", "masks quality", "fid", "detect train",
        "baseline adabldm train", "baseline dfmgan train", "report", "demo"}
    for words, parser in found.items():
        assert option(parser, "--set").dest == "settings" and option(parser, "--set").default == []
        # `masks sample` defaults to the profile the mask model was trained with, else the same default
        expected = None if words == ("masks", "sample") else DEFAULT_PROFILE
        assert option(parser, "--profile").default == expected, words


def test_values_are_yaml_and_a_malformed_item_is_refused():
    assert parse_settings(["sample.guidance=5", "train.lr=1e-4", "detect.seeds={minet: 2}", "fid.weights=null",
                           "train.hflip=false", "experiments.guidances=[1, 3]", "report.note=a=b"]) == {
        "sample.guidance": 5, "train.lr": 1e-4, "detect.seeds": {"minet": 2}, "fid.weights": None,
        "train.hflip": False, "experiments.guidances": [1, 3], "report.note": "a=b"}
    for bad in ("sample.guidance", "=5"):
        with pytest.raises(DefFillerError, match="SECTION.KEY=VALUE"):
            parse_settings([bad])
    with pytest.raises(DefFillerError, match="not valid YAML"):
        parse_settings(["sample.guidance=[1"])


def test_the_section_table_covers_every_section_of_the_profiles():
    sections = set(yaml.safe_load((configs_dir() / "tiny.yaml").read_text())) - {"profile", "seed", "paths",
                                                                                          "data"}
    assert set(SECTIONS) == sections
    assert all(section_class(name).SECTION == name for name in SECTIONS)


@pytest.mark.parametrize("setting, message", [
    ("sampel.guidance=5", r"no section 'sampel'; valid: \[.*'sample'"),
    ("sample.guidanc=5", r"unknown key\(s\) \['guidanc'\]; known: \[.*'guidance'"),
    ("data.image_sise=32", r"unknown key\(s\) \['image_sise'\]; known: \[.*'image_size'"),
    ("sample=5", r"section.key"),
])
def test_an_unknown_section_or_key_is_an_error_naming_the_valid_ones(setting, message, capsys):
    assert main(["report", "--profile", "tiny", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deffiller: error: ") and re.search(message, err), err


class Called(Exception):
    """Raised by a stand-in for the function a command runs, carrying what it was given."""


def called(*args, **kwargs):
    raise Called(args, kwargs)


def stand_in_with_profile(profile=None, **kwargs):  # `deffiller baseline` passes what the signature names
    raise Called((profile,), kwargs)


def profile_given(got) -> Profile:
    args, kwargs = got.value.args
    return next(v for v in (*args, *kwargs.values()) if isinstance(v, Profile))


COMMANDS = {  # command line (without --profile/--set), the function it runs, what the check reads
    "train": (["train", "--out", "{tmp}/run"], "deffiller.training.deffiller.train_deffiller", called),
    "generate": (["generate", "--model", "{tmp}", "--masks", "{tmp}", "--out", "{tmp}/out"],
                 "deffiller.pipelines.generate.generate_from_masks", called),
    "masks train": (["masks", "train", "--out", "{tmp}/run"], "deffiller.training.mask_ddpm.train_mask_ddpm", called),
    "masks quality": (["masks", "quality", "--real", "{tmp}", "--fake", "{tmp}", "--out", "{tmp}/q"],
                      "deffiller.evaluation.mask_quality.mask_quality", called),
    "fid": (["fid", "--real", "{tmp}", "--fake", "{tmp}"], "deffiller.evaluation.fid.compute_fid", called),
    "baseline adabldm train": (["baseline", "adabldm", "train"], "deffiller.baselines.adabldm.train.train_adabldm",
                               stand_in_with_profile),
    "baseline dfmgan train": (["baseline", "dfmgan", "train"], "deffiller.baselines.dfmgan.train.train_dfmgan",
                              stand_in_with_profile),
    "report": (["report"], "deffiller.reporting.report.build_report", called),
    "demo": (["demo", "--model", "{tmp}"], "deffiller.demo.session.DemoSession", called),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_set_reaches_the_profile_the_command_runs_with(command, tmp_path, monkeypatch):
    argv, target, stand_in = COMMANDS[command]
    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(__import__(module, fromlist=[name]), name, stand_in)
    monkeypatch.setitem(sys.modules, "deffiller.demo.app", types.SimpleNamespace(serve=None))  # no Gradio import
    with pytest.raises(Called) as got:
        main([a.format(tmp=tmp_path) for a in argv] + ["--profile", "tiny", "--set", "sample.guidance=7.5",
                                                       "--set", "seed=3"])
    if command == "generate":  # it is given the settings, not the profile
        assert (got.value.args[1]["guidance"], got.value.args[1]["seed"]) == (7.5, 3)
        return
    profile = profile_given(got)
    assert profile.name == "tiny" and profile.seed == 3 and profile.raw["sample"]["guidance"] == 7.5
    assert profile.overrides == {"sample.guidance": 7.5, "seed": 3}


def test_a_command_option_wins_over_set(tmp_path, monkeypatch):
    import deffiller.detection.train as detect_train
    import deffiller.training.deffiller as training

    monkeypatch.setattr(training, "train_deffiller", called)
    with pytest.raises(Called) as got:
        main(["train", "--out", str(tmp_path), "--profile", "tiny", "--set", "seed=3", "--seed", "4"])
    assert profile_given(got).seed == 4
    monkeypatch.setattr(detect_train, "pairs_from", lambda *a, **k: [])
    monkeypatch.setattr(detect_train, "train_detector", called)
    with pytest.raises(Called) as got:
        main(["detect", "train", "--net", "minet", "--train", str(tmp_path), "--out", str(tmp_path / "run"),
              "--profile", "tiny", "--set", "detect.max_steps=3", "--set", "detect.weight_decay=0.5",
              "--max-steps", "5"])
    cfg = got.value.args[0][3]
    assert (cfg.max_steps, cfg.weight_decay) == (5, 0.5)


def test_masks_sample_takes_its_sampling_settings_from_set(tmp_path, monkeypatch):
    import deffiller.pipelines.mask_sampling as mask_sampling

    monkeypatch.setattr(mask_sampling, "sample_masks", called)
    with pytest.raises(Called) as got:
        main(["masks", "sample", "--model", str(tmp_path), "--out", str(tmp_path / "m"), "--profile", "tiny",
              "--set", "masks.sampling_steps=7", "--set", "masks.sampler=ddim"])
    assert got.value.args[1]["steps"] == 7 and got.value.args[1]["sampler"] == "ddim"


def test_a_changed_profile_has_its_own_folders_and_records_its_overrides(tmp_path):
    plain, changed = load_profile("tiny"), load_profile("tiny", {"sample.guidance": 5})
    assert plain.path("outputs") == REPO_ROOT / "outputs" / "tiny"
    assert changed.path("outputs").parent == plain.path("outputs").parent
    assert changed.path("outputs").name.startswith("tiny-set-") and changed.path("outputs") != plain.path("outputs")
    assert load_profile("tiny", {"sample.guidance": 5}).path("figures") == changed.path("figures")
    assert load_profile("tiny", {"sample.guidance": 7}).path("figures") != changed.path("figures")
    figures = load_profile("tiny", {"paths.figures": str(tmp_path), "sample.guidance": 5})
    record = json.loads(Outputs(figures, "00_test").finish().read_text())
    assert record["overrides"] == {"paths.figures": str(tmp_path), "sample.guidance": 5}
    assert all(load_profile(name).overrides == {} for name in PROFILES)
