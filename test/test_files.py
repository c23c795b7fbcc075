"""roi_codec_ros.files: the one image reader, atomic outputs, file hashes."""
from __future__ import annotations

import errno
import hashlib
import os
import stat

import numpy as np
import pytest
from PIL import Image

from roi_codec_ros import files


def test_atomic_write_replaces_whole_and_keeps_the_mode_of_a_plain_write(tmp_path):
    target = tmp_path / "out.bin"
    files.write_bytes_atomic(target, b"first")
    files.write_bytes_atomic(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_failure_midway_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(OSError, match="No space"):
        with files.atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp != target
            tmp.write_bytes(b"half of the new con")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_image_save_picks_the_format_from_the_suffix(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    files.save_image_atomic(tmp_path / "a.png", image)
    files.save_image_atomic(tmp_path / "a.jpg", image, quality=95)
    assert np.array_equal(files.read_image_rgb(tmp_path / "a.png"), image)
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.format == "JPEG"
    with pytest.raises((KeyError, ValueError)):
        files.save_image_atomic(tmp_path / "a.unknownsuffix", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.png"]


def test_reader_converts_grey_alpha_and_16_bit_to_rgb8(tmp_path):
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    rgba = np.dstack([np.full((6, 10, 3), 200, np.uint8), np.zeros((6, 10), np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray((grey.astype(np.uint16) * 256 + 255)).save(tmp_path / "deep.png")
    assert np.array_equal(files.read_image_rgb(tmp_path / "grey.png"), np.repeat(grey[..., None], 3, axis=2))
    assert (files.read_image_rgb(tmp_path / "rgba.png") == 200).all()
    deep = files.read_image_rgb(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and np.array_equal(deep[..., 0], grey)  # top 8 bits, not clipped at 255
    assert max(files.read_image_rgb(tmp_path / "grey.png", max_side=5).shape[:2]) == 5


def test_reader_errors_name_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(files.ImageReadError, match="broken.png"):
        files.read_image_rgb(tmp_path / "broken.png")
    with pytest.raises(files.ImageReadError, match="no such file"):
        files.read_image_rgb(tmp_path / "missing.png")


def test_image_files_by_suffix_flat_or_recursive(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.PNG", "a.jpg", "notes.txt", "sub/c.webp"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in files.image_files(tmp_path)] == ["a.jpg", "b.PNG"]
    assert [p.name for p in files.image_files(tmp_path, recursive=True)] == ["a.jpg", "b.PNG", "c.webp"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        files.image_files(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        files.image_files(tmp_path / "missing")


def test_file_sha256(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "w.pt").write_bytes(data)
    assert files.file_sha256(tmp_path / "w.pt") == hashlib.sha256(data).hexdigest()


def test_reader_errors_stay_clear_after_ultralytics_patched_pillow(tmp_path):
    """ultralytics replaces PIL.Image.open with a wrapper that wants a HEIF plugin for unknown files."""
    pytest.importorskip("ultralytics.utils")
    assert Image.open.__module__.startswith("ultralytics")  # the patch this test is about is in place
    (tmp_path / "broken.jpg").write_bytes(b"neither JPEG nor anything else")
    with pytest.raises(files.ImageReadError, match="broken.jpg.*cannot identify"):
        files.read_image_rgb(tmp_path / "broken.jpg")
