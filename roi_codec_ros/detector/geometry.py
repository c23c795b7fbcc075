"""Letterbox geometry: how a camera frame maps onto the detector's input and its feature maps.

The detector sees the frame resized (aspect ratio kept) and padded to a stride multiple; the codec sees the
frame at its own size. Everything here uses *continuous pixel-edge coordinates*: pixel ``(row i, col j)``
covers ``[j, j+1) x [i, i+1)``, so a frame of width W spans ``x in [0, W]`` (the ultralytics box convention).

::

    frame (H x W)                      detector input (Hi x Wi), e.g. 1242x375 -> 640x224 (rect) or 640x640
    +-----------------+                +-----------------------+
    |                 |   x' = left + x * sx                   |  pad_top rows of grey (114)
    |                 |   y' = top  + y * sy                   +-----------------------+
    |                 |  ----------------------------------->  | resized frame          |  resized_hw
    +-----------------+   sx = resized_w / W, sy = resized_h / H +-----------------------+
                                                               |  pad rows              |
                                                               +-----------------------+
    feature map of stride s: cell (i, j) covers input pixels [s*j, s*(j+1)) x [s*i, s*(i+1)),
    so the frame occupies the window [left/s, (left+resized_w)/s] x [top/s, (top+resized_h)/s] in cells.

``sx`` and ``sy`` can differ slightly because ultralytics rounds each resized side to whole pixels; using both
(rather than one ratio) makes the mapping exact. ``crop_features_to_frame`` resamples exactly that window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def _as_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate an HxWx3 uint8 RGB frame; raise a clear TypeError/ValueError otherwise."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be an HxWx3 uint8 RGB numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must have shape HxWx3 (RGB), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0..255), got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return image


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where the frame sits inside the detector input (see module docstring)."""

    frame_hw: tuple[int, int]  # (H, W) of the camera frame
    input_hw: tuple[int, int]  # (Hi, Wi) of the letterboxed detector input
    resized_hw: tuple[int, int]  # (h, w) of the resized frame inside the input
    pad_top: int
    pad_left: int

    @property
    def scale_x(self) -> float:
        return self.resized_hw[1] / self.frame_hw[1]

    @property
    def scale_y(self) -> float:
        return self.resized_hw[0] / self.frame_hw[0]

    @property
    def ratio_pad(self) -> tuple[tuple[float, float], tuple[int, int]]:
        """The ``ratio_pad`` argument of ``ultralytics.utils.ops.scale_boxes``: ((gain_y, gain_x), (pad_x, pad_y))."""
        return (self.scale_y, self.scale_x), (self.pad_left, self.pad_top)

    def frame_to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Map (K,4) xyxy boxes from frame pixels to detector-input pixels."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = b[:, [0, 2]] * self.scale_x + self.pad_left
        b[:, [1, 3]] = b[:, [1, 3]] * self.scale_y + self.pad_top
        return b

    def input_to_frame(self, boxes: np.ndarray | torch.Tensor, clip: bool = True):
        """Map (K,4) xyxy boxes from detector-input pixels back to frame pixels (ultralytics ``scale_boxes``)."""
        from ultralytics.utils.ops import scale_boxes

        b = boxes.clone() if isinstance(boxes, torch.Tensor) else np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        if clip:
            return scale_boxes(self.input_hw, b, self.frame_hw, ratio_pad=self.ratio_pad)
        # Same arithmetic without the clip to the frame (scale_boxes always clips xyxy boxes).
        b[..., [0, 2]] = (b[..., [0, 2]] - self.pad_left) / self.scale_x
        b[..., [1, 3]] = (b[..., [1, 3]] - self.pad_top) / self.scale_y
        return b

    def feature_window(self, stride: int) -> tuple[float, float, float, float]:
        """The frame's extent (x0, y0, x1, y1) in cells of a stride-``stride`` feature map (fractional)."""
        s = float(stride)
        h, w = self.resized_hw
        return self.pad_left / s, self.pad_top / s, (self.pad_left + w) / s, (self.pad_top + h) / s

    def feature_size(self, stride: int) -> tuple[int, int]:
        """(h, w) of a frame-aligned feature map at ``stride``: the window size rounded half up, at least 1 cell."""
        h, w = self.resized_hw
        return max(1, math.floor(h / stride + 0.5)), max(1, math.floor(w / stride + 0.5))


def letterbox(
    image: np.ndarray, imgsz: int | tuple[int, int] = 640, stride: int = 32, rect: bool = True
) -> tuple[np.ndarray, LetterboxGeometry]:
    """Resize and pad ``image`` like ultralytics' predictor does and return the geometry used.

    ``rect=True`` pads only up to the next multiple of ``stride`` (ultralytics' "minimum rectangle", what
    ``predict()`` does for PyTorch models: e.g. 1920x1080 -> 640x384); ``rect=False`` pads to the full
    ``imgsz`` square. Uses ``ultralytics.data.augment.LetterBox`` itself so the pixels match ``predict()``.
    """
    from ultralytics.data.augment import LetterBox

    check_image(image)
    box = LetterBox(new_shape=_as_hw(imgsz), auto=rect, stride=int(stride), center=True)
    params = box.get_params({"img": image})
    out = box.apply_image({"img": image}, params)["img"]
    new_w, new_h = params["new_unpad"]
    geometry = LetterboxGeometry(
        frame_hw=(int(image.shape[0]), int(image.shape[1])),
        input_hw=(int(out.shape[0]), int(out.shape[1])),
        resized_hw=(int(new_h), int(new_w)),
        pad_top=int(params["top"]),
        pad_left=int(params["left"]),
    )
    return out, geometry


def crop_features_to_frame(features: torch.Tensor, geometry: LetterboxGeometry, stride: int) -> torch.Tensor:
    """Cut the letterbox padding out of an (N,C,h,w) feature map so it covers exactly the frame.

    The window (``geometry.feature_window``) is generally fractional (e.g. a 15-pixel top pad is 1.875 cells at
    stride 8), so it is resampled with ``torchvision.ops.roi_align`` (``aligned=True``, one bilinear sample at
    the centre of each output cell) onto ``geometry.feature_size(stride)`` cells. When the window falls on
    whole cells and its size is unchanged this returns the cells themselves, bit-exact (no blur); otherwise
    each output cell is bilinearly interpolated at its true position, so frame-relative position ``u`` in
    [0, 1] of the output is frame-relative position ``u`` of the input features.
    """
    from torchvision.ops import roi_align

    n = features.shape[0]
    x0, y0, x1, y1 = geometry.feature_window(stride)
    out_hw = geometry.feature_size(stride)
    rois = torch.tensor([[i, x0, y0, x1, y1] for i in range(n)], dtype=features.dtype, device=features.device)
    return roi_align(features, rois, output_size=out_hw, spatial_scale=1.0, sampling_ratio=1, aligned=True)
