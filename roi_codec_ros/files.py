"""File helpers every package uses: image files in, outputs written whole or not at all, file hashes.

- ``SAMPLE_IMAGES``/``sample_images``: the bundled sample frames (demo, frame source).
- ``IMAGE_SUFFIXES``, ``image_files``, ``read_image_rgb``: the one image reader (Pillow; EXIF orientation applied,
  16-bit images scaled to 8 bits, palette/alpha/grey converted to RGB).
- ``atomic_path``, ``write_bytes_atomic``, ``write_text_atomic``, ``save_image_atomic``: an output is written to a
  temporary file in the target's folder, flushed to disk and renamed over the target, so a full disk or a crash
  leaves the previous file (or none), never a partial one.
- ``file_sha256``: hex sha256 of a file (``hashlib.file_digest``).

No torch, no ROS: the codec, detector, training and evaluation packages and the CLI all import this module.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
SAMPLE_IMAGES = ("bus.jpg", "zidane.jpg")  # ultralytics' bundled sample images (ultralytics/assets)


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and the reason."""


def image_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files (by suffix) of ``folder`` in path order; FileNotFoundError if the folder is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        where = "under" if recursive else "in"
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) {where} {folder}")
    return files


def read_image_rgb(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """An image file as a writable HxWx3 uint8 RGB array; ``max_side`` downscales (bicubic) larger images.

    Raises ImageReadError (a ValueError) for a missing, unreadable or truncated file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with _pil_open(path) as im:
            im = ImageOps.exif_transpose(im)  # as viewers (and OpenCV's imread) show it
            if im.mode.startswith("I;16") or im.mode == "I":
                # Pillow's convert("RGB") clips 16-bit values at 255; keep the top 8 bits instead
                im = Image.fromarray((np.asarray(im, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
            im = im.convert("RGB")
            if max_side and max(im.size) > max_side:
                scale = max_side / max(im.size)
                size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
                im = im.resize(size, Image.Resampling.BICUBIC)
            return np.array(im, dtype=np.uint8)
    except FileNotFoundError as exc:
        raise ImageReadError(f"cannot read image {path}: no such file") from exc
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    except ImportError as exc:  # a patched Image.open that wants a plugin for a file Pillow cannot identify
        raise ImageReadError(f"cannot read image {path}: not an image format Pillow knows ({exc})") from exc


def _pil_open(path):
    """``PIL.Image.open`` as Pillow defines it. Importing ultralytics replaces it with a wrapper that, on a file
    Pillow cannot identify, runs its requirements check for a HEIF plugin (a pip install where auto-install is on)
    and then fails with an ImportError; an unreadable file must just be an unreadable file."""
    from PIL import Image

    opener = Image.open
    if getattr(opener, "__module__", "").startswith("ultralytics"):
        opener = getattr(opener, "__globals__", {}).get("_image_open", opener)
    return opener(path)


def sample_images() -> list[Path]:
    """Paths of ``SAMPLE_IMAGES``, installed with ultralytics (the detector dependency); FileNotFoundError if absent."""
    try:
        from ultralytics.utils import ASSETS
    except ImportError as exc:
        raise FileNotFoundError("the sample images ship with ultralytics, which is not installed") from exc
    paths = [Path(ASSETS) / name for name in SAMPLE_IMAGES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"sample images missing from the ultralytics install: {', '.join(missing)}")
    return paths


_UMASK: int | None = None


def _file_mode() -> int:
    """0o666 minus the process umask: the mode a plain ``open(path, 'w')`` would have given the file."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that pick the format from it work); when the
    block ends without an exception the file is flushed to disk and renamed to ``path``, else it is removed.

    The rename is atomic on POSIX file systems: readers see the old file or the complete new one.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".part{target.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as f:  # the writer has closed its own handle: get what it wrote onto the disk
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600; give the file the mode a plain write would
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text version of ``write_bytes_atomic``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_image_atomic(path: str | os.PathLike, image: np.ndarray, **save_args) -> Path:
    """Save an HxWx3 (or HxW) uint8 array as an image file (format from the suffix), whole or not at all."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, **save_args)
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
