"""`deffiller demo`: the interactive page (draw a mask, get defect images, add them to a dataset), served locally."""
from __future__ import annotations

from deffiller.cli.settings import add_profile_options, add_threads_option, load_settings


def register(parser):
    parser.add_argument("--model", required=True, help="run folder of `deffiller train` or its model/ folder")
    parser.add_argument("--masks-model", help="a `deffiller masks train` run: enables 'new mask' (mask DDPM)")
    parser.add_argument("--detector", help="detector weights (`deffiller detect train` model.pt): saliency map and IoU")
    parser.add_argument("--net", help="the detector's network: csepnet, tsernet or minet (with --detector)")
    add_profile_options(parser, ", for the sampling defaults and the dataset size")
    parser.add_argument("--dataset", default="demo_dataset", help="default folder of 'add to dataset'")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    add_threads_option(parser)
    parser.set_defaults(func=_demo)


def _demo(args):
    from deffiller.utils.threads import set_torch_threads

    set_torch_threads(args.threads)
    from deffiller.demo.session import DemoSession
    from deffiller.errors import DefFillerError

    try:
        from deffiller.demo.app import serve
    except ImportError as exc:
        raise DefFillerError(f"the demo needs Gradio ({exc}): pip install -e '.[demo]'") from exc

    session = DemoSession(args.model, load_settings(args), args.masks_model, args.detector, args.net)
    print(f"DefFiller demo of {args.model} on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    try:
        serve(session, args.dataset, args.host, args.port)
    except OSError as exc:  # Gradio's "Cannot find empty port"
        raise DefFillerError(f"cannot serve on {args.host}:{args.port} ({exc}); choose another --port") from exc
