"""What the demo page does, without the page: a model loaded once, masks checked, variations drawn and scored, and
chosen pairs added to a dataset in the SD-Saliency-900 layout."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import binary_erosion

from deffiller.config import DEFAULT_PROFILE, Profile, load_profile
from deffiller.data.layout import index_of
from deffiller.detection.metrics import mask_iou_array
from deffiller.detection.predict import load_detector, predict_maps
from deffiller.detection.train import DetectConfig
from deffiller.errors import DefFillerError
from deffiller.pipelines.deffiller import SCHEDULERS, SampleConfig, mask_at, prepare_mask
from deffiller.pipelines.generate import IMAGE_DIR, MASK_DIR, load_pipeline
from deffiller.pipelines.mask_sampling import load_mask_model, mask_seed, to_binary
from deffiller.training.mask_ddpm import MaskDDPMConfig
from deffiller.utils.device import resolve_device
from deffiller.utils.io import save_image

MAX_VARIATIONS = 16
OUTLINE_RGB = (255, 40, 40)


@dataclass(frozen=True)
class Variation:
    """One generated pair at the dataset's size, with the detector's view of it when a detector is loaded."""

    label: str
    seed: int
    image: np.ndarray  # uint8 grey
    mask: np.ndarray  # bool
    saliency: np.ndarray | None = None  # uint8 map of the detector
    iou: float | None = None  # IoU of the binarised map with the mask


def to_grey(image) -> np.ndarray:
    """A drawn or uploaded picture (HxW, HxWx3 or HxWx4 uint8) -> HxW uint8; transparent pixels count as black."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:
        alpha = array[..., 3:].astype(np.float32) / 255
        array = (array[..., :3] * alpha).round().astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).convert("L"))
    return array


def outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB copy of a grey image with the mask's boundary drawn in red."""
    edge = mask & ~binary_erosion(mask, iterations=1, border_value=0)
    rgb = np.repeat(image[..., None], 3, axis=2)
    rgb[edge] = OUTLINE_RGB
    return rgb


@contextlib.contextmanager
def _steps_reported(pipe, on_step: Callable[[], None]):
    """Call `on_step` after every denoising step of `pipe` (the pipeline's progress bar is the hook it offers)."""
    def progress_bar(iterable=None, total=None):
        for item in iterable:
            yield item
            on_step()

    pipe.progress_bar = progress_bar
    try:
        yield
    finally:
        del pipe.progress_bar


