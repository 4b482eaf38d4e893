"""Atomic writes (files and folders) and image reading with clear errors."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deffiller.errors import DefFillerError

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


TEMP_NAME = re.compile(r"\..+\.[^.]+\.tmp(\.[^.]*)?")  # .<name>.<random>.tmp<suffix>, as atomic_path names them
DOOMED_NAME = re.compile(r"\..+\.deleting")  # .<name>.deleting, as remove_folder names a folder it deletes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    A process killed inside the block leaves the temporary file behind (never `path` half-written);
    `remove_stale_temps` clears such leftovers when the job is rerun."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make outputs private to their writer
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _aside(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def recover_folder(folder) -> Path:
    """Finish or undo a `replace_folder` killed midway, so `folder` holds a complete old or new version (or is absent
    if it never existed): call it before reading a folder that `replace_folder` writes."""
    folder = Path(folder)
    aside = _aside(folder)
    if aside.exists():
        if folder.exists():
            shutil.rmtree(aside)  # the new folder is in place: only the old one's deletion was cut short
        else:
            os.rename(aside, folder)  # killed between the two renames: the old folder comes back
    return folder


def replace_folder(staging, folder) -> Path:
    """Put the complete folder `staging` in place of `folder`, keeping the old `folder` until the new one is there:
    rename the old aside, rename the new in, delete the old. A kill at any point leaves the old or the new folder
    (after `recover_folder`), never none and never a mixture."""
    staging, folder = Path(staging), Path(folder)
    recover_folder(folder)
    aside = _aside(folder)
    if folder.exists():
        os.rename(folder, aside)
    os.rename(staging, folder)
    if aside.exists():
        shutil.rmtree(aside)
    return folder


@contextlib.contextmanager
def staged_folder(folder):
    """Yield an empty staging folder next to `folder`; on success it replaces `folder` (`replace_folder`), on an
    error it is removed and `folder` is left as it was. A kill leaves the staging folder, cleared on the next use."""
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, folder)


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def save_image(path, array_or_image, format: str | None = None) -> Path:
    """Save a uint8 array (HxW or HxWx3) or PIL image atomically."""
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(np.asarray(array_or_image))
    path = Path(path)
    fmt = format or {".bmp": "BMP", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt)
    return path


def read_image(path, mode: str = "L") -> np.ndarray:
    """Read an image as uint8 in `mode` ('L' or 'RGB'), with a clear error for unreadable files.

    16-bit images are scaled to 8 bits, palette and RGBA images converted; a truncated or corrupt
    file raises DefFillerError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise DefFillerError(f"{path}: file not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                peak = 65535.0 if arr.max() > 255 else 255.0
                im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
            if im.mode == "RGBA" or im.mode == "LA" or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im)
            return np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DefFillerError(
            f"{path}: cannot read image ({exc}); the file is corrupt or truncated: replace or remove it"
        ) from exc


def sha256_file(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_folder(folder) -> None:
    """Delete `folder` so that a kill midway never leaves it half-deleted under its own name: it is renamed aside
    first, and `remove_stale_temps` of its parent finishes a deletion that was cut short."""
    folder = Path(folder)
    doomed = folder.with_name(f".{folder.name}.deleting")
    os.rename(folder, doomed)
    shutil.rmtree(doomed)


def remove_stale_temps(folder) -> list[Path]:
    """Delete the temporary files that writers killed inside `atomic_path` left in `folder` (not recursive), and
    the folders whose `remove_folder` was cut short; returns them. Call it only while no other process writes into
    `folder`."""
    folder = Path(folder)
    entries = sorted(folder.iterdir()) if folder.is_dir() else []
    stale = [p for p in entries if (p.is_file() and TEMP_NAME.fullmatch(p.name))
             or (p.is_dir() and DOOMED_NAME.fullmatch(p.name))]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    return stale


def images_in(folder, kind: str = "image", hint: str = "(.bmp, .png, .jpg, ...)") -> list[Path]:
    """`list_images` of a folder that must hold some: a clear error naming the folder when it is absent or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DefFillerError(f"{folder}: {kind} folder not found")
    paths = list_images(folder)
    if not paths:
        raise DefFillerError(f"{folder}: no {'' if kind == 'image' else kind + ' '}images {hint} in this folder")
    return paths


def list_images(folder) -> list[Path]:
    """Image files of `folder`, sorted; hidden files (temporaries of atomic writes, `._*` of macOS) are skipped."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)

