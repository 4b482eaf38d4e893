"""Loading a detector's ImageNet backbone from a torchvision state-dict file (see `deffiller.models.backbones` for
where the file comes from: torch hub's cache through torchvision's weights API, or a local path)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

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


def rename_state_dict(official: dict, renames: list[tuple[str, str]],
                      adapt: Callable[[str, object], object] = lambda key, value: value) -> dict:
    """An official checkpoint's state dict under this package's names: each (pattern, replacement) of `renames` applied
    in order to every key; `adapt(new_key, value)` rearranges a value where the layouts differ."""
    converted = {}
    for key, value in official.items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        converted[key] = adapt(key, value)
    return converted
