"""`deffiller baseline dfmgan train|generate`."""
from __future__ import annotations


def register(subparsers):
    parser = subparsers.add_parser("dfmgan", help="DFMGAN: defect-aware StyleGAN2 drawing images and masks together",
                                   description="DFMGAN (Duan et al. 2023) in plain PyTorch: stage 1 on defect-free steel, "
                                               "stage 2 one model per class. It draws its own masks.")
    sub = parser.add_subparsers(dest="dfmgan_command", metavar="ACTION", required=True)

    p = sub.add_parser("train", help="stage 1 (shared backbone), then stage 2 per class")
    p.add_argument("--profile", default="tiny", help="tiny | smoke | paper or a YAML path (default tiny)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data", help="dataset folder; all its pairs are used (default: the profile's dataset)")
    data.add_argument("--train-manifest", help="manifest CSV; its train rows are used")
    p.add_argument("--out", help="model folder (default <outputs>/dfmgan)")
    p.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                   help="train stage 2 only for this class (repeatable; default every class in the data)")
    p.add_argument("--resume", action="store_true", help="continue an unfinished stage from its last checkpoint")
    p.set_defaults(func=_train)

    p = sub.add_parser("generate", help="mask/image pairs in the SD-Saliency-900 layout at the source size")
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("--per-class", type=int, required=True, help="pairs per class, named <P>_1 .. <P>_N")
    p.add_argument("--out", required=True, help="output folder; pairs already there are kept")
    p.add_argument("--seed", type=int, default=0, help="a pair depends only on the seed and its name")
    p.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                   help="only this class (repeatable; default every trained class)")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi of both mappings (default 1: none)")
    p.set_defaults(func=_generate)


def _train(args):
    from deffiller.baselines.dfmgan.train import train_dfmgan
    from deffiller.config import load_profile

    summary = train_dfmgan(load_profile(args.profile), data=args.data, train_manifest=args.train_manifest,
                           out_dir=args.out, classes=args.classes, resume=args.resume)
    for line in summary["lines"]:
        print(line)


def _generate(args):
    from deffiller.baselines.dfmgan.generate import generate_dfmgan

    summary = generate_dfmgan(args.model, args.per_class, args.out, seed=args.seed, classes=args.classes,
                              truncation=args.truncation)
    for line in summary["lines"]:
        print(line)
    print(f"DFMGAN masks and images in {summary['out_dir']}")
