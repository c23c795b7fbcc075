"""``roi-codec``: one command, sub-commands dispatched to the module that implements each.

The command line lives here, above the packages it drives (codec, detector, training, evaluation, tools): they
never import this package, so the codec core has no upward import. Each module named in ``COMMANDS`` has
``main(argv) -> int`` with ``argv[0]`` the sub-command; it is imported only when its command runs.
"""
from __future__ import annotations

import importlib
import sys

# sub-command -> (module with ``main(argv) -> int``, one-line help)
COMMANDS = {
    "encode": ("roi_codec_ros.cli.codec", "encode an image file into a .rcb bitstream"),
    "decode": ("roi_codec_ros.cli.codec", "decode a .rcb bitstream into an image file"),
    "info": ("roi_codec_ros.cli.codec", "print the header of a .rcb bitstream"),
    "demo": ("roi_codec_ros.cli.codec", "bundled sample images at roi weight 1 vs a high weight: bytes, ROI/background PSNR, overlay PNGs"),
    "encode-stream": ("roi_codec_ros.cli.stream", "code a video / image folder / rosbag topic as one stream (fixed rate or a kbps target), decode it (optionally with simulated loss): JSON report, per-frame CSV, 1-s windows, plot"),
    "engines": ("roi_codec_ros.cli.codec", "the coding engines (neural, x264, x265, hardware) and whether each runs here"),
    "bag-video": ("roi_codec_ros.tools.bag_video", "a recorded h264/hevc EncodedFrame topic -> .h264/.hevc (ffplay, ffmpeg) and Foxglove video"),
    "ros-demo": ("roi_codec_ros.tools.pipeline_monitor", "run source->encoder->decoder nodes on the bundled images; print bytes/bpp/PSNR/latency"),
    "ros-monitor": ("roi_codec_ros.tools.pipeline_monitor", "watch a running pipeline's statistics"),
    "detect": ("roi_codec_ros.cli.detect", "run the detector adapter on images, write box/ROI overlays"),
    "train": ("roi_codec_ros.cli.train", "train a codec from a YAML config"),
    "train-inter": ("roi_codec_ros.cli.train_inter", "train a model file's P-frame entropy model on video (transforms frozen)"),
    "quantize-side": ("roi_codec_ros.cli.quantize_side", "give a model file's entropy side an integer network (exact in float32, ~3x faster than float64)"),
    "eval": ("roi_codec_ros.cli.evaluate", "evaluate codecs and baselines on an image folder"),
    "eval-bag": ("roi_codec_ros.cli.evaluate", "evaluate on a rosbag2 image topic"),
    "make-bag": ("roi_codec_ros.cli.evaluate", "convert a video or image folder to a rosbag2"),
    "export-onnx": ("roi_codec_ros.deploy.onnx_export", "write the analysis/synthesis transforms as ONNX graphs"),
}


def _usage() -> str:
    lines = ["usage: roi-codec <command> [options]", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command = argv[0]
    if command not in COMMANDS:
        print(f"roi-codec: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(argv) or 0)
