"""The detector registry and the contract every saliency detector follows (see `deffiller.detection.nets`).

`@register_detector("minet")` on a detector class (built with no arguments); `create_detector(name)`
imports `deffiller.detection.nets.<name>` on first use, so a network's module is loaded only when asked for.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import torch
from torch import nn

from deffiller.errors import DefFillerError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """A network's official input pipeline. Gray images are replicated to 3 channels."""

    train_size: int  # training images and masks are resized to train_size x train_size ...
    crop_size: int | None  # ... then randomly cropped to crop_size (None = no crop)
    test_size: int  # test images are resized to test_size x test_size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    divide_by_max: bool = False  # scale each image by 1/max (BASNet-style) instead of 1/255
    hflip: bool = False  # random horizontal flip
    rotation: float = 0.0  # random rotation within +-degrees (0 = off)
    color_jitter: float = 0.0  # ColorJitter(brightness=contrast=saturation=this) (0 = off)
    minmax_output: bool = False  # test map = min-max normalised sigmoid (else the plain sigmoid)
    resize_back: str = "bilinear"  # interpolation of the map back to the source size: bilinear | nearest


@dataclass(frozen=True)
class TrainDefaults:
    """Optimisation settings of a network (Table 4 of the paper plus the official scripts)."""

    optimizer: str  # sgd | adam
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    momentum: float = 0.9  # SGD momentum
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas
    schedule: str = "constant"  # constant | poly (lr * (1 - epoch/epochs) ** 0.9, stepped per epoch)
    decay_bias_and_norm: bool = True  # False = biases and BN parameters are exempt from weight decay


class Detector(nn.Module):
    """Base class of the saliency detectors; subclasses set `preprocess` and `train_defaults`.

    forward(x: (B,3,H,W) normalised) -> list of side-output LOGITS (B,1,H,W) at input size, first = the prediction.
    loss(outputs, target: (B,1,H,W) float in {0,1}) -> scalar.
    """

    preprocess: ClassVar[Preprocess]
    train_defaults: ClassVar[TrainDefaults]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def loss(self, outputs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


_BUILDERS: dict[str, Callable[..., Detector]] = {}
_BACKBONES: dict[str, str | None] = {}


def register_detector(name: str, backbone: str | None = None):
    """Class decorator registering a `Detector` under `name`; `backbone` names the torchvision model whose ImageNet
    weights the network's `load_backbone` takes (None: the network has no pretrained backbone)."""

    def decorate(cls):
        if name in _BUILDERS and _BUILDERS[name] is not cls:
            raise ValueError(f"detector {name!r} is registered twice")
        _BUILDERS[name], _BACKBONES[name] = cls, backbone
        return cls

    return decorate


def _network_modules() -> list[str]:
    folder = Path(__file__).with_name("nets")  # listed, not imported: the package re-exports this module
    return sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_"))


def _load(name: str) -> None:
    if name not in _BUILDERS and name in _network_modules():
        importlib.import_module(f"deffiller.detection.nets.{name}")


def list_detectors() -> list[str]:
    """Names of all detectors whose module exists in `deffiller.detection.nets`."""
    for name in _network_modules():
        _load(name)
    return sorted(_BUILDERS)


def backbone_arch(name: str) -> str | None:
    """The torchvision model of `name`'s pretrained backbone (vgg16_bn, resnet34), None when it has none."""
    _load(name)
    if name not in _BUILDERS:
        raise DefFillerError(f"unknown detector {name!r}; choose one of {list_detectors()}")
    return _BACKBONES[name]


def create_detector(name: str, backbone_weights: str | None = None) -> Detector:
    """Build a registered detector; `backbone_weights` = local ImageNet weights file, None = from scratch."""
    _load(name)
    if name not in _BUILDERS:
        raise DefFillerError(f"unknown detector {name!r}; choose one of {list_detectors()}")
    net = _BUILDERS[name]()
    if backbone_weights is not None:
        if _BACKBONES[name] is None:
            raise DefFillerError(f"{name} has no pretrained backbone, so backbone weights {backbone_weights} cannot "
                                 f"be loaded; leave detect.backbone_weights for {name} unset")
        net.load_backbone(backbone_weights)
    return net
