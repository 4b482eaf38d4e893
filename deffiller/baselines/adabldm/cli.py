"""`deffiller baseline adabldm train|generate`."""
from __future__ import annotations


def register(subparsers):
    parser = subparsers.add_parser("adabldm", help="AdaBLDM: ControlNet on SD + blended DDIM + decoder adaptation",
                                   description="AdaBLDM (Li et al. 2024) as its released code works, one model per class.")
    sub = parser.add_subparsers(dest="adabldm_command", metavar="ACTION", required=True)

    p = sub.add_parser("train", help="train one ControlNet per class on cut-and-paste composites")
    p.add_argument("--profile", default="tiny", help="tiny | smoke | paper or a YAML path (default tiny)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data", help="dataset folder; all its pairs are used (default: the profile's dataset)")
    data.add_argument("--train-manifest", help="manifest CSV; its train rows are used")
    p.add_argument("--base", help="Stable-Diffusion-format diffusers folder (default: adabldm.base of the "
                   "profile; where that is null, as in tiny and smoke, a random base built once into the model folder)")
    p.add_argument("--out", help="model folder (default <outputs>/adabldm)")
    p.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                   help="train only this class (repeatable; default every class in the data)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of an unfinished class")
    p.set_defaults(func=_train)

    p = sub.add_parser("generate", help="defect images for a folder of masks named In_<n>.png, Pa_<n>.png, Sc_<n>.png")
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("--masks", required=True, help="folder of binary masks; the name prefix gives the class")
    p.add_argument("--out", required=True, help="output folder, SD-Saliency-900 layout; finished images are kept on rerun")
    p.add_argument("--seed", type=int, default=0, help="an image depends only on the seed and its mask's name")
    p.add_argument("--base", help="use this base folder instead of the one recorded at training")
    p.set_defaults(func=_generate)


def _train(args):
    from deffiller.baselines.adabldm.train import train_adabldm
    from deffiller.config import load_profile

    summary = train_adabldm(load_profile(args.profile), data=args.data, train_manifest=args.train_manifest,
                            base=args.base, out_dir=args.out, classes=args.classes, resume=args.resume)
    for line in summary["lines"]:
        print(line)


def _generate(args):
    from deffiller.baselines.adabldm.generate import generate_adabldm

    summary = generate_adabldm(args.model, args.masks, args.out, seed=args.seed, base=args.base)
    for line in summary["lines"]:
        print(line)
