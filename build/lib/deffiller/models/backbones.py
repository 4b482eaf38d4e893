"""ImageNet backbone weights the field's way: torchvision's (CSEPNet's VGG16-bn, TSERNet's ResNet-34) and timm's
(the mask encoder's ConvNeXt-T), from the library's own cache or from a local file in the library's layout.

- torchvision: a profile names a member of the architecture's weights enum (`IMAGENET1K_V1`): the file that
  `torchvision.models.vgg16_bn(weights="IMAGENET1K_V1")` keeps in torch hub's cache (`$TORCH_HOME/hub/checkpoints/`),
  fetched by that API when `download` is on and the machine is online; or the path of a local state-dict file.
- timm: a pretrained model name (`convnext_tiny.fb_in1k`, the official `convnext_tiny(pretrained=True)`): the file
  timm keeps in the Hugging Face cache, fetched like timm does when `download` is on; or a local file.

A missing file is an error naming it and the one command that fetches it on a connected machine. Weights are loaded
into the library's own model class first (strictly: the file must hold that architecture), then copied part by part
into ours: every parameter and buffer of ours filled with the right shape, every entry of the library model used or
named as ignored (its classifier), so nothing is dropped silently. `BackboneFile.describe()` (origin, path, sha256)
goes into the run summaries.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from deffiller.errors import DefFillerError
from deffiller.utils.io import sha256_file

TORCHVISION_WEIGHTS = {"vgg16_bn": "VGG16_BN_Weights", "resnet34": "ResNet34_Weights"}


@dataclass(frozen=True)
class BackboneFile:
    path: Path
    origin: str  # e.g. "torchvision vgg16_bn IMAGENET1K_V1" or "local file"

    @property
    def sha256(self) -> str:
        return _sha256(str(self.path), self.path.stat().st_size, self.path.stat().st_mtime_ns)

    def describe(self) -> str:
        return f"{self.origin}: {self.path} sha256:{self.sha256}"


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime: int) -> str:
    return sha256_file(path)


def _torchvision_enum(arch: str):
    import torchvision.models

    if arch not in TORCHVISION_WEIGHTS:
        raise DefFillerError(f"no torchvision ImageNet weights known for {arch!r}; known: {sorted(TORCHVISION_WEIGHTS)}")
    return getattr(torchvision.models, TORCHVISION_WEIGHTS[arch])


def torchvision_file(arch: str, value: str, download: bool = False) -> BackboneFile:
    """The file of torchvision's `arch` weights named `value` (an enum member such as IMAGENET1K_V1: torch hub's
    cache, fetched through torchvision's weights API when `download`), or `value` as a local file."""
    enum = _torchvision_enum(arch)
    fetch = f'python -c "import torchvision; torchvision.models.{arch}(weights=\'{next(iter(enum.__members__))}\')"'
    if value not in enum.__members__:
        path = Path(value)
        if not path.is_file():
            raise DefFillerError(f"{path}: backbone weights file not found; give a torchvision {arch} state dict "
                                 f"file, or one of {list(enum.__members__)} for the file in torch hub's cache (on a "
                                 f"connected machine: {fetch})")
        return BackboneFile(path, "local file")
    weights = enum[value]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not path.is_file() and download:
        try:
            weights.get_state_dict(progress=False, check_hash=True)
        except Exception:  # offline, or the download was cut: the error below says what to do
            pass
    if not path.is_file():
        raise DefFillerError(f"{path}: torchvision's {arch} {value} ImageNet weights are not in torch hub's cache; on "
                             f"a connected machine run `{fetch}` (it writes {path.name} into $TORCH_HOME/hub/checkpoints/, "
                             f"by default ~/.cache/torch/hub/checkpoints/) and copy that file to {path}, or set the "
                             f"profile's entry to the file's path")
    return BackboneFile(path, f"torchvision {arch} {value}")


