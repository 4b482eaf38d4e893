"""`deffiller detect`: train, predict and evaluate the saliency detectors (CSEPNet, TSERNet, MINet)."""
from __future__ import annotations

import json

from deffiller.cli.settings import add_profile_options, load_settings


def register(parser):
    sub = parser.add_subparsers(dest="detect_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="train a detector on mask/image pairs")
    train.add_argument("--net", required=True, help="csepnet | tsernet | minet")
    train.add_argument("--train", required=True, metavar="MANIFEST_OR_DIR",
                       help="manifest CSV (its 'train' rows) or dataset folder (Source Images/, Ground truth/)")
    train.add_argument("--extra", nargs="+", default=[], metavar="DIR", help="more pair folders, e.g. generated pairs")
    train.add_argument("--out", required=True, help="run folder (model.pt, metrics.jsonl, summary.json)")
    add_profile_options(train, ", for its `detect` section")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--backbone-weights", help="ImageNet weights of the backbone: a torchvision weights name "
                       "(IMAGENET1K_V1: the file in torch hub's cache) or a local torchvision state dict "
                       "(default: the profile's detect.backbone_weights; none = from scratch)")
    train.add_argument("--weight-decay", type=float, help="override Table 4's weight decay (MINet's official code: 0)")
    train.add_argument("--max-steps", type=int, help="override the profile's step cap")
    train.add_argument("--seed", type=int, help="default: the profile's seed")
    train.set_defaults(func=_train)

    predict = sub.add_parser("predict", help="write 8-bit saliency maps (PNG, source size, same names) for a folder")
    predict.add_argument("--net", required=True, help="csepnet | tsernet | minet")
    predict.add_argument("--weights", required=True, help="model.pt of `detect train`, or an official checkpoint")
    predict.add_argument("--images", required=True, help="folder of images")
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument("--batch-size", type=int, default=8)
    predict.add_argument("--device", default="auto", help="auto (this process's GPU if there is one) | cpu | cuda")
    predict.set_defaults(func=_predict)

    evaluate = sub.add_parser("eval", help="S-measure, MAE, max E, max F (and mean F, weighted F) of a map folder")
    evaluate.add_argument("--pred", required=True, help="folder of predicted maps")
    evaluate.add_argument("--gt", required=True, help="folder of masks with the same file names")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.set_defaults(func=_eval)


def _train(args):
    from deffiller.detection.train import DetectConfig, pairs_from, train_detector

    profile = load_settings(args, extra={"detect.max_steps": args.max_steps, "detect.weight_decay": args.weight_decay})
    pairs = pairs_from(args.train, per_class=profile.data.per_class)
    for folder in args.extra:
        pairs += pairs_from(folder)
    weights = train_detector(args.net, pairs, args.out, profile.section(DetectConfig),
                             seed=profile.seed if args.seed is None else args.seed,
                             backbone_weights=args.backbone_weights, resume=args.resume)
    summary = json.loads((weights.parent / "summary.json").read_text())
    print(f"{args.net}: {summary['steps']} steps on {summary['train_pairs']} pairs; backbone: {summary['backbone']}")
    print(f"weights: {weights}")


def _predict(args):
    from deffiller.detection.predict import predict_folder

    written = predict_folder(args.net, args.weights, args.images, args.out, args.batch_size, args.device)
    print(f"{len(written)} maps written to {args.out}")


def _eval(args):
    from deffiller.detection.metrics import REPORT_METRICS, evaluate_folders

    scores = evaluate_folders(args.pred, args.gt)
    if args.json:
        print(json.dumps(scores, indent=2))
        return
    print(f"{scores['n']} images")
    for key in REPORT_METRICS:
        print(f"{key:>5}: {scores[key]:.4f}")
