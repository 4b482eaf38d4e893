"""Run by tests/test_multiprocess.py under `accelerate launch` (2 CPU processes): DFMGAN's two stages (tiny profile,
one class) trained straight into <out>/straight, then into <out>/resumed with a crash in each stage and a resume;
every process saves the whole state it ends each stage with as <out>/states/<run>-<stage>-rank<r>.pt, the model
files being written by the main process only.

    python -m accelerate.commands.launch ... tests/dfmgan_processes.py <data> <out>
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from deffiller.baselines.dfmgan import train
from deffiller.baselines.dfmgan.trainer import DFMGANTask
from deffiller.config import load_profile

CLASS = "patches"
CRASH_AT = 3  # the step each stage dies before, in the resumed run; the tiny profile checkpoints every 2 of its 4


def main(data: Path, out: Path) -> None:
    rank, states = os.environ["RANK"], out / "states"
    states.mkdir(parents=True, exist_ok=True)
    fit = train.fit

    def saving_fit(task, reals, steps, run_dir, *args, **kwargs):
        logs = fit(task, reals, steps, run_dir, *args, **kwargs)
        torch.save(task.state_dict(), states / f"{run_dir.parent.name}-{run_dir.name}-rank{rank}.pt")
        return logs

    train.fit = saving_fit
    profile = load_profile("tiny")
    train.train_dfmgan(profile, data=data, out_dir=out / "straight", classes=[CLASS], progress=False)

    step, crash = DFMGANTask.training_step, {False: CRASH_AT, True: CRASH_AT}  # by stage: stage 2 has defect blocks

    def crashing(self, model, batch, generator, at, update):
        if crash.get(self.defect) == at:
            del crash[self.defect]
            raise KeyboardInterrupt
        return step(self, model, batch, generator, at, update)

    DFMGANTask.training_step = crashing
    for resume in (False, True, True):
        try:
            train.train_dfmgan(profile, data=data, out_dir=out / "resumed", classes=[CLASS], resume=resume,
                               progress=False)
        except KeyboardInterrupt:
            continue
    assert not crash, crash


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
