"""`deffiller masks train|sample|quality`: the mask producer (paper 4.4.1, Table 6, Fig. 8)."""
from __future__ import annotations

import sys

from deffiller.cli.settings import add_profile_options, load_settings


def register(parser):
    sub = parser.add_subparsers(dest="masks_command", metavar="ACTION", required=True)

    p = sub.add_parser("train", help="train the class-conditional mask DDPM on ground-truth masks")
    add_profile_options(p, ", for its `masks` section")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data", help="dataset folder; all its masks are used (default: the profile's dataset)")
    data.add_argument("--train-split", "--train-manifest", dest="train_manifest", metavar="CSV",
                      help="split manifest CSV (e.g. a detection protocol's): only the masks of its train rows are "
                      "used, so the model never sees that split's test masks")
    p.add_argument("--out", required=True, help="run folder: the model lands in OUT/model, checkpoints and logs beside it")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.set_defaults(func=_train)

    p = sub.add_parser("sample", help="draw new masks into OUT/'Ground truth'/ (dataset size) and OUT/masks_<size>/")
    p.add_argument("--model", required=True, help="run folder of `masks train` or its model/ folder")
    p.add_argument("--per-class", type=int, help="masks per class (default: masks.per_class of the profile; paper 300)")
    p.add_argument("--out", required=True, help="output folder; masks already there (same settings) are kept")
    add_profile_options(p, default=None, help="profile for the sizes and sampling defaults (default: the model's "
                        "training profile, else smoke)")
    p.add_argument("--seed", type=int, help="a mask depends only on the seed, its class and its index (default: profile seed)")
    p.add_argument("--steps", type=int, help="denoising steps (default: masks.sampling_steps of the profile)")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), help="ddpm (the paper, 1000 steps) or ddim (fewer steps)")
    p.add_argument("--class", dest="classes", action="append", metavar="CLASS", help="only this class (repeatable)")
    p.add_argument("--batch-size", type=int, help="masks denoised together (default: masks.sample_batch_size)")
    p.set_defaults(func=_sample)

    p = sub.add_parser("quality", help="per-class FID of generated masks (Table 6), area/components/memorisation checks")
    p.add_argument("--real", required=True, help="folder of real masks, or a dataset folder (its 'Ground truth/')")
    p.add_argument("--fake", required=True, help="folder of generated masks, or the output folder of `masks sample`")
    p.add_argument("--out", required=True, help="folder for mask_quality.json, mask_quality.png and fig8_masks.png")
    add_profile_options(p, ", for the FID settings, weights and feature cache")
    p.add_argument("--no-fid", action="store_true", help="skip FID/KID (Inception on CPU takes minutes for 900 masks)")
    p.add_argument("--fid-weights", help="torch-fidelity Inception weights file (default: as `deffiller fid`)")
    p.add_argument("--iou-threshold", type=float, default=0.9, help="IoU with a real mask that counts as memorised (default 0.9)")
    p.set_defaults(func=_quality)


def _train(args):
    from deffiller.training.mask_ddpm import train_mask_ddpm

    summary = train_mask_ddpm(load_settings(args), args.out, data=args.data, train_manifest=args.train_manifest,
                              resume=args.resume)
    loss = "" if summary["final_loss"] is None else f", last loss {summary['final_loss']:.4f}"
    print(f"mask DDPM on {summary['data']}: {summary['masks']} masks, {summary['steps']} steps{loss} -> {summary['model']}")


def _sample(args):
    from deffiller.config import DEFAULT_PROFILE
    from deffiller.pipelines.mask_sampling import sample_masks, trained_profile
    from deffiller.training.mask_ddpm import MaskDDPMConfig

    profile = load_settings(args, name=args.profile or trained_profile(args.model) or DEFAULT_PROFILE)
    cfg = profile.section(MaskDDPMConfig)
    summary = sample_masks(
        args.model, args.out, args.per_class or cfg.per_class,
        seed=profile.seed if args.seed is None else args.seed, steps=args.steps or cfg.sampling_steps,
        sampler=args.sampler or cfg.sampler, source_size=profile.data.source_size, image_size=profile.data.image_size,
        upsample=cfg.upsample, batch_size=args.batch_size or cfg.sample_batch_size, classes=args.classes,
        device=cfg.device)
    print(f"{summary['drawn']} masks drawn, {summary['kept']} kept from before ({summary['sampler']}, "
          f"{summary['steps']} steps, seed {summary['seed']}) -> {', '.join(summary['folders'])}")


def _quality(args):
    from deffiller.evaluation.mask_quality import mask_quality, quality_table

    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = mask_quality(args.real, args.fake, args.out, fid=not args.no_fid, profile=load_settings(args),
                              fid_weights=args.fid_weights, iou_threshold=args.iou_threshold)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(quality_table(report).to_markdown(index=False, floatfmt=".4g"))
    print("\n" + "\n".join(f"{k}: {v}" for k, v in report["files"].items()))