def timm_file(name: str, file: str | None = None, download: bool = False) -> BackboneFile:
    """The file of timm's pretrained model `name` (e.g. convnext_tiny.fb_in1k): `file` when given, else the one timm
    keeps in the Hugging Face cache (fetched like timm does when `download`)."""
    import timm
    from huggingface_hub import constants, hf_hub_download

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise DefFillerError(f"{name!r} is not a timm pretrained model name (e.g. convnext_tiny.fb_in1k)")
    fetch = f'python -c "import timm; timm.create_model(\'{name}\', pretrained=True)"'
    if file is not None:
        if not Path(file).is_file():
            raise DefFillerError(f"{file}: {name} weights file not found; give timm's (or the original) checkpoint of "
                                 f"{name}, or leave the file out to use the Hugging Face cache (on a connected machine: "
                                 f"{fetch})")
        return BackboneFile(Path(file), f"timm {name} (local file)")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            return BackboneFile(Path(hf_hub_download(cfg.hf_hub_id, filename, local_files_only=not download)),
                                f"timm {name}")
        except Exception:  # not cached (or offline): try the other file name, then say what to do
            continue
    folder = Path(constants.HF_HUB_CACHE) / f"models--{cfg.hf_hub_id.replace('/', '--')}"
    raise DefFillerError(f"{folder}: timm's {name} ImageNet weights are not in the Hugging Face cache; on a connected "
                         f"machine run `{fetch}` (it writes that folder under ~/.cache/huggingface/hub/) and copy the "
                         f"folder here, or give the weights file in the profile")


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise DefFillerError(f"cannot read backbone weights {path} ({error}); give the {what} state dict file") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DefFillerError(f"{path} is not a state dict (a mapping of names to tensors); give the {what} state dict file")
    return state


def torchvision_model(arch: str, path: Path) -> nn.Module:
    """torchvision's own `arch` with the weights of the state-dict file `path`, checked key by key and shape by shape."""
    import torchvision.models

    state = read_state_dict(path, f"torchvision {arch}")
    model = getattr(torchvision.models, arch)(weights=None)
    own = model.state_dict()
    # old torchvision files have no BN `num_batches_tracked`; BatchNorm fills it in when loading
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        problems = [f"{len(missing)} missing (e.g. {missing[:3]})"] if missing else []
        problems += [f"{len(unexpected)} unknown (e.g. {unexpected[:3]})"] if unexpected else []
        problems += [f"{len(mismatched)} with the wrong shape (e.g. {mismatched[:3]})"] if mismatched else []
        raise DefFillerError(f"{path} does not hold {arch} weights: {', '.join(problems)}; give torchvision's {arch} "
                             f"state dict (the file torchvision.models.{arch}(weights=...) downloads)")
    model.load_state_dict(state, strict=False)
    return model


def timm_model(name: str, path: Path) -> nn.Module:
    """timm's own model `name` (without its classifier) with the weights of `path`, loaded by timm (strict; the
    original layout of the file, e.g. facebook's ConvNeXt checkpoints, converted by timm's filter)."""
    import timm

    try:
        return timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)})
    except Exception as error:  # timm raises RuntimeError for wrong keys or shapes, others for unreadable files
        raise DefFillerError(f"{path} does not hold {name} weights timm can load ({str(error).splitlines()[0][:300]}); "
                             f"give timm's checkpoint of {name}") from None


def copy_parts(parts: dict[str, nn.Module], library: nn.Module, ignored: tuple[str, ...], where: Path) -> None:
    """Copy the library model's submodules into ours (`parts`: library submodule name -> our module). Every entry
    of ours must be filled with the right shape and every entry of the library's state dict used, unless its name
    starts with one of `ignored` (what our network does not have, e.g. the classifier)."""
    state, used = library.state_dict(), set()
    for name, module in parts.items():
        theirs = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")}
        own = module.state_dict()
        missing, extra = sorted(set(own) - set(theirs)), sorted(set(theirs) - set(own))
        wrong = sorted(k for k in set(own) & set(theirs) if own[k].shape != theirs[k].shape)
        if missing or extra or wrong:
            raise DefFillerError(f"{where}: the weights of {name!r} do not fit our network (missing {missing[:3]}, "
                                 f"unknown {extra[:3]}, wrong shape {wrong[:3]}); check the profile's architecture")
        module.load_state_dict(theirs)
        used |= {f"{name}.{k}" for k in theirs}
    left = sorted(k for k in state if k not in used and not k.startswith(ignored))
    if left:
        raise DefFillerError(f"{where}: {len(left)} weights would be dropped (e.g. {left[:3]})")
