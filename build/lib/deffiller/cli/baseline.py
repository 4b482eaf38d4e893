"""`deffiller baseline METHOD train|generate`: the paper's baselines behind one interface.

Each action calls `deffiller.baselines.<method>.<action>.<action>_<method>` with the arguments its signature names
(`--profile` loaded) and prints the `lines` of the summary it returns.
"""
from __future__ import annotations

import importlib
import inspect

from deffiller.cli.settings import add_profile_options, load_settings


def register(parser):
    sub = parser.add_subparsers(dest="baseline", metavar="METHOD", required=True)

    train, generate = _method(
        sub, "adabldm", "AdaBLDM: ControlNet on SD + blended DDIM + decoder adaptation",
        "AdaBLDM (Li et al. 2024) as its released code works, one model per class.",
        train_help="train one ControlNet per class on cut-and-paste composites", class_help="train only this class",
        resume_help="continue from the last checkpoint of an unfinished class",
        generate_help="defect images for a folder of masks named In_<n>.png, Pa_<n>.png, Sc_<n>.png",
        out_help="output folder, SD-Saliency-900 layout; finished images are kept on rerun",
        seed_help="an image depends only on the seed and its mask's name")
    train.add_argument("--base", help="Stable-Diffusion-format diffusers folder (default: adabldm.base of the profile; "
                       "where that is null, as in tiny and smoke, a random base built once into the model folder)")
    generate.add_argument("--masks", dest="masks_dir", metavar="MASKS", required=True,
                          help="folder of binary masks; the name prefix gives the class")
    generate.add_argument("--base", help="use this base folder instead of the one recorded at training")

    train, generate = _method(
        sub, "dfmgan", "DFMGAN: defect-aware StyleGAN2 drawing images and masks together",
        "DFMGAN (Duan et al. 2023) in plain PyTorch: stage 1 on defect-free steel, stage 2 one model per class. "
        "It draws its own masks.",
        train_help="stage 1 (shared backbone), then stage 2 per class", class_help="train stage 2 only for this class",
        resume_help="continue an unfinished stage from its last checkpoint",
        generate_help="mask/image pairs in the SD-Saliency-900 layout at the source size",
        out_help="output folder; pairs already there are kept", seed_help="a pair depends only on the seed and its name")
    generate.add_argument("--per-class", type=int, required=True, help="pairs per class, named <P>_1 .. <P>_N")
    generate.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                          help="only this class (repeatable; default every trained class)")
    generate.add_argument("--truncation", type=float, default=1.0, help="truncation psi of both mappings (default 1: none)")


def _method(sub, name: str, summary: str, description: str, *, train_help: str, class_help: str, resume_help: str,
            generate_help: str, out_help: str, seed_help: str):
    """The `train` and `generate` parsers of a method with the options every baseline has."""
    actions = sub.add_parser(name, help=summary, description=description).add_subparsers(
        dest=f"{name}_command", metavar="ACTION", required=True)
    train = actions.add_parser("train", help=train_help)
    add_profile_options(train)
    data = train.add_mutually_exclusive_group()
    data.add_argument("--data", help="dataset folder; all its pairs are used (default: the profile's dataset)")
    data.add_argument("--train-split", "--train-manifest", dest="train_manifest", metavar="CSV",
                      help="split manifest CSV (e.g. a detection protocol's): only its train rows are used, so the "
                      "model never sees that split's test pairs")
    train.add_argument("--out", dest="out_dir", metavar="OUT", help=f"model folder (default <outputs>/{name})")
    train.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                       help=f"{class_help} (repeatable; default every class in the data)")
    train.add_argument("--resume", action="store_true", help=resume_help)

    generate = actions.add_parser("generate", help=generate_help)
    generate.add_argument("--model", dest="model_dir", metavar="MODEL", required=True, help="model folder written by `train`")
    generate.add_argument("--out", dest="out_dir", metavar="OUT", required=True, help=out_help)
    generate.add_argument("--seed", type=int, default=0, help=seed_help)
    for action, parser in (("train", train), ("generate", generate)):
        parser.set_defaults(func=_run, function=(f"deffiller.baselines.{name}.{action}", f"{action}_{name}"))
    return train, generate


def _run(args):
    module, name = args.function
    function = getattr(importlib.import_module(module), name)
    kwargs = {k: v for k, v in vars(args).items() if k in inspect.signature(function).parameters}
    if "profile" in kwargs:
        kwargs["profile"] = load_settings(args)
    print("\n".join(function(**kwargs)["lines"]))
