"""sensor_msgs/Image <-> numpy without cv_bridge (its pip wheel is broken) and without importing ROS.

Works on the message's fields (height, width, encoding, step, data), so it is testable with plain values.
``data`` may be ``bytes`` or the ``array('B')`` rclpy delivers for ``uint8[]``; both are read without a copy.
"""
from __future__ import annotations

import numpy as np

# encoding -> channels; the codec always works on RGB
CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
SUPPORTED_ENCODINGS = tuple(CHANNELS)


class ImageEncodingError(ValueError):
    """An image message the nodes cannot read (unsupported encoding or inconsistent size fields)."""


def image_to_rgb(height: int, width: int, encoding: str, step: int, data) -> np.ndarray:
    """HxWx3 uint8 RGB array from the fields of a sensor_msgs/Image (rgb8, bgr8 or mono8)."""
    if encoding not in CHANNELS:
        raise ImageEncodingError(
            f"unsupported image encoding {encoding!r}: supported are {', '.join(SUPPORTED_ENCODINGS)} "
            "(convert upstream, e.g. with image_proc, or publish rgb8)"
        )
    channels = CHANNELS[encoding]
    height, width, step = int(height), int(width), int(step)
    if height < 1 or width < 1:
        raise ImageEncodingError(f"image size {width}x{height} is empty")
    if step < width * channels:
        raise ImageEncodingError(f"image step {step} is smaller than width*channels = {width * channels}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size < step * height:
        raise ImageEncodingError(f"image data has {buffer.size} bytes, {encoding} {width}x{height} step {step} needs {step * height}")
    rows = buffer[: step * height].reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels)
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[..., ::-1])
    return np.repeat(pixels, 3, axis=2)


def rgb_to_image_data(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[int, bytes]:
    """(step, data bytes) of an HxWx3 uint8 RGB array in ``encoding`` (rgb8, bgr8 or mono8)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    if encoding == "rgb8":
        out = rgb
    elif encoding == "bgr8":
        out = rgb[..., ::-1]
    elif encoding == "mono8":
        # ITU-R BT.601 luma, as OpenCV's RGB2GRAY
        out = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
    else:
        raise ImageEncodingError(f"unsupported image encoding {encoding!r}: supported are {', '.join(SUPPORTED_ENCODINGS)}")
    return rgb.shape[1] * CHANNELS[encoding], np.ascontiguousarray(out).tobytes()
