"""Frames for source_node, without ROS: a video file, an image folder, a rosbag, or the bundled sample images.

``open_source(path)`` picks the reader from the path:
- ``"bundled"`` or ``""``: ultralytics' bundled ``bus.jpg`` and ``zidane.jpg`` (so the demo runs on a fresh machine);
- a directory with ``metadata.yaml`` (rosbag2): sensor_msgs/Image or CompressedImage messages of ``topic``
  (default: the bag's only image topic), read by the evaluation tools' rosbag reader (``rosbags``; imported only
  for a bag input, so no node process loads the evaluation package otherwise);
- another directory: its images, sorted by name (``roi_codec_ros.files``, the one image reader);
- an image file: that image;
- any other file: a video decoded with PyAV.
Every reader yields HxWx3 uint8 RGB frames, resized to ``size`` = (width, height) when given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from roi_codec_ros.files import IMAGE_SUFFIXES, image_files, read_image_rgb, sample_images

BUNDLED = "bundled"  # the input name of the bundled sample images
CACHE_MAX_FRAMES = 64  # image lists up to this size are decoded once and kept in memory


class FrameSourceError(ValueError):
    """The input cannot be read as frames (missing, empty, no image topic, undecodable)."""


def bundled_images() -> list[Path]:
    """ultralytics' sample images (bus.jpg, zidane.jpg): always installed with the detector dependency."""
    try:
        return sample_images()
    except FileNotFoundError as exc:
        raise FrameSourceError(f"{exc} (reinstall ultralytics)") from exc


def _resize(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if not size or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    import cv2

    return cv2.resize(image, tuple(int(v) for v in size), interpolation=cv2.INTER_AREA)


class FrameSource:
    """Base: ``frames()`` yields RGB frames from the start each time it is called."""

    description = ""

    def __init__(self, size: tuple[int, int] | None = None):
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise FrameSourceError(f"size must be (width, height) >= 1, got {size}")
        self.size = tuple(size) if size else None

    def frames(self) -> Iterator[np.ndarray]:
        raise NotImplementedError


class ImageListSource(FrameSource):
    def __init__(self, paths: list[Path], size: tuple[int, int] | None = None, description: str = ""):
        super().__init__(size)
        if not paths:
            raise FrameSourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {description or 'the input'}")
        self.paths = list(paths)
        self.description = description or f"{len(self.paths)} images"
        self._cache: list[np.ndarray] | None = None
        if len(self.paths) <= CACHE_MAX_FRAMES:
            self._cache = [self._load(p) for p in self.paths]

    def _load(self, path: Path) -> np.ndarray:
        try:
            return np.ascontiguousarray(_resize(read_image_rgb(path), self.size))
        except Exception as exc:  # noqa: BLE001 - re-raised with the file named
            raise FrameSourceError(f"cannot read image {path}: {exc}") from exc

    def frames(self) -> Iterator[np.ndarray]:
        if self._cache is not None:
            yield from self._cache
        else:
            for path in self.paths:
                yield self._load(path)


class VideoSource(FrameSource):
    def __init__(self, path: Path, size: tuple[int, int] | None = None):
        super().__init__(size)
        import av

        self.path = path
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise FrameSourceError(f"{path} has no video stream")
        except av.error.FFmpegError as exc:
            raise FrameSourceError(f"cannot open {path} as a video: {exc}") from exc
        self.description = f"video {path}"

    def frames(self) -> Iterator[np.ndarray]:
        import av

        with av.open(str(self.path)) as container:
            for frame in container.decode(video=0):
                yield np.ascontiguousarray(_resize(frame.to_ndarray(format="rgb24"), self.size))


class RosbagSource(FrameSource):
    def __init__(self, path: Path, topic: str = "", size: tuple[int, int] | None = None):
        super().__init__(size)
        from roi_codec_ros.evaluation.bags import BagError, image_topic_info

        self.path = path
        try:
            info = image_topic_info(path, topic or None)
        except (BagError, OSError) as exc:
            raise FrameSourceError(f"rosbag {path}: {exc}") from exc
        self.topic = info.topic
        self.description = f"rosbag {path} topic {self.topic} ({info.count} frames)"

    def frames(self) -> Iterator[np.ndarray]:
        from roi_codec_ros.evaluation.bags import iter_bag_frames

        for frame in iter_bag_frames(self.path, self.topic):
            yield np.ascontiguousarray(_resize(frame.image, self.size))


def open_source(path: str = "", topic: str = "", size: tuple[int, int] | None = None) -> FrameSource:
    """The reader for ``path`` (see module docstring); raises FrameSourceError with the reason."""
    if path in ("", BUNDLED):
        return ImageListSource(bundled_images(), size, "bundled sample images (ultralytics bus.jpg, zidane.jpg)")
    p = Path(path).expanduser()
    if not p.exists():
        raise FrameSourceError(f"input {path!r} does not exist (give a video file, an image folder or a rosbag)")
    if p.is_dir() and (p / "metadata.yaml").is_file():
        return RosbagSource(p, topic, size)
    if p.is_dir():
        try:
            return ImageListSource(image_files(p), size, f"image folder {p}")
        except FileNotFoundError as exc:
            raise FrameSourceError(str(exc)) from exc
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return ImageListSource([p], size, f"image {p}")
    return VideoSource(p, size)
