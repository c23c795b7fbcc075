"""Flow on the picture: a P-frame's reference picture warped towards the frame, for a prediction of its latents.

Block motion on y's grid (``motion.py``) moves latents by whole cells of 16 pixels.  Under forward driving the
picture moves by fractions of a cell and zooms, and the analysis transform is far from shift-equivariant, so
shifted latents predict poorly (docs/video.md has the measurements).  Warping the decoded reference picture by the
flow and running the analysis transform on it predicts the latents of the moved content itself: the flow lives
on pixels, the prediction on y's grid.

The encoder estimates dense optical flow from the frame to the reference picture (OpenCV's DIS), averages it on
a coarse grid (``grid`` pixels per cell) and rounds it to quarter pixels: the ``FlowField`` travels in the frame
(``bitstream.pack_flow``).  Both ends expand the same grid bilinearly to every pixel and sample the reference
picture there with OpenCV's fixed-point bilinear ``remap``: the same bytes in, the same warped picture out.
"""
from __future__ import annotations

import cv2
import numpy as np

from .bitstream import MAX_WARP_PIXELS, WARP_UNITS_PER_PIXEL, FlowField

DEFAULT_GRID = 64


def _flow_estimator():
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)


def estimate(frame: np.ndarray, reference: np.ndarray, grid: int = DEFAULT_GRID) -> np.ndarray:
    """Grid flow (rows, cols, 2) float32 in pixels, quantised as sent: for each ``grid`` x ``grid`` cell of
    ``frame`` (H x W x 3 uint8) where its content sits in ``reference`` (the decoder's picture of the previous frame)."""
    gray = [cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY) for a in (frame, reference)]
    dense = _flow_estimator().calc(gray[0], gray[1], None)
    # a cell's vector: the flow where there is texture to see it move (flat sky and road carry arbitrary flow)
    weight = cv2.Sobel(gray[0], cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(gray[0], cv2.CV_32F, 0, 1) ** 2 + 1.0
    h, w = gray[0].shape
    rows, cols = -(-h // grid), -(-w // grid)

    def cell_sums(a: np.ndarray) -> np.ndarray:
        a = cv2.copyMakeBorder(a, 0, rows * grid - h, 0, cols * grid - w, cv2.BORDER_REPLICATE)
        return a.reshape(rows, grid, cols, grid, -1).sum(axis=(1, 3))

    cells = cell_sums(dense * weight[..., None]) / cell_sums(weight[..., None])
    top = MAX_WARP_PIXELS * WARP_UNITS_PER_PIXEL
    return np.clip(np.round(cells * WARP_UNITS_PER_PIXEL), -top, top).astype(np.float32) / WARP_UNITS_PER_PIXEL


def to_field(cells: np.ndarray, grid: int, latents_crc: int) -> FlowField:
    """``estimate``'s grid as the frame's ``FlowField``."""
    units = np.round(cells * WARP_UNITS_PER_PIXEL).astype(np.int16).transpose(2, 0, 1).reshape(-1)  # dx..., dy...
    return FlowField(grid=grid, latents_crc=latents_crc, vectors=units.astype("<i2").tobytes())


def from_field(field: FlowField, height: int, width: int) -> np.ndarray:
    """The grid (rows, cols, 2) float32 in pixels of a checked ``FlowField``."""
    rows, cols = field.nodes_shape(height, width)
    units = np.frombuffer(field.vectors, dtype="<i2").astype(np.float32)
    return units.reshape(2, rows, cols).transpose(1, 2, 0) / WARP_UNITS_PER_PIXEL


def warp(reference: np.ndarray, cells: np.ndarray, grid: int) -> np.ndarray:
    """``reference`` (H x W x 3 uint8) sampled where the grid flow says each pixel's content comes from: the grid's
    nodes at the cells' centres, bilinear in between, the border repeated."""
    h, w = reference.shape[:2]
    rows, cols = cells.shape[:2]
    # a pixel's position in grid units, node (i, j) at the centre of cell (i, j)
    gy = np.clip((np.arange(h, dtype=np.float32) + 0.5) / grid - 0.5, 0, rows - 1)
    gx = np.clip((np.arange(w, dtype=np.float32) + 0.5) / grid - 0.5, 0, cols - 1)
    flow = cv2.remap(cells, *np.meshgrid(gx, gy), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    map_x = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    map_y = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    return cv2.remap(np.ascontiguousarray(reference), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


__all__ = ["DEFAULT_GRID", "estimate", "from_field", "to_field", "warp"]
