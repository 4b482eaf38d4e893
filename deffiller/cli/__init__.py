"""The `deffiller` command. Each subcommand group lives in its own module with a `register(subparsers)`."""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys

from deffiller import __version__
from deffiller.errors import DefFillerError
from deffiller.utils.processes import is_main_process

GROUPS = {
    "data": "dataset: download, check, synthesise, split",
    "train": "train DefFiller on mask/image pairs",
    "generate": "turn masks + class prompts into defect images with a trained DefFiller",
    "masks": "the mask producer: a DDPM that draws new defect masks",
    "fid": "FID/KID between two image folders (offline Inception weights)",
    "detect": "saliency detectors (CSEPNet, TSERNet, MINet): train, predict, evaluate",
    "baseline": "baselines AdaBLDM and DFMGAN",
    "report": "collect tables and figures of a profile into report.md/html",
    "demo": "the interactive page: draw a mask, get defect images, add them to a dataset",
}

ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "free disk space and rerun the same command; finished outputs are kept and nothing half-written remains",
    errno.EACCES: "the file or folder is not writable/readable by you: fix its permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another output path",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deffiller",
        description="DefFiller: mask-conditioned defect generation and its evaluation framework.",
    )
    parser.add_argument("--version", action="version", version=f"deffiller {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in GROUPS.items():
        module = importlib.import_module(f"deffiller.cli.{name}")
        module.register(subparsers.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with contextlib.ExitStack() as quiet:
            if not is_main_process():  # under accelerate launch the main process reports; errors come from all
                quiet.enter_context(contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w"))))
            result = args.func(args)
    except DefFillerError as exc:
        print(f"deffiller: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"deffiller: error: {exc.filename or ''}: {exc.strerror}; {ENVIRONMENT_ERRNOS[exc.errno]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deffiller: interrupted; rerun the same command (with --resume where offered) to continue", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
