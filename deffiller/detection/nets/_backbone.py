"""Loading a detector's ImageNet backbone from a torchvision state-dict file (see `deffiller.models.backbones` for
where the file comes from: torch hub's cache through torchvision's weights API, or a local path)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from deffiller.errors import DefFillerError
from deffiller.models.backbones import copy_parts, torchvision_model


def load_torchvision_backbone(parts: dict[str, nn.Module], path: str | Path, arch: str,
                              ignored: tuple[str, ...]) -> None:
    """Load the torchvision `arch` state dict at `path` into torchvision's own model, then copy its submodules into
    ours (`parts`: torchvision submodule name -> our module); `ignored` names what our network does not use."""
    path = Path(path)
    if not path.is_file():
        raise DefFillerError(f"backbone weights file {path} does not exist; pass the torchvision ImageNet state dict "
                             f"of {arch} (the file torchvision.models.{arch}(weights=...) downloads)")
    copy_parts(parts, torchvision_model(arch, path), ignored, path)
