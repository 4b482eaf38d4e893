"""`deffiller generate`: masks + class prompts -> defect images, written as a dataset (SD-Saliency-900 layout)."""
from __future__ import annotations

from deffiller.cli.settings import add_profile_options, add_threads_option, load_settings


def register(parser):
    parser.add_argument("--model", required=True, help="run folder of `deffiller train` or its model/ folder")
    parser.add_argument("--masks", required=True, help="folder of masks (white defect on black); names In_|Pa_|Sc_<n>")
    parser.add_argument("--out", required=True, help="output dataset folder; pairs already there are kept")
    parser.add_argument("--class", dest="class_name", help="class of every mask (default: from the name prefix)")
    add_profile_options(parser, ", for the sampling defaults and the dataset size")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default sample.guidance; paper 3)")
    parser.add_argument("--steps", type=int, help="denoising steps (default sample.steps; paper 50)")
    parser.add_argument("--seed", type=int, help="an image depends only on the seed and its mask's name (default: profile seed)")
    parser.add_argument("--scheduler", choices=("pndm", "ddim", "dpm"), help="pndm = PLMS (the paper), ddim, dpm = DPM-Solver++")
    parser.add_argument("--batch-size", type=int, help="masks per batch (default sample.batch_size)")
    parser.add_argument("--uncond-grounding", choices=("null", "mask"), help="unconditional guidance branch: null "
                        "grounding tokens (the official sampler) or the mask tokens (the paper's eq. 5); default "
                        "sample.uncond_grounding")
    add_threads_option(parser)
    parser.set_defaults(func=_generate)


def _generate(args):
    import dataclasses

    from deffiller.utils.threads import set_torch_threads

    set_torch_threads(args.threads)
    from deffiller.pipelines.deffiller import SampleConfig
    from deffiller.pipelines.generate import generate_from_masks

    profile = load_settings(args)
    cfg = profile.section(SampleConfig)
    if args.uncond_grounding is not None:
        cfg = dataclasses.replace(cfg, uncond_grounding=None if args.uncond_grounding == "null" else "mask")
    pick = lambda value, default: default if value is None else value  # noqa: E731
    result = generate_from_masks(
        args.model, args.masks, args.out, guidance=pick(args.guidance, cfg.guidance), steps=pick(args.steps, cfg.steps),
        seed=pick(args.seed, profile.seed), scheduler=pick(args.scheduler, cfg.scheduler), class_name=args.class_name,
        batch_size=pick(args.batch_size, cfg.batch_size), source_size=profile.data.source_size, device=cfg.device, speed=cfg)
    print(f"{result['generated']} images generated, {result['kept']} kept from before ({result['scheduler']}, "
          f"{result['steps']} steps, guidance {result['guidance']}, unconditional grounding "
          f"{result['uncond_grounding'] or 'null'}, seed {result['seed']}) -> {result['out_dir']}")
