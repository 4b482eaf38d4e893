"""Loading ImageNet backbone weights from a LOCAL torchvision state-dict file (nothing is ever downloaded)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deffiller.errors import DefFillerError


def load_torchvision_weights(module: nn.Module, path: str | Path, arch: str, prefix: str = "") -> None:
    """Copy the entries of the torchvision `arch` state dict at `path` whose names start with `prefix` into
    `module` (prefix stripped). Every parameter and running statistic of `module` must be there with the right shape."""
    path = Path(path)
    hint = f"pass the torchvision ImageNet state dict of {arch} (e.g. the file torchvision.models.{arch} downloads)"
    if not path.is_file():
        raise DefFillerError(f"backbone weights file {path} does not exist; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise DefFillerError(f"cannot read backbone weights {path} ({error}); {hint}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DefFillerError(f"{path} is not a state dict (a mapping of names to tensors); {hint}")
    # old torchvision files have no BN `num_batches_tracked`; BatchNorm fills it in when loading
    wanted = {f"{prefix}{name}": t for name, t in module.state_dict().items()
              if not name.endswith("num_batches_tracked")}
    missing = sorted(set(wanted) - set(state))
    mismatched = sorted(name for name in set(wanted) & set(state) if state[name].shape != wanted[name].shape)
    if missing or mismatched:
        problems = [f"{len(missing)} missing (e.g. {missing[:3]})"] if missing else []
        problems += [f"{len(mismatched)} with the wrong shape (e.g. {mismatched[:3]})"] if mismatched else []
        raise DefFillerError(f"{path} does not hold {arch} weights: {', '.join(problems)}; {hint}")
    module.load_state_dict({name[len(prefix):]: state[name] for name in wanted})
