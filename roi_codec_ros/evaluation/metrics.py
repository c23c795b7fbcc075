"""Per-frame quality and rate metrics: PSNR and MS-SSIM over the whole frame, inside the ROI and outside it.

Region PSNR follows eq. 9 of Gorri Viudez, "ROI-Aware Neural Image Compression for Teleoperation" (TUM):
the MSE is taken over the region's pixels only (all three RGB channels), MAX = 255::

    PSNR_l = 10 log10(255^2 / MSE(x_l, x^_l)),   l in {whole, ROI, background}

Region MS-SSIM (our definition, documented in docs/evaluation.md): the standard 5-scale MS-SSIM of Wang et al.
(the same Gaussian window, constants, weights and 2x average-pool pyramid as ``pytorch_msssim.ms_ssim``, computed
with OpenCV filters, several times faster than torch's grouped convolutions on CPU), except
that at every scale the SSIM/contrast-structure *maps* are averaged with a weight per window equal to the
fraction of that window (Gaussian-weighted) lying in the region. With the all-ones mask this is exactly
``pytorch_msssim.ms_ssim`` (tested); a window straddling the ROI border counts partly to each side.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from roi_codec_ros.detector.roi_mask import rasterise_boxes

MAX_VALUE = 255.0
# PSNR of two identical regions is infinite; report this instead so means and JSON stay finite.
PSNR_CAP_DB = 100.0

# MS-SSIM constants of Wang et al. 2003, as used by pytorch-msssim.
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MSSSIM_WIN_SIZE = 11
MSSSIM_WIN_SIGMA = 1.5
MSSSIM_K = (0.01, 0.03)
# Four 2x down-samplings must leave a side longer than the window (pytorch-msssim's own condition).
MSSSIM_MIN_SIDE = (MSSSIM_WIN_SIZE - 1) * 2 ** (len(MSSSIM_WEIGHTS) - 1) + 1


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Return ``image`` if it is an HxWx3 uint8 array, else raise ValueError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be HxWx3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    return image


def _check_pair(original: np.ndarray, decoded: np.ndarray) -> None:
    check_image(original, "original")
    check_image(decoded, "decoded")
    if original.shape != decoded.shape:
        raise ValueError(f"decoded shape {decoded.shape} differs from original {original.shape}")


def _check_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from image size {shape}")
    return mask.astype(bool) if mask.dtype == bool else mask >= 0.5


def boxes_to_mask(boxes: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Hard ROI mask (HxW bool) of the union of ``boxes`` ((K,4) xyxy in pixels).

    The codec's own rasteriser (``detector.roi_mask.rasterise_boxes``: every pixel a box touches), so the region
    metrics measure exactly the pixels the codec was told are ROI.
    """
    height, width = shape
    if boxes is None:
        return np.zeros((height, width), dtype=bool)
    return rasterise_boxes(boxes, height, width) > 0


