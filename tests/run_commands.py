"""Run by tests/test_multiprocess.py under `accelerate launch`: several `deffiller` commands, one after the other, in
the same processes (one launch instead of one per command: each costs seconds of start-up).

    python -m accelerate.commands.launch ... tests/run_commands.py <commands.json: a list of argument lists>
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from deffiller.cli import main

if __name__ == "__main__":
    for args in json.loads(Path(sys.argv[1]).read_text()):
        if main(args) != 0:
            sys.exit(f"deffiller {' '.join(args)} failed")
