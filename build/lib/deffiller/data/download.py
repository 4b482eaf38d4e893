"""Get SD-Saliency-900: from its public source when online, or from a local archive or folder.

The result is always `<out>/SD-saliency-900/{Source Images,Ground truth}` (the published layout),
verified by file count and by a digest over every file's name and sha256, then moved into place
in one rename so an interrupted download leaves nothing half-written.
"""
from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from deffiller.data.layout import DATASET_DIR, IMAGE_DIRS, MASK_DIRS, find_dataset
from deffiller.errors import DefFillerError
from deffiller.utils.io import replace_folder

PUBLIC_SOURCE = "https://github.com/SongGuorong/MCITF/archive/refs/heads/master.zip"
EXPECTED_FILES = 1800  # 900 BMP images + 900 PNG masks
EXPECTED_DIGEST = "a8de061459c4cd056151d03c500c461bb8e746edb5f5a58c135169bbe7b4d0c4"  # MCITF master, Nov 2019 GT fix


def dataset_digest(dataset_dir) -> tuple[int, str]:
    """(file count, sha256 over sorted 'relative/path\\0sha256' lines) of a dataset folder."""
    dataset_dir = Path(dataset_dir)
    digest = hashlib.sha256()
    files = sorted(p for p in dataset_dir.rglob("*") if p.is_file())
    for path in files:
        file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
        digest.update(f"{path.relative_to(dataset_dir).as_posix()}\0{file_hash}\n".encode())
    return len(files), digest.hexdigest()


def _locate(root: Path) -> tuple[Path, Path]:
    for candidate in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        try:
            return find_dataset(candidate)
        except DefFillerError:
            continue
    raise DefFillerError(f"no '{IMAGE_DIRS[0]}/' + '{MASK_DIRS[0]}/' folders found inside the source")


def _unpack(source: Path, into: Path) -> Path:
    if source.is_dir():
        return source
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            archive.extractall(into)
        return into
    if tarfile.is_tarfile(source):
        with tarfile.open(source) as archive:
            archive.extractall(into, filter="data")
        return into
    raise DefFillerError(f"{source}: not a folder, zip or tar archive")


def download(out="data", source: str | None = None, verify: bool = True) -> Path:
    """Install SD-Saliency-900 under `out`; `source` is a URL, a local archive or a local folder."""
    out = Path(out)
    target = out / DATASET_DIR
    if target.exists():
        raise DefFillerError(f"{target} already exists; remove it first or use it as it is")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".download-") as tmp:
        tmp = Path(tmp)
        source = source or PUBLIC_SOURCE
        if "://" in source:
            archive = tmp / "source.zip"
            try:
                with urllib.request.urlopen(source, timeout=60) as response, open(archive, "wb") as fh:
                    shutil.copyfileobj(response, fh)
            except OSError as exc:
                raise DefFillerError(
                    f"cannot download {source} ({exc}); without internet, download it elsewhere and run "
                    f"`deffiller data download --source <zip or folder>`"
                ) from exc
            source_path = archive
        else:
            source_path = Path(source)
            if not source_path.exists():
                raise DefFillerError(f"{source_path}: source not found")
        image_dir, mask_dir = _locate(_unpack(source_path, tmp / "unpacked"))
        staged = tmp / DATASET_DIR
        shutil.copytree(image_dir, staged / IMAGE_DIRS[0])
        shutil.copytree(mask_dir, staged / MASK_DIRS[0])
        count, digest = dataset_digest(staged)
        if verify and count != EXPECTED_FILES:
            raise DefFillerError(f"{source}: {count} files, expected {EXPECTED_FILES}; the source is incomplete")
        if verify and digest != EXPECTED_DIGEST:
            raise DefFillerError(
                f"{source}: checksum {digest[:12]} differs from the published release ({EXPECTED_DIGEST[:12]}); "
                "pass --no-verify to use it anyway"
            )
        replace_folder(staged, target)
    return target