class DemoSession:
    """The models of one demo page, loaded once and shared by every request."""

    def __init__(self, model, profile: str | Profile = DEFAULT_PROFILE, masks_model=None, detector=None,
                 net: str | None = None):
        if (detector is None) != (net is None):
            raise DefFillerError("give --detector WEIGHTS and --net NAME together (net: csepnet, tsernet or minet)")
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        self.sample = self.profile.section(SampleConfig)
        self.source_size = self.profile.data.source_size
        self.pipe = load_pipeline(model, self.sample.device, self.sample.scheduler, self.sample)
        self.classes = list(self.pipe.config.classes)
        known = dict(zip(self.profile.data.classes, self.profile.data.prefixes))
        missing = [c for c in self.classes if c not in known]
        if missing:
            raise DefFillerError(f"{model}: the model's classes {missing} have no file prefix in profile "
                                 f"{self.profile.name!r} (data.classes/data.prefixes); "
                                 "use the profile it was trained with")
        self.prefixes = {c: known[c] for c in self.classes}
        self.device = self.pipe.device
        self.mask_model = load_mask_model(masks_model, resolve_device(self.sample.device)) if masks_model else None
        self.detector = load_detector(net, detector, str(self.device)) if detector else None
        self.filter_iou = self.profile.section(DetectConfig).filter_iou
        self._dataset_lock = threading.Lock()

    def check_mask(self, picture) -> np.ndarray:
        """A drawn or uploaded mask -> bool at the dataset's size; DefFillerError saying what is wrong and the fix."""
        if picture is None:
            raise DefFillerError("no mask yet: draw the defect in white on the canvas, upload a mask, "
                                 "or draw a new one")
        grey = to_grey(picture)
        if grey.ndim != 2:
            raise DefFillerError(f"the mask has shape {grey.shape}; give a grey or RGB image, white defect on black")
        height, width = grey.shape
        size, side = self.source_size, self.pipe.image_size
        if height != width:
            raise DefFillerError(f"the mask is {width}x{height}; masks are square ({size}x{size} in the dataset): "
                                 "pad it with black or crop it to a square around the defect")
        if width < side:
            raise DefFillerError(f"the mask is {width}x{height}, smaller than the model's {side}x{side}: "
                                 f"give one at least that large (the dataset's are {size}x{size})")
        mask = mask_at(prepare_mask(grey, "the mask"), self.source_size)
        if not mask.any():
            raise DefFillerError("the mask is empty (all black): draw the defect in white")
        if mask.all():
            raise DefFillerError("the mask is all white: the defect must leave some steel background (black)")
        return mask

    def generate(self, mask: np.ndarray, label: str, guidance: float, steps: int, scheduler: str, seed: int,
                 count: int = 4, on_step: Callable[[int, int], None] | None = None) -> list[Variation]:
        """`count` images of class `label` for one checked mask; variation i draws its noise from seed + i.
        `on_step(done, total)` is called after every denoising step."""
        if label not in self.classes:
            raise DefFillerError(f"unknown class {label!r}; this model knows {self.classes}")
        if scheduler not in SCHEDULERS:
            raise DefFillerError(f"unknown scheduler {scheduler!r}; choose one of {SCHEDULERS}")
        if not 1 <= count <= MAX_VARIATIONS:
            raise DefFillerError(f"number of variations must be 1..{MAX_VARIATIONS}, got {count}")
        if steps < 1:
            raise DefFillerError(f"steps must be at least 1, got {steps}")
        seeds = [int(seed) + i for i in range(count)]
        batches = [seeds[i : i + self.sample.batch_size] for i in range(0, count, self.sample.batch_size)]
        done = [0]

        def step():  # PLMS takes one step more than asked: count the scheduler's own timesteps
            done[0] += 1
            if on_step is not None:
                on_step(done[0], len(batches) * len(self.pipe.scheduler.timesteps))

        self.pipe.use_scheduler(scheduler)
        images = []
        with _steps_reported(self.pipe, step):
            for batch in batches:
                generators = [torch.Generator("cpu").manual_seed(s) for s in batch]
                images += list(self.pipe([mask] * len(batch), [label] * len(batch), generator=generators,
                                         num_inference_steps=steps, guidance_scale=guidance).images)
        greys = [np.asarray(Image.fromarray(image).convert("L").resize((self.source_size,) * 2, Image.BICUBIC))
                 for image in images]
        if self.detector is None:
            return [Variation(label, s, grey, mask) for s, grey in zip(seeds, greys)]
        maps = list(predict_maps(self.detector, greys, self.sample.batch_size, str(self.device)))
        return [Variation(label, s, grey, mask, saliency, mask_iou_array(mask, saliency))
                for s, grey, saliency in zip(seeds, greys, maps)]

    def new_mask(self, label: str, seed: int) -> np.ndarray:
        """A mask of class `label` drawn by the mask DDPM: uint8 0/255 at the dataset's size."""
        if self.mask_model is None:
            raise DefFillerError("no mask model: start the demo with --masks-model RUN (a `deffiller masks train` run)")
        pipeline, classes = self.mask_model
        cfg = self.profile.section(MaskDDPMConfig)
        pipeline.use_sampler(cfg.sampler)
        steps = min(cfg.sampling_steps, pipeline.scheduler.config.num_train_timesteps)
        index = classes.index(label)
        sample = pipeline([index], [torch.Generator().manual_seed(mask_seed(int(seed), index, 0))], steps)
        return to_binary(sample, self.source_size, cfg.upsample)[0]

    def add_to_dataset(self, folder, variations: list[Variation]) -> list[str]:
        """Write the pairs into `folder` (Source Images/<Pr>_<n>.bmp, Ground truth/<Pr>_<n>.png), each at the next
        free index of its class; returns the names written."""
        folder = Path(folder)
        names = []
        with self._dataset_lock:
            for variation in variations:
                prefix = self.prefixes[variation.label]
                taken = [index_of(p.name) for d in (IMAGE_DIR, MASK_DIR) if (folder / d).is_dir()
                         for p in (folder / d).iterdir() if p.name.startswith(f"{prefix}_")]
                name = f"{prefix}_{max(taken, default=0) + 1}"
                save_image(folder / MASK_DIR / f"{name}.png", variation.mask.astype(np.uint8) * 255)
                save_image(folder / IMAGE_DIR / f"{name}.bmp", variation.image)
                names.append(name)
        return names
