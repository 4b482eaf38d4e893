"""Drawing new defect masks from the mask DDPM (paper 4.4.1): the pipeline, its folder, and bulk sampling to PNGs.

A model folder is a diffusers pipeline folder (`model_index.json`, `unet/`, `scheduler/`) plus `mask_classes.json`
naming the class of each class embedding. Every mask draws its noise from its own `torch.Generator`, seeded by
(seed, class, index), so a mask depends on neither the batch size nor which masks were already written; bulk
sampling therefore resumes by skipping finished files, and under `accelerate launch` shares its batches out between
the processes.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNet2DModel
from PIL import Image
from tqdm.auto import tqdm

from deffiller.errors import DefFillerError
from deffiller.utils.device import resolve_device
from deffiller.utils.io import recover_folder, remove_stale_temps, save_image, staged_folder, write_json
from deffiller.utils.processes import is_main_process, my_share, wait_for_everyone
from deffiller.utils.seeds import derive_seed

MODEL_DIR = "model"
CLASSES_FILE = "mask_classes.json"
SETTINGS_FILE = "sampling.json"
SAMPLERS = ("ddpm", "ddim")
UPSAMPLING = ("nearest", "bilinear")
SOURCE_DIR = "Ground truth"


class MaskDDPMPipeline(DiffusionPipeline):
    """Class-conditional DDPM over single-channel masks in [-1, 1]: a `UNet2DModel` with a class embedding."""

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler | DDIMScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def use_sampler(self, sampler: str) -> None:
        """Switch between ancestral DDPM sampling and deterministic DDIM (eta 0), keeping the noise schedule."""
        if sampler not in SAMPLERS:
            raise DefFillerError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
        cls = DDPMScheduler if sampler == "ddpm" else DDIMScheduler
        if not isinstance(self.scheduler, cls):
            self.scheduler = cls.from_config(self.scheduler.config)

    @torch.no_grad()
    def __call__(self, class_labels: list[int], generators: list[torch.Generator], num_inference_steps: int = 1000,
                 progress: bool = False) -> torch.Tensor:
        """Continuous samples (N, 1, R, R) on the CPU, about [-1, 1]; mask i draws all its noise from `generators[i]`."""
        if len(class_labels) != len(generators):
            raise ValueError(f"{len(class_labels)} class labels but {len(generators)} generators")
        steps = self.scheduler.config.num_train_timesteps
        if not 1 <= num_inference_steps <= steps:
            raise DefFillerError(f"sampling steps must be in 1..{steps} (the training schedule), got {num_inference_steps}")
        size, device = self.unet.config.sample_size, self.unet.device
        shape = (len(class_labels), self.unet.config.in_channels, size, size)
        sample = torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generators]).to(device, self.unet.dtype)
        labels = torch.tensor(class_labels, device=device)
        self.scheduler.set_timesteps(num_inference_steps)
        for t in tqdm(self.scheduler.timesteps, desc="denoising", leave=False, disable=not progress):
            noise_pred = self.unet(sample, t, class_labels=labels).sample
            sample = self.scheduler.step(noise_pred, t, sample, generator=list(generators)).prev_sample
        return sample.float().cpu()


@dataclass(frozen=True)
class MaskClasses:
    """Which class each class embedding of a mask model stands for, and its file-name prefix."""

    classes: tuple[str, ...]
    prefixes: tuple[str, ...]

    def index(self, label: str) -> int:
        if label not in self.classes:
            raise DefFillerError(f"unknown class {label!r}; this mask model draws {list(self.classes)}")
        return self.classes.index(label)


def save_mask_model(pipeline: MaskDDPMPipeline, folder, classes: MaskClasses, profile: str | None = None) -> Path:
    """Write the pipeline folder into a staging folder, then swap it in: a crash never leaves a half-written model.

    `profile` (the training profile) becomes the default of `deffiller masks sample` for this model.
    """
    with staged_folder(folder) as staging:
        pipeline.save_pretrained(staging)
        write_json(staging / CLASSES_FILE, {"classes": list(classes.classes), "prefixes": list(classes.prefixes),
                                            "profile": profile})
    return Path(folder)


def model_folder(path) -> Path:
    """The model folder of a `deffiller masks train` run folder (its `model/`), or `path` itself."""
    path = Path(path)
    return path / MODEL_DIR if (recover_folder(path / MODEL_DIR) / "model_index.json").is_file() else recover_folder(path)


def trained_profile(folder) -> str | None:
    """The profile a mask model was trained with, where its folder records one."""
    path = model_folder(folder) / CLASSES_FILE
    return json.loads(path.read_text(encoding="utf-8")).get("profile") if path.is_file() else None


def load_mask_model(folder, device: str | torch.device = "cpu") -> tuple[MaskDDPMPipeline, MaskClasses]:
    """The pipeline and classes of a model folder (or of the run folder holding it in `model/`)."""
    folder = model_folder(folder)
    if not (folder / "model_index.json").is_file() or not (folder / CLASSES_FILE).is_file():
        raise DefFillerError(f"{folder}: not a mask model folder (needs model_index.json and {CLASSES_FILE}); "
                             "train one with `deffiller masks train --out DIR`")
    try:
        meta = json.loads((folder / CLASSES_FILE).read_text(encoding="utf-8"))
        classes = MaskClasses(tuple(meta["classes"]), tuple(meta["prefixes"]))
        pipeline = MaskDDPMPipeline(UNet2DModel.from_pretrained(folder / "unet"),
                                    DDPMScheduler.from_pretrained(folder / "scheduler"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DefFillerError(f"{folder}: cannot load the mask model ({exc}); retrain it or restore the folder") from exc
    if pipeline.unet.config.num_class_embeds != len(classes.classes):
        raise DefFillerError(f"{folder}: the UNet has {pipeline.unet.config.num_class_embeds} class embeddings but "
                             f"{CLASSES_FILE} names {len(classes.classes)} classes; the folder is inconsistent")
    return pipeline.to(device), classes


def mask_seed(seed: int, class_index: int, index: int) -> int:
    """The seed of mask `index` of class `class_index`; independent streams for every (seed, class, index)."""
    return derive_seed(seed, class_index, index)


def to_binary(samples: torch.Tensor, size: int, upsample: str = "nearest") -> list[np.ndarray]:
    """uint8 {0, 255} masks at `size` from continuous samples (N, 1, R, R).

    nearest: binarise at 0 (>127 in uint8 terms) at the model's resolution, then nearest-resize (the paper's order);
    bilinear: resize the continuous sample, then binarise, which gives smooth edges instead of R-pixel steps.
    """
    if upsample not in UPSAMPLING:
        raise DefFillerError(f"unknown upsampling {upsample!r}; choose one of {UPSAMPLING}")
    masks = []
    for sample in samples[:, 0].numpy():
        if upsample == "nearest":
            binary = Image.fromarray(((sample > 0) * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)
            masks.append(np.asarray(binary))
        else:
            smooth = np.asarray(Image.fromarray(sample.astype(np.float32)).resize((size, size), Image.BILINEAR))
            masks.append(((smooth > 0) * 255).astype(np.uint8))
    return masks


@dataclass(frozen=True)
class SamplingSettings:
    """What determines the masks of an output folder; resuming with other settings would mix two sets."""

    model: str
    seed: int
    sampler: str
    steps: int
    upsample: str
    sizes: tuple[int, ...]


def output_dirs(out_dir, source_size: int, image_size: int) -> dict[Path, int]:
    """Output folders and their mask size: the dataset's size in `Ground truth/`, the generator's in `masks_<size>/`."""
    out_dir = Path(out_dir)
    return {out_dir / SOURCE_DIR: source_size, out_dir / f"masks_{image_size}": image_size}


def mask_file_at(path, size: int) -> Path:
    """The file to read for mask `path` wanted at `size` px. A mask that `sample_masks` wrote into its dataset-size
    `Ground truth/` has a sibling in `masks_<size>/` when `size` was its image size: that one went from the generator's
    resolution to `size` in one nearest resize, where reading the dataset-size mask and resizing it again would be
    two. Any other mask is its own file."""
    path = Path(path)
    folder = path.parent.parent
    sized = folder / f"masks_{size}" / path.name
    if path.parent.name == SOURCE_DIR and (folder / SETTINGS_FILE).is_file() and sized.is_file():
        return sized
    return path


def sample_masks(model_dir, out_dir, per_class: int, *, seed: int = 0, steps: int | None = None, sampler: str = "ddpm",
                 source_size: int = 200, image_size: int = 256, upsample: str = "nearest", batch_size: int = 64,
                 classes: list[str] | None = None, device: str = "auto", progress: bool = True) -> dict:
    """Draw `per_class` masks of each class into `out_dir/Ground truth/` (source_size) and `out_dir/masks_<image_size>/`.

    Files are named as in SD-Saliency-900 (`In_1.png`, `Pa_1.png`, ...), PNG with values {0, 255}. Masks already
    written under the same settings are kept (resume); other settings in the same folder are an error.
    Returns a summary with the counts drawn and kept.
    """
    if per_class < 1:
        raise DefFillerError(f"--per-class must be at least 1, got {per_class}")
    if batch_size < 1:
        raise DefFillerError(f"sampling batch size must be at least 1, got {batch_size}")
    pipeline, known = load_mask_model(model_dir, resolve_device(device))
    pipeline.use_sampler(sampler)
    steps = steps or pipeline.scheduler.config.num_train_timesteps
    chosen = [known.index(label) for label in (classes or known.classes)]
    settings = SamplingSettings(str(model_folder(model_dir).resolve()), seed, sampler, steps, upsample, (source_size, image_size))
    out_dir = Path(out_dir)
    _check_settings(out_dir, settings)
    folders = output_dirs(out_dir, source_size, image_size)
    if is_main_process():
        for folder in (out_dir, *folders):
            remove_stale_temps(folder)  # left by a run killed inside a write
    wait_for_everyone()
    todo = [(c, i) for c in chosen for i in range(1, per_class + 1)
            if not all((folder / f"{known.prefixes[c]}_{i}.png").is_file() for folder in folders)]
    wait_for_everyone()  # every process has listed what is left before any writes
    if is_main_process():
        write_json(out_dir / SETTINGS_FILE, {**asdict(settings), "classes": list(known.classes),
                                             "prefixes": list(known.prefixes)})
    batches = my_share([todo[start:start + batch_size] for start in range(0, len(todo), batch_size)])
    for batch in tqdm(batches, desc="mask batches", disable=not (progress and is_main_process())):
        generators = [torch.Generator().manual_seed(mask_seed(seed, c, i)) for c, i in batch]
        samples = pipeline([c for c, _ in batch], generators, steps)
        for folder, size in folders.items():
            for (c, i), mask in zip(batch, to_binary(samples, size, upsample)):
                save_image(folder / f"{known.prefixes[c]}_{i}.png", mask)
    wait_for_everyone()
    return {"drawn": len(todo), "kept": per_class * len(chosen) - len(todo), "folders": [str(f) for f in folders],
            **asdict(settings)}


def _check_settings(out_dir: Path, settings: SamplingSettings) -> None:
    path = out_dir / SETTINGS_FILE
    if not path.is_file():
        return
    previous = json.loads(path.read_text(encoding="utf-8"))
    differing = [k for k, v in asdict(settings).items() if k in previous and _jsonable(previous[k]) != _jsonable(v)]
    if differing:
        raise DefFillerError(f"{out_dir}: holds masks drawn with other settings ({', '.join(f'{k}={previous[k]}' for k in differing)}); "
                             "choose another --out, or delete the folder to redraw")


def _jsonable(value):
    return json.loads(json.dumps(value))
