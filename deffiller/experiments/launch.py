"""The notebooks' heavy steps on several processes: with `$DEFFILLER_PROCESSES` above 1 (`run_all.sh --processes N`),
each training and bulk job of a notebook (DefFiller's, the mask DDPM's, the baselines', the detectors') runs as
`accelerate launch -m deffiller ...`, the command a user would type, with the notebook's profile and overrides,
instead of inside the notebook's kernel. They write the files of the in-process call: bulk jobs byte for byte given
the same model; training is the same experiment (the profile's global batch, split across the processes)."""
from __future__ import annotations

import subprocess
import sys

import yaml

from deffiller.config import Profile
from deffiller.errors import DefFillerError
from deffiller.utils.processes import requested_processes


def profile_args(profile: Profile) -> list[str]:
    """`--profile` and `--set` options that make a command load exactly `profile` (same outputs folder)."""
    sets = [f"--set={key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in profile.overrides.items()]
    return ["--profile", profile.source, *sets]


def data_args(data, train_split) -> list[str]:
    """A training command's data options: the train rows of the manifest `train_split` when given (the in-process
    calls ignore `data` then too), else the dataset folder `data` (none: the profile's dataset)."""
    if train_split is not None:
        return ["--train-split", str(train_split)]
    return [] if data is None else ["--data", str(data)]


def launch(profile: Profile | None, args: list[str]) -> None:
    """Run `deffiller <args>` with `profile` (None: a command that takes no profile) on `requested_processes()`
    processes under accelerate launch."""
    processes = requested_processes()
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--main_process_port", "0",  # a free port: other jobs on the machine may hold accelerate's 29500
               "-m", "deffiller", *args, *(profile_args(profile) if profile is not None else [])]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(done.stdout[-2000:], end="")
    if done.returncode != 0:
        raise DefFillerError(f"`deffiller {' '.join(args)}` on {processes} processes failed (exit {done.returncode}); "
                             f"the end of its output is above")
