"""Evaluation: how many bits does a codec spend, and what does the operator (and the detector) lose?

    frames (image folder | rosbag2) ─> ROI boxes (labels | detector) ─> codec settings (ours, baselines)
        ─> per-frame records (bytes, bpp, bitrate, PSNR / MS-SSIM whole / ROI / background, latency, task P/R)
        ─> summary per setting ─> RD curves, BD-rate vs an anchor ─> report.md / report.json / rd_*.png

Modules: ``metrics`` (PSNR, MS-SSIM, bpp), ``bdrate`` (Bjøntegaard, PCHIP), ``baselines`` (JPEG, WebP, x264,
x265, x264+ROI), ``ours`` (RoiCodec adapter), ``runner`` (evaluate, summarize), ``task`` (detections on decoded vs
original frames), ``report``, ``frames`` (image folders, label files), ``bags`` (rosbag2 read/write, make-bag),
The command line (``roi-codec eval | eval-bag | make-bag``) is ``roi_codec_ros.cli.evaluate``. No ROS imports.
"""
from .bdrate import BdError, bd_psnr, bd_rate
from .metrics import bitrate_bps, bits_per_pixel, boxes_to_mask, frame_quality, ms_ssim, psnr

__all__ = [
    "BdError",
    "bd_psnr",
    "bd_rate",
    "bitrate_bps",
    "bits_per_pixel",
    "boxes_to_mask",
    "frame_quality",
    "ms_ssim",
    "psnr",
]
