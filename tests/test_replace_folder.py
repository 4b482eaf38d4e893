"""`replace_folder` keeps the old folder until the new one is in place: a process killed before any one of its file
system steps (renames, and every unlink/rmdir of the old folder's deletion) leaves, after `recover_folder`, the
complete old or the complete new folder, and once the new one was in place never the old one again."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deffiller.utils.io import recover_folder, remove_folder, remove_stale_temps, replace_folder, staged_folder

REPO_ROOT = Path(__file__).resolve().parent.parent
OLD = {"a.txt": "old", "sub/b.txt": "old", "sub/c.txt": "old"}
NEW = {"a.txt": "new", "sub/d.txt": "new"}

# A child that SIGKILLs itself before the argv[2]-th rename/unlink/rmdir, then runs on argv[1]/model.
KILL_AT_STEP = """
import os, signal, sys
from pathlib import Path
from deffiller.utils.io import remove_folder, staged_folder

steps, kill_at = [0], int(sys.argv[2])
def counted(step):
    def run(*args, **kwargs):
        steps[0] += 1
        if steps[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(*args, **kwargs)
    return run
os.rename, os.unlink, os.rmdir = counted(os.rename), counted(os.unlink), counted(os.rmdir)
"""
# Writes NEW through `staged_folder`.
CHILD = KILL_AT_STEP + """
with staged_folder(Path(sys.argv[1]) / "model") as staging:
    for name, text in %r.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(text)
print(steps[0])
""" % (NEW,)
# Deletes the folder through `remove_folder`.
REMOVER = KILL_AT_STEP + """
remove_folder(Path(sys.argv[1]) / "model")
print(steps[0])
"""


def write_tree(folder, files):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def read_tree(folder):
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("before", [OLD, None], ids=["replacing", "first-write"])
def test_a_kill_before_any_step_leaves_the_old_or_the_new_folder(tmp_path, before):
    outcomes, kill_at = [], 1
    while True:
        root = tmp_path / f"kill-{kill_at}"
        root.mkdir()
        if before is not None:
            write_tree(root / "model", before)
        run = subprocess.run([sys.executable, "-c", CHILD, str(root), str(kill_at)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        if run.returncode == 0:
            assert int(run.stdout) == kill_at - 1  # the run that was not killed: every step was one kill point
            break
        assert run.returncode == -9, run.stderr
        outcomes.append(read_tree(recover_folder(root / "model")))
        assert not (root / ".model.old").exists()
        kill_at += 1
    assert read_tree(root / "model") == NEW
    assert not any(p.name.startswith(".") for p in root.iterdir())  # no staging or old copy left
    assert outcomes and all(o in (before, NEW) for o in outcomes)
    first_new = outcomes.index(NEW) if NEW in outcomes else len(outcomes)
    assert all(o == NEW for o in outcomes[first_new:])  # once in place, the new folder stays
    if before is not None:
        assert outcomes[0] == OLD and outcomes[-1] == NEW  # killed both before and after the new one went in
        assert len(outcomes) >= 2 + len(OLD)  # the aside rename, the rename in, then each deletion of the old


def test_a_rerun_after_a_kill_replaces_the_recovered_folder(tmp_path):
    model = tmp_path / "model"
    write_tree(tmp_path / ".model.old", OLD)  # killed between the two renames: the old one aside, none in place
    staging = tmp_path / "staging"
    write_tree(staging, NEW)
    replace_folder(staging, model)
    assert read_tree(model) == NEW and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failing_writer_leaves_the_old_folder(tmp_path):
    model = tmp_path / "model"
    write_tree(model, OLD)
    with pytest.raises(RuntimeError), staged_folder(model) as staging:
        write_tree(staging, NEW)
        raise RuntimeError("save_pretrained failed")
    assert read_tree(model) == OLD and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_kill_inside_remove_folder_leaves_the_whole_folder_or_none_of_it(tmp_path):
    outcomes, kill_at = [], 1
    while True:
        root = tmp_path / f"kill-{kill_at}"
        root.mkdir()
        write_tree(root / "model", OLD)
        run = subprocess.run([sys.executable, "-c", REMOVER, str(root), str(kill_at)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        if run.returncode == 0:
            assert int(run.stdout) == kill_at - 1
            break
        assert run.returncode == -9, run.stderr
        outcomes.append(read_tree(root / "model"))  # what a reader of the parent sees right after the kill
        remove_stale_temps(root)
        assert [p.name for p in root.iterdir()] in (["model"], [])  # a cut-short deletion is finished, nothing else
        kill_at += 1
    assert list(root.iterdir()) == []
    assert outcomes[0] == OLD and all(o in (OLD, None) for o in outcomes)
    assert outcomes.count(None) >= len(OLD)  # every unlink of the deletion was a kill point after the rename
