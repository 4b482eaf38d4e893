"""The demo page (Gradio): draw or upload a mask, pick the class and sampling settings, look at the variations (with
the detector's map and its IoU when a detector is loaded), and add the good ones to a dataset.

Local only: analytics off, no share link, system fonts (the default theme would fetch web fonts), queue on so that the
page stays responsive while the single loaded model samples one request after another.
"""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from deffiller.demo.session import MAX_VARIATIONS, DemoSession, Variation, outline  # noqa: E402
from deffiller.errors import DefFillerError  # noqa: E402
from deffiller.pipelines.deffiller import SCHEDULERS  # noqa: E402

SCHEDULER_NAMES = {"pndm": "PLMS (the paper)", "ddim": "DDIM", "dpm": "DPM-Solver++"}
THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
MONO_FONTS = ["ui-monospace", "monospace"]


def _editor_value(mask: np.ndarray) -> dict:
    """An ImageEditor value whose background is the mask (white on black), with no strokes on top."""
    picture = mask.astype(np.uint8) * 255 if mask.dtype == bool else mask
    return {"background": picture, "layers": [], "composite": picture}


def _warn(exc: DefFillerError) -> str:
    gr.Warning(str(exc))
    return f"**Not done:** {exc}"


class DemoPage:
    """The page's event handlers around one `DemoSession`; each returns what the page shows, never raises for bad
    input (a warning toast plus a status line instead)."""

    def __init__(self, session: DemoSession, dataset_dir: str):
        self.session = session
        self.dataset_dir = dataset_dir

    def blank(self):
        size = self.session.source_size
        return _editor_value(np.zeros((size, size), np.uint8))

    def upload(self, picture):
        """An uploaded mask goes onto the canvas, where brush and eraser can change it."""
        try:
            mask = self.session.check_mask(picture)
        except DefFillerError as exc:
            return gr.skip(), _warn(exc)
        return _editor_value(mask), f"Mask loaded: {mask.mean():.1%} of the image is defect."

    def new_mask(self, label, seed):
        try:
            mask = self.session.new_mask(label, int(seed or 0))
        except DefFillerError as exc:
            return gr.skip(), _warn(exc)
        return _editor_value(mask), f"New {label} mask drawn by the mask DDPM (seed {int(seed or 0)})."

    def gallery(self, variations: list[Variation], show_outline: bool):
        shown = [outline(v.image, v.mask) if show_outline else v.image for v in variations]
        return [(image, self._caption(i, v)) for i, (image, v) in enumerate(zip(shown, variations))]

    def saliency(self, variations: list[Variation]):
        return [(v.saliency, self._caption(i, v)) for i, v in enumerate(variations) if v.saliency is not None]

    def _caption(self, index: int, variation: Variation) -> str:
        caption = f"{index + 1}: seed {variation.seed}"
        if variation.iou is not None:
            verdict = "kept" if variation.iou >= self.session.filter_iou else "filtered out"
            caption += f", IoU {variation.iou:.2f} ({verdict} at {self.session.filter_iou})"
        return caption

    def generate(self, editor, label, guidance, steps, scheduler, seed, count, show_outline, progress=gr.Progress()):
        try:
            mask = self.session.check_mask(None if editor is None else editor.get("composite"))
            report = lambda done, total: progress((done, total), desc="sampling")  # noqa: E731
            variations = self.session.generate(mask, label, float(guidance), int(steps), scheduler, int(seed or 0),
                                               int(count), report)
        except DefFillerError as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), _warn(exc)
        names = [str(i + 1) for i in range(len(variations))]
        good = [n for n, v in zip(names, variations) if v.iou is None or v.iou >= self.session.filter_iou]
        status = (f"{len(variations)} {label} images of a mask covering {mask.mean():.1%} of the image, {int(steps)} "
                  f"{SCHEDULER_NAMES[scheduler]} steps, guidance {guidance}.")
        return (variations, self.gallery(variations, show_outline), self.saliency(variations),
                gr.CheckboxGroup(choices=names, value=good), status)

    def add(self, variations: list[Variation], chosen: list[str], folder: str):
        try:
            if not variations or not chosen:
                raise DefFillerError("nothing chosen: generate images, then tick the variations to add")
            if not folder or not folder.strip():
                raise DefFillerError("no dataset folder: type where the pairs should go")
            names = self.session.add_to_dataset(folder.strip(), [variations[int(i) - 1] for i in chosen])
        except DefFillerError as exc:
            return _warn(exc)
        except OSError as exc:
            return _warn(DefFillerError(f"cannot write into {folder.strip()} ({exc.strerror or exc}): "
                                        "choose another folder"))
        return f"Added {', '.join(names)} to `{folder.strip()}` (Source Images/*.bmp, Ground truth/*.png)."

    def build(self) -> gr.Blocks:
        session, size = self.session, self.session.source_size
        with gr.Blocks(title="DefFiller demo", analytics_enabled=False) as page:
            variations = gr.State([])
            gr.Markdown("## DefFiller: draw a defect mask, get defect images")
            with gr.Row():
                with gr.Column():
                    canvas = gr.ImageEditor(
                        value=self.blank(), image_mode="L", type="numpy", format="png", canvas_size=(size, size),
                        fixed_canvas=True, sources=(), transforms=(), layers=False, elem_id="canvas",
                        brush=gr.Brush(default_size=8, colors=["#ffffff", "#000000"], default_color="#ffffff",
                                       color_mode="fixed"),
                        eraser=gr.Eraser(), label=f"mask ({size}x{size}): draw the defect in white")
                    upload = gr.Image(label="or upload a mask (white defect on black, square)", type="numpy",
                                      image_mode="L", sources=["upload"], format="png", height=160, elem_id="upload")
                    clear = gr.Button("clear the canvas")
                    new_mask = gr.Button("new mask (mask DDPM)", visible=session.mask_model is not None)
                with gr.Column():
                    label = gr.Radio(session.classes, value=session.classes[0], label="class", elem_id="class")
                    guidance = gr.Slider(1, 10, value=session.sample.guidance, step=0.5, label="guidance")
                    steps = gr.Slider(1, 100, value=session.sample.steps, step=1, label="steps")
                    scheduler = gr.Dropdown([(SCHEDULER_NAMES[s], s) for s in SCHEDULERS],
                                            value=session.sample.scheduler, label="scheduler")
                    seed = gr.Number(value=session.profile.seed, precision=0, label="seed (variation i uses seed + i)")
                    count = gr.Slider(1, MAX_VARIATIONS, value=4, step=1, label="variations")
                    generate = gr.Button("generate", variant="primary", elem_id="generate")
            status = gr.Markdown(elem_id="status")
            show_outline = gr.Checkbox(label="show the mask outline", value=False, elem_id="outline")
            # object_fit none: shown pixel for pixel, at the dataset's size
            gallery = gr.Gallery(label="generated images", columns=4, format="png", object_fit="none",
                                 elem_id="gallery")
            saliency = gr.Gallery(label="detector saliency maps and IoU with the mask", columns=4, format="png",
                                  object_fit="none", visible=session.detector is not None,
                                  elem_id="saliency")
            with gr.Row():
                chosen = gr.CheckboxGroup(label="variations to add", choices=[], elem_id="chosen")
                folder = gr.Textbox(value=self.dataset_dir, label="dataset folder (SD-Saliency-900 layout)")
                add = gr.Button("add to dataset", elem_id="add")

            upload.upload(self.upload, upload, [canvas, status])
            clear.click(self.blank, None, canvas)
            new_mask.click(self.new_mask, [label, seed], [canvas, status])
            generate.click(self.generate, [canvas, label, guidance, steps, scheduler, seed, count, show_outline],
                           [variations, gallery, saliency, chosen, status])
            show_outline.change(self.gallery, [variations, show_outline], gallery)
            add.click(self.add, [variations, chosen, folder], status)
        return page.queue(default_concurrency_limit=1)


def serve(session: DemoSession, dataset_dir: str = "demo_dataset", host: str = "127.0.0.1", port: int = 7860,
          block: bool = True):
    """Serve the page on host:port; with block=False return (the Blocks, its URL) and keep serving in a thread."""
    page = DemoPage(session, dataset_dir).build()
    theme = gr.themes.Default(font=THEME_FONTS, font_mono=MONO_FONTS)
    _, url, _ = page.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                            theme=theme, footer_links=[], quiet=True)
    return page, url
