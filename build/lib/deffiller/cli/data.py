"""`deffiller data`: download, check, synth, split."""
from __future__ import annotations

import sys
from pathlib import Path


def register(parser):
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("download", help="fetch SD-Saliency-900 (or install it from a local archive/folder) and verify it")
    p.add_argument("--out", default="data", help="parent folder; the dataset lands in OUT/SD-saliency-900 (default: data)")
    p.add_argument("--source", help="URL, local .zip/.tar archive or folder holding 'Source Images/' and 'Ground truth/'")
    p.add_argument("--no-verify", action="store_true", help="accept a copy whose checksums differ from the published one")
    p.set_defaults(func=_download)

    p = sub.add_parser("check", help="validate a dataset folder file by file and print a summary; exit 1 on problems")
    p.add_argument("path", help="dataset folder (SD-saliency-900 or its parent)")
    p.set_defaults(func=_check)

    p = sub.add_parser("synth", help="write a synthetic steel-defect dataset in the SD-Saliency-900 layout")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--per-class", type=int, default=300, help="pairs per class (default 300, as the real data)")
    p.add_argument("--seed", type=int, default=0, help="same seed, byte-identical files")
    p.add_argument("--size", type=int, default=200, help="image side in pixels (default 200)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("split", help="write a train/test manifest (CSV) for a dataset")
    p.add_argument("path", help="dataset folder")
    p.add_argument("--kind", choices=("standard", "substitution", "expansion"), default="standard",
                   help="standard 540/360, substitution 9:1, expansion 1:5 (default standard)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.set_defaults(func=_split)


def _download(args):
    from deffiller.data.download import download

    print(f"SD-Saliency-900 ready in {download(args.out, args.source, verify=not args.no_verify)}")


def _check(args):
    from deffiller.data.check import check_dataset

    report = check_dataset(args.path)
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def _synth(args):
    from deffiller.data.synth import synthesize

    out = synthesize(args.out, per_class=args.per_class, seed=args.seed, size=args.size)
    print(f"wrote {3 * args.per_class} synthetic pairs to {out}")


def _split(args):
    from deffiller.data.layout import load_pairs
    from deffiller.data.splits import make_split, write_manifest

    split = make_split(load_pairs(args.path), args.kind, args.seed)
    write_manifest(Path(args.out), split)
    print(f"{args.kind} split: {len(split['train'])} train, {len(split['test'])} test -> {args.out}")
