"""`deffiller train`: train DefFiller (paper 3.1, 4.1.2) from scratch, SD-1.4 or GLIGEN-sem weights."""
from __future__ import annotations

from deffiller.cli.settings import add_profile_options, add_threads_option, load_settings


def register(parser):
    add_profile_options(parser)
    parser.add_argument("--init", default="gligen", choices=("scratch", "sd", "gligen"),
                        help="initial weights (Table 1): scratch, sd (SD-1.4) or gligen (GLIGEN-sem, the paper's; default)")
    parser.add_argument("--out", required=True, help="run folder: the model lands in OUT/model, checkpoints and logs beside it")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--data", help="dataset folder; all its pairs are used (default: the profile's dataset)")
    data.add_argument("--train-split", "--train-manifest", dest="train_manifest", metavar="CSV",
                      help="split manifest CSV (e.g. a detection protocol's): only its train rows are used, so the "
                      "model never sees that split's test pairs")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    parser.add_argument("--steps", type=int, help="override train.max_steps")
    parser.add_argument("--seed", type=int, help="override the profile's seed")
    add_threads_option(parser)
    parser.set_defaults(func=_train)


def _train(args):
    from deffiller.utils.threads import set_torch_threads

    set_torch_threads(args.threads)
    from deffiller.training.deffiller import train_deffiller

    profile = load_settings(args, extra={"seed": args.seed})
    summary = train_deffiller(profile, args.init, args.out, data=args.data, train_manifest=args.train_manifest,
                              resume=args.resume, overrides={"max_steps": args.steps} if args.steps else None)
    counts = summary["parameters"]
    print(f"DefFiller ({args.init}) on {summary['data']}: {summary['pairs']} pairs, {summary['step']} steps, last loss "
          f"{summary['final_loss']:.4f}; trainable {counts['trainable_total']:,} "
          f"({', '.join(f'{k} {v:,}' for k, v in counts['trainable'].items())}), frozen {counts['frozen_total']:,} "
          f"-> {summary['model']}")
