"""Jobs run as a subprocess and killed with SIGKILL, for the fault tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def start_job(args, log: Path, env: dict | None = None) -> subprocess.Popen:
    """`python -m <args>` from the repository root, output to `log`, one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    with open(log, "wb") as fh:  # a session of its own: the kill reaches the job's children too
        return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, log: Path, timeout: float = 240.0) -> None:
    """SIGKILL the job's process group as soon as `ready()` holds; fail if the job ends or stalls before."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the job ended (status {proc.returncode}) before it was killed:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the job did not get far enough in {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
