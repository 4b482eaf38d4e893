"""Inference with a trained detector: the official test-time pipeline of each network, 8-bit maps at the source size.

Images are resized like skimage's `transform.resize(mode="constant")` of the BASNet-lineage loaders (bilinear,
pixel-centre aligned, zero outside the image), scaled by 1/max or 1/255, normalised and replicated to 3 channels.
The first output is turned into a probability map (min-max normalised where the network's test script does that),
truncated to 8 bits and resized back to the source size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from tqdm import tqdm

from deffiller.detection.metrics import to_gray8
from deffiller.detection.registry import Detector, Preprocess, create_detector
from deffiller.errors import DefFillerError
from deffiller.utils.device import resolve_device
from deffiller.utils.io import images_in, read_image, save_image
from deffiller.utils.processes import is_main_process, my_share, wait_for_everyone


def resize(array: np.ndarray, size: int, order: int = 1) -> np.ndarray:
    """HxW float array -> size x size (order 1 = bilinear for images, 0 = nearest for masks)."""
    zoom = (size / array.shape[0], size / array.shape[1])
    return ndi.zoom(array, zoom, order=order, mode="grid-constant", cval=0.0, grid_mode=True)


def normalize(image: np.ndarray | torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """HxW float image in [0,1] (an array, or a tensor on any device) -> (3,H,W) float32 network input."""
    x = torch.as_tensor(image)
    if pre.divide_by_max:
        x = x / x.max().clamp_min(1e-8)
    x = x.float()
    mean, std = (torch.tensor(v, device=x.device)[:, None, None] for v in (pre.mean, pre.std))
    return (x[None].expand(3, -1, -1) - mean) / std


def test_input(gray: np.ndarray, pre: Preprocess) -> torch.Tensor:
    """uint8 HxW image -> (3, test_size, test_size)."""
    return normalize(resize(gray.astype(np.float64) / 255.0, pre.test_size), pre)


def output_map(logits: torch.Tensor, pre: Preprocess, size: tuple[int, int]) -> np.ndarray:
    """(1,h,w) logits of the first output -> uint8 HxW map at `size` (H, W)."""
    prob = torch.sigmoid(logits[0].float())
    if pre.minmax_output:
        prob = (prob - prob.min()) / (prob.max() - prob.min()).clamp_min(1e-8)
    resample = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[pre.resize_back]
    return np.asarray(Image.fromarray(to_gray8(prob.cpu().numpy())).resize((size[1], size[0]), resample))


def load_detector(net: str, weights, device: str = "cpu") -> Detector:
    """A registered network with trained weights: a `deffiller detect train` checkpoint or a plain state dict
    (official checkpoints are converted when the network provides `convert_state_dict`). A checkpoint's recorded input
    pipeline replaces the official one, so a network trained at a profile's `detect.input_size` is tested at it."""
    path = Path(weights)
    if not path.is_file():
        raise DefFillerError(f"{path}: weights file not found; train one with `deffiller detect train --net {net}`")
    model = create_detector(net)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DefFillerError(f"{path}: cannot read weights ({exc}); the file is corrupt or not a torch checkpoint") from exc
    trained_pipeline = None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        if state.get("net", net) != net:
            raise DefFillerError(f"{path}: checkpoint of {state['net']!r}, not {net!r}; pass --net {state['net']}")
        trained_pipeline = state.get("preprocess")
        state = state["model"]
    own = set(model.state_dict())
    if set(state) != own and hasattr(model, "convert_state_dict"):
        state = model.convert_state_dict(state)
    missing, unexpected = own - set(state), set(state) - own
    if missing or unexpected:
        raise DefFillerError(
            f"{path}: not {net} weights ({len(missing)} missing keys, e.g. {sorted(missing)[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {sorted(unexpected)[:3]})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DefFillerError(f"{path}: weights do not fit {net}: {str(exc).splitlines()[-1].strip()}") from exc
    if trained_pipeline:  # test at the sizes it was trained with (a profile's detect.input_size)
        model.preprocess = Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in trained_pipeline.items()})
    return fuse_conv_bn(model.eval()).to(device, memory_format=torch.channels_last)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in a Sequential into the conv (eval only; ~25% faster)."""
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
    return model


@torch.no_grad()
def predict_maps(model: Detector, grays: list[np.ndarray], batch_size: int = 8, device: str = "cpu"):
    """Yield one uint8 map per uint8 gray image, at the image's size."""
    pre = model.preprocess
    model.eval()
    for start in range(0, len(grays), batch_size):
        chunk = grays[start:start + batch_size]
        batch = torch.stack([test_input(g, pre) for g in chunk]).to(device, memory_format=torch.channels_last)
        outputs = model(batch)[0]
        for gray, logits in zip(chunk, outputs):
            yield output_map(logits, pre, gray.shape)


def predict_folder(net: str, weights, images, out, batch_size: int = 8, device: str = "auto") -> list[Path]:
    """Write `<out>/<stem>.png` for every image of a folder (or list of paths); returns the written paths. Under
    `accelerate launch` the batches are shared out between the processes."""
    paths = list(images) if isinstance(images, (list, tuple)) else images_in(images)
    device = resolve_device(device)
    model = load_detector(net, weights, device)
    out = Path(out)
    chunks = my_share([paths[start:start + batch_size] for start in range(0, len(paths), batch_size)])
    with tqdm(total=sum(map(len, chunks)), desc=f"predict {net}", unit="img", disable=not is_main_process()) as bar:
        for chunk in chunks:
            maps = predict_maps(model, [read_image(p, "L") for p in chunk], batch_size, device)
            for path, pred in zip(chunk, maps):
                save_image(out / f"{Path(path).stem}.png", pred)
            bar.update(len(chunk))
    wait_for_everyone()
    return [out / f"{Path(path).stem}.png" for path in paths]