def mse(original: np.ndarray, decoded: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over all channels of the pixels in ``mask`` (all pixels if None); NaN if empty."""
    _check_pair(original, decoded)
    mask = _check_mask(mask, original.shape[:2])
    diff = original.astype(np.float64) - decoded.astype(np.float64)
    if mask is not None:
        if not mask.any():
            return float("nan")
        diff = diff[mask]
    return float(np.mean(diff * diff))


def psnr_from_mse(value: float, max_value: float = MAX_VALUE) -> float:
    """PSNR in dB for an MSE, capped at PSNR_CAP_DB (NaN stays NaN)."""
    if math.isnan(value):
        return float("nan")
    if value <= 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(max_value * max_value / value))


def psnr(original: np.ndarray, decoded: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (RGB, MAX=255) over the pixels in ``mask``, TUM eq. 9; NaN when the mask is empty."""
    return psnr_from_mse(mse(original, decoded, mask))


def psnr_regions(original: np.ndarray, decoded: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """PSNR of several regions (e.g. one per class) with the squared error computed once; NaN for an empty one."""
    _check_pair(original, decoded)
    if not masks:
        return {}
    diff = original.astype(np.float64) - decoded.astype(np.float64)
    squared = diff * diff
    out = {}
    for name, mask in masks.items():
        mask = _check_mask(mask, original.shape[:2])
        out[name] = psnr_from_mse(float(np.mean(squared[mask])) if mask.any() else float("nan"))
    return out


def _gaussian_window() -> np.ndarray:
    coords = np.arange(MSSSIM_WIN_SIZE, dtype=np.float64) - MSSSIM_WIN_SIZE // 2
    g = np.exp(-(coords**2) / (2 * MSSSIM_WIN_SIGMA**2))
    return (g / g.sum()).astype(np.float32)


def _blur_valid(planes: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter of (H, W, C) float32 planes without padding ('valid'), as pytorch-msssim does.

    OpenCV filters with a zero border and the border is cropped off, which leaves exactly the valid part.
    """
    r = MSSSIM_WIN_SIZE // 2
    planes = planes[..., None] if planes.ndim == 2 else planes
    out = [cv2.sepFilter2D(np.ascontiguousarray(planes[..., c]), cv2.CV_32F, win, win,
                           borderType=cv2.BORDER_CONSTANT)[r:-r, r:-r] for c in range(planes.shape[2])]
    return np.stack(out, axis=-1)


def _avg_pool2(planes: np.ndarray) -> np.ndarray:
    """2x2 average pooling of (H, W, C) with one zero of padding on each side of an odd axis, counted in the
    average (``F.avg_pool2d(kernel_size=2, padding=size % 2)``, the down-sampling of pytorch-msssim)."""
    pad = [(s % 2, s % 2) for s in planes.shape[:2]] + [(0, 0)]
    planes = np.pad(planes, pad)
    h, w = planes.shape[0] // 2 * 2, planes.shape[1] // 2 * 2
    p = planes[:h, :w]
    return (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) * np.float32(0.25)


def _ssim_maps(x: np.ndarray, y: np.ndarray, win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c1 = (MSSSIM_K[0] * MAX_VALUE) ** 2
    c2 = (MSSSIM_K[1] * MAX_VALUE) ** 2
    moments = _blur_valid(np.concatenate([x, y, x * x, y * y, x * y], axis=2), win)
    mu_x, mu_y, xx, yy, xy = np.split(moments, 5, axis=2)
    sigma_xx, sigma_yy, sigma_xy = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    cs_map = (2 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs_map
    return ssim_map, cs_map


def ms_ssim_regions(
    original: np.ndarray, decoded: np.ndarray, masks: dict[str, np.ndarray | None]
) -> dict[str, float]:
    """MS-SSIM for several regions at once (``None`` = whole frame); NaN for empty regions or small frames.

    Frames whose shorter side is below MSSSIM_MIN_SIDE (161 px) have no 5-scale MS-SSIM: all values are NaN.
    """
    _check_pair(original, decoded)
    height, width = original.shape[:2]
    nan = float("nan")
    if min(height, width) < MSSSIM_MIN_SIDE:
        return {name: nan for name in masks}
    win = _gaussian_window()
    x, y = original.astype(np.float32), decoded.astype(np.float32)
    regions = {}
    for name, mask in masks.items():
        mask = _check_mask(mask, (height, width))
        if mask is not None and mask.any():
            regions[name] = mask.astype(np.float32)
    names = list(regions)
    planes = np.stack([regions[n] for n in names], axis=-1) if names else None  # (H, W, R)

    levels = len(MSSSIM_WEIGHTS)
    factors = []  # per level: (1 + R, C) -- whole frame first, then the regions
    for level in range(levels):
        ssim_map, cs_map = _ssim_maps(x, y, win)
        chosen = (ssim_map if level == levels - 1 else cs_map).astype(np.float64)  # (h, w, C)
        rows = [chosen.mean(axis=(0, 1))[None]]  # whole frame: the plain mean, as pytorch-msssim
        if planes is not None:
            window_weight = _blur_valid(planes, win).astype(np.float64)  # fraction of each window in the region
            totals = window_weight.sum(axis=(0, 1))  # (R,)
            sums = np.einsum("hwr,hwc->rc", window_weight, chosen)
            with np.errstate(invalid="ignore", divide="ignore"):
                rows.append(np.where(totals[:, None] > 1e-9, sums / totals[:, None], np.nan))
        factors.append(np.maximum(np.concatenate(rows, axis=0), 0.0))  # relu, as pytorch-msssim
        if level < levels - 1:
            x, y = _avg_pool2(x), _avg_pool2(y)
            planes = _avg_pool2(planes) if planes is not None else None

    exponents = np.asarray(MSSSIM_WEIGHTS, dtype=np.float64)[:, None, None]
    values = np.prod(np.stack(factors, axis=0) ** exponents, axis=0).mean(axis=-1)  # (1 + R,)
    out = {name: nan for name in masks}
    for name, mask in masks.items():
        if mask is None:
            out[name] = float(values[0])
    for i, name in enumerate(names, start=1):
        out[name] = float(values[i])  # NaN when the region vanished at a coarse scale
    return out


def ms_ssim(original: np.ndarray, decoded: np.ndarray, mask: np.ndarray | None = None) -> float:
    """MS-SSIM (RGB, data range 255) over the whole frame or, with ``mask``, one region (see module doc)."""
    return ms_ssim_regions(original, decoded, {"region": mask})["region"]


def bits_per_pixel(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a payload of ``num_bytes`` for an HxW frame."""
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    return 8.0 * num_bytes / (height * width)


def bitrate_bps(num_bytes: float, fps: float) -> float:
    """Stream bitrate in bit/s when every frame costs ``num_bytes`` at ``fps`` frames per second."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return 8.0 * num_bytes * fps


@dataclass
class FrameQuality:
    """Quality of one decoded frame against its original, whole frame / ROI / background."""

    psnr: float
    psnr_roi: float
    psnr_bg: float
    msssim: float
    msssim_roi: float
    msssim_bg: float
    roi_fraction: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def frame_quality(
    original: np.ndarray, decoded: np.ndarray, roi_mask: np.ndarray | None, with_msssim: bool = True
) -> FrameQuality:
    """All quality metrics of one frame; ROI values are NaN without ROI, background NaN if all is ROI."""
    _check_pair(original, decoded)
    shape = original.shape[:2]
    roi = np.zeros(shape, bool) if roi_mask is None else _check_mask(roi_mask, shape)
    background = ~roi
    nan = float("nan")
    if with_msssim:
        ssim = ms_ssim_regions(original, decoded, {"whole": None, "roi": roi, "bg": background})
    else:
        ssim = {"whole": nan, "roi": nan, "bg": nan}
    return FrameQuality(
        psnr=psnr(original, decoded),
        psnr_roi=psnr(original, decoded, roi),
        psnr_bg=psnr(original, decoded, background),
        msssim=ssim["whole"],
        msssim_roi=ssim["roi"],
        msssim_bg=ssim["bg"],
        roi_fraction=float(roi.mean()),
    )
