"""Every generator (DefFiller, the mask DDPM, AdaBLDM, DFMGAN) trained with a split manifest sees only its train
rows: the pairs reaching each generator's data are recorded (the optimisation itself is cut short or skipped, it is
not what is checked) and none is a test pair of the split."""
from __future__ import annotations

import pytest
from test_adabldm import write_tiny_sd
from tiny_deffiller import tiny_profile

import deffiller.baselines.adabldm.train as adabldm_train
import deffiller.baselines.dfmgan.train as dfmgan_train
import deffiller.training.deffiller as deffiller_train
import deffiller.training.mask_ddpm as mask_ddpm
from deffiller.cli import build_parser
from deffiller.data.layout import load_pairs
from deffiller.data.splits import expansion_split, split_pairs, training_pairs, write_manifest


class Enough(Exception):
    """Raised by a spy once it has seen what a generator trains on."""


@pytest.fixture(scope="module")
def split(synth_dataset, tmp_path_factory):
    """The expansion protocol's 1:5 split of the synthetic data (1 train, 3 test pairs per class), as a manifest."""
    parts = expansion_split(load_pairs(synth_dataset), seed=0)
    path = write_manifest(tmp_path_factory.mktemp("split") / "expansion.csv", parts)
    return path, {p.name for p in parts["train"]}, {p.name for p in parts["test"]}


def _spy(monkeypatch, module, name, seen: list, stop: bool = False, pairs_at: int = 0):
    real = getattr(module, name)

    def spy(*args, **kwargs):
        seen.extend(p.name for p in args[pairs_at])
        if stop:
            raise Enough
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def _check(seen, split):
    _, train, test = split
    assert seen and set(seen) <= train and not set(seen) & test


def test_deffiller_sees_only_the_train_rows(split, tmp_path, monkeypatch):
    seen = []
    _spy(monkeypatch, deffiller_train, "MaskImageDataset", seen, stop=True)
    with pytest.raises(Enough):
        deffiller_train.train_deffiller(tiny_profile(tmp_path), "scratch", tmp_path / "run", data=split[0])
    _check(seen, split)
    assert sorted(seen) == sorted(split[1])


def test_mask_ddpm_sees_only_the_train_masks(split, tmp_path, monkeypatch):
    seen = []
    _spy(monkeypatch, mask_ddpm, "MaskDataset", seen, stop=True)
    with pytest.raises(Enough):
        mask_ddpm.train_mask_ddpm(tiny_profile(tmp_path), tmp_path / "run", train_manifest=split[0])
    _check(seen, split)


def test_adabldm_sees_only_the_train_rows_in_every_class(split, tmp_path, monkeypatch):
    backgrounds, composites = [], []
    _spy(monkeypatch, adabldm_train, "make_backgrounds", backgrounds)
    _spy(monkeypatch, adabldm_train, "CompositeDataset", composites)
    monkeypatch.setattr(adabldm_train, "train", lambda *a, **k: {"step": 0, "final_loss": 0.0})  # no optimisation
    monkeypatch.setattr(adabldm_train, "save_controlnet", lambda *a: None)
    (tmp_path / "base").mkdir()
    base = write_tiny_sd(tmp_path / "base")
    adabldm_train.train_adabldm(tiny_profile(tmp_path), data=split[0], base=base, out_dir=tmp_path / "run",
                                progress=False)
    _check(backgrounds, split)
    assert sorted(composites) == sorted(backgrounds) == sorted(split[1])  # all three classes went through


def test_dfmgan_sees_only_the_train_rows_in_both_stages(split, tmp_path, monkeypatch):
    stage1, stage2 = [], []
    _spy(monkeypatch, dfmgan_train, "stage1_sampler", stage1)
    _spy(monkeypatch, dfmgan_train, "PairSampler", stage2)
    monkeypatch.setattr(dfmgan_train, "fit", lambda *a, **k: {})  # no optimisation
    dfmgan_train.train_dfmgan(tiny_profile(tmp_path), train_manifest=split[0], out_dir=tmp_path / "run", progress=False)
    _check(stage1, split)
    assert sorted(stage2) == sorted(stage1) == sorted(split[1])


def test_manifests_as_data_and_plain_pair_lists(split, synth_dataset, tmp_path):
    path, train, _ = split
    profile = tiny_profile(tmp_path)
    assert {p.name for p in training_pairs(profile, data=path)[0]} == train
    assert {p.name for p in training_pairs(profile, train_manifest=path)[0]} == train
    everything = load_pairs(synth_dataset)
    plain = tmp_path / "pairs.csv"  # a list of pairs without a split column: every row is for training
    plain.write_text("name,label,image,mask\n" + "".join(f"{p.name},{p.label},{p.image},{p.mask}\n" for p in everything[:5]))
    assert [p.name for p in split_pairs(plain)] == [p.name for p in everything[:5]]


@pytest.mark.parametrize("command", [["train", "--out", "o"], ["masks", "train", "--out", "o"],
                                     ["baseline", "adabldm", "train"], ["baseline", "dfmgan", "train"]])
def test_every_generator_cli_takes_train_split(command):
    args = build_parser().parse_args(command + ["--train-split", "split.csv"])
    assert args.train_manifest == "split.csv"
