"""Torch's CPU threads are chosen in one place, the same way by the CLI and by every notebook kernel."""
import os

import pytest
import torch

import deffiller.utils.threads as threads
from deffiller.cli import main
from deffiller.config import load_profile
from deffiller.errors import DefFillerError
from deffiller.experiments.data import start


@pytest.fixture(autouse=True)
def no_threads_from_the_environment(monkeypatch):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


@pytest.mark.parametrize("busy_percent, expected", [(0.0, 6), (4.0, 6), (50.0, 3), (60.0, 2), (100.0, 1)])
def test_the_idle_cores_unless_told(monkeypatch, busy_percent, expected):
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    monkeypatch.setattr(threads.psutil, "cpu_percent", lambda interval: busy_percent)
    assert threads.set_torch_threads() == expected == torch.get_num_threads()
    assert threads.set_torch_threads(2) == 2 == torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert threads.set_torch_threads() == 1


@pytest.mark.parametrize("processes, expected", [("1", 6), ("2", 3), ("4", 1), ("8", 1)])
def test_a_launch_shares_the_idle_cores_among_its_processes(monkeypatch, processes, expected):
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    monkeypatch.setattr(threads.psutil, "cpu_percent", lambda interval: 0.0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", processes)
    assert threads.set_torch_threads() == expected


def test_idle_cores_watches_the_machine():
    assert 1 <= threads.idle_cores(os.cpu_count() or 1, sample_s=0.05) <= (os.cpu_count() or 1)


def test_run_all_threads_reach_the_helper_through_the_environment(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    monkeypatch.setattr(threads.psutil, "cpu_percent", lambda interval: 0.0)
    monkeypatch.setenv(threads.THREADS_ENV, "2")
    assert threads.set_torch_threads() == 2 == torch.get_num_threads()
    assert threads.set_torch_threads(4) == 4  # an explicit count (the CLI's --threads) wins
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(threads.THREADS_ENV, bad)
        with pytest.raises(DefFillerError, match="DEFFILLER_THREADS"):
            threads.set_torch_threads()


def test_notebook_start_sets_threads_as_the_cli(monkeypatch, synth_dataset, tmp_path):
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    monkeypatch.setattr(threads.psutil, "cpu_percent", lambda interval: 50.0)
    monkeypatch.setenv("DEFFILLER_DATASET", str(synth_dataset))
    source, _ = start(load_profile("tiny", {"paths.figures": str(tmp_path)}), "00_test")
    assert torch.get_num_threads() == 3 and source.root == synth_dataset


@pytest.mark.parametrize("command", [["generate", "--masks", "m", "--out", "o"], ["train", "--out", "o"],
                                     ["demo", "--model", "absent"]])
def test_cli_commands_use_the_helper(monkeypatch, tmp_path, command):
    calls = []
    monkeypatch.setattr(threads, "set_torch_threads", calls.append)
    monkeypatch.chdir(tmp_path)
    args = [*command, "--threads", "2", "--profile", str(tmp_path / "absent.yaml")]
    if command[0] == "generate":
        args += ["--model", "absent"]
    assert main(args) == 2  # stops at the missing profile (demo: or at an absent Gradio), after choosing threads
    assert calls == [2]
