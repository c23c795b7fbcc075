"""``roi-codec encode-stream``: code a video, image folder or rosbag image topic as one stream under the
closed-loop rate controller (the encoder node's ``FrameEncoder`` + ``RateController``, the same code path).

    roi-codec encode-stream highway.mp4 --target-kbps 600 --fps 10 --out outputs/stream --plot
    roi-codec encode-stream frames/ --target-schedule "0:2000,10:800" --detector yolov8n.pt --roi-weight 8
    roi-codec encode-stream bag_dir --topic /camera/image_raw --target-kbps 800   (times from the bag's stamps)
    roi-codec encode-stream clip.mp4 --engine x264 --target-kbps 800 [--rate-control controller]

Frame times: video and folder frames are ``i / fps`` seconds (videos are resampled to ``--fps``); bag frames
keep their stamps.  Output (``--out DIR``): ``frames.csv`` (one row per frame: time, target, bytes, rate, ROI
weight, decision reason, skip, keyframe, predicted bytes, encode ms), ``summary.json`` (mean kbps, every aligned
1-s window against its target, settling after each step: ``rate_control.meter.tracking_summary``; controller
counters) and, with ``--plot``, ``plot.png`` (achieved vs target).  Exit codes: 0 success, 1 input/model/output
error, 2 bad command line.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import replace
from pathlib import Path

from .common import CliError, add_model_args, add_roi_args, float_list, roi_config, set_threads, write_bytes, write_text

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
CSV_FIELDS = ("index", "name", "t", "target", "bytes", "rate", "roi_weight", "reason", "skip", "keyframe",
              "predicted_bytes", "budget_bytes", "roi_coverage", "encode_ms")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roi-codec encode-stream",
                                     description="Code a video / image folder / rosbag topic at a kbps target.")
    parser.add_argument("command", help=argparse.SUPPRESS)
    parser.add_argument("input", help="video file, image folder, or rosbag2 directory (with --topic)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-kbps", type=float, help="constant bitrate target, kbit/s")
    target.add_argument("--target-schedule", metavar="T:KBPS,...",
                        help='targets changing at given seconds, e.g. "0:2000,10:800"')
    parser.add_argument("--fps", type=float, default=10.0,
                        help="frame rate of the stream: videos are resampled to it, folder frames are 1/fps apart "
                             "(bags use their stamps) (default: %(default)s)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--topic", default=None, help="rosbag: image topic (default: the only image topic)")
    parser.add_argument("--engine", default="neural", help="coding engine: neural | x264 | x265 (default: %(default)s)")
    parser.add_argument("--rate-control", choices=("auto", "controller"), default="auto",
                        help="as the encoder's rate_control.mode: auto = x264/x265's own ABR + 1-s VBV, our "
                             "RateController for the neural engine; controller = ours for every engine (default: %(default)s)")
    parser.add_argument("--keyframe-interval", type=int, default=10,
                        help="keyframe every N frames for inter-frame engines (default: %(default)s)")
    parser.add_argument("--roi-weight", type=float, default=8.0, help="requested ROI weight (default: %(default)s)")
    parser.add_argument("--roi-gain", type=float, default=1.0,
                        help="explicit latent scaling in the ROI, 1..8 (neural engine; default: %(default)s = off)")
    parser.add_argument("--rate", type=float, default=0.5, help="rate used while a target is 0 (default: %(default)s)")
    parser.add_argument("--buffer-ms", type=float, default=500.0, help="rate_control.buffer_ms (default: %(default)s)")
    parser.add_argument("--max-frame-bytes", type=int, default=0, help="rate_control.max_frame_bytes (0 = none)")
    parser.add_argument("--detector", metavar="WEIGHTS", help="YOLO .pt: features for the codec and ROI boxes")
    parser.add_argument("--static-box-rel", type=float_list, action="append", default=[], metavar="X1,Y1,X2,Y2",
                        help="always-ROI box as fractions of width/height (repeatable)")
    add_roi_args(parser)
    add_model_args(parser)
    parser.add_argument("--out", default=None, help="folder for frames.csv, summary.json (and plot.png)")
    parser.add_argument("--plot", action="store_true", help="also write <out>/plot.png: achieved vs target")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def _schedule(args):
    from roi_codec_ros.rate_control import TargetSchedule

    try:
        return TargetSchedule.parse(args.target_schedule if args.target_schedule else str(args.target_kbps))
    except ValueError as exc:
        raise CliError(f"bad target: {exc}") from exc


def iter_input(args):
    """(name, time_s, rgb) for every frame of the input."""
    from roi_codec_ros.evaluation.bags import _video_frames, iter_bag_frames
    from roi_codec_ros.evaluation.frames import iter_folder_frames

    path = Path(args.input)
    if not path.exists():
        raise CliError(f"input not found: {path}")
    if path.is_dir() and (path / "metadata.yaml").is_file():
        from roi_codec_ros.evaluation.bags import image_topic_info

        topic = image_topic_info(path, args.topic).topic
        first = None
        for frame in iter_bag_frames(path, topic, max_frames=args.max_frames):
            first = frame.stamp_ns if first is None else first
            yield frame.name, (frame.stamp_ns - first) * 1e-9, frame.image
        return
    if path.is_dir():
        for i, frame in enumerate(iter_folder_frames(path, max_frames=args.max_frames)):
            yield frame.name, i / args.fps, frame.image
        return
    if path.suffix.lower() in VIDEO_SUFFIXES:
        frames, fps = _video_frames(path, args.fps)
        for i, rgb in enumerate(frames):
            if args.max_frames is not None and i >= args.max_frames:
                break
            yield f"{i:06d}", i / fps, rgb
        return
    raise CliError(f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}), image folder or rosbag2 directory")


def _engine(args):
    from roi_codec_ros.engine import create_engine

    try:
        return create_engine(args.engine, model_path=args.model or "default", device=args.device)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        raise CliError(f"cannot use engine {args.engine!r}: {exc}") from exc


def _detector(args, engine):
    if not args.detector:
        return None
    from .common import check_detector, load_detector

    detector = load_detector(args.detector, args.device)
    codec = getattr(engine, "codec", None)
    if codec is not None:
        check_detector(codec, detector, False, "roi-codec encode-stream")
    return detector


def run_stream(args, schedule, frames, engine, detector, log=print) -> tuple[list[dict], dict]:
    """Code ``frames`` ((name, t, rgb) ...) under ``schedule``; (per-frame records, controller state)."""
    from roi_codec_ros.nodes.encoder_core import EncoderSettings, FrameEncoder, RateControlSettings

    rc = RateControlSettings(target_kbps=schedule.at(0.0), buffer_ms=args.buffer_ms,
                             max_frame_bytes=args.max_frame_bytes, mode=args.rate_control)
    roi = roi_config(args, static_boxes_rel=[tuple(b) for b in args.static_box_rel])
    settings = EncoderSettings(rate=args.rate, roi_weight=args.roi_weight, roi=roi, roi_gain=args.roi_gain,
                               keyframe_interval=args.keyframe_interval, rate_control=rc)
    try:
        settings.check(engine, detector)
        encoder = FrameEncoder(engine, detector, keyframe_interval=args.keyframe_interval, fps=args.fps, rate_control=rc)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    native = encoder.native
    records = []
    for index, (name, t, rgb) in enumerate(frames):
        target = schedule.at(t)
        if target != settings.rate_control.target_kbps:
            settings = settings.replace(rate_control=replace(settings.rate_control, target_kbps=target))
        result = encoder.encode(rgb, settings, now_s=t)
        d = result.decision
        frame = result.frame
        records.append({
            "index": index, "name": name, "t": float(t), "target": float(target),
            "bytes": 0 if frame is None else len(frame.data),
            "rate": float(frame.rate if frame is not None else d.rate),
            "roi_weight": float(frame.roi_weight if frame is not None else d.roi_weight),
            "reason": "native" if native else d.reason, "skip": frame is None,
            "keyframe": bool(frame is not None and frame.keyframe),
            "predicted_bytes": float(d.predicted_bytes), "budget_bytes": float(d.budget_bytes),
            "roi_coverage": float(result.roi_coverage), "encode_ms": float(result.encode_ms),
        })
        if log is not None and index % 10 == 0:
            r = records[-1]
            log(f"frame {index:5d} t={t:7.2f}s target {target:8.1f} kbps  rate {r['rate']:.3f}  "
                f"{r['bytes']:7d} B  {r['reason']}  achieved {encoder.rate_controller.meter.kbps():8.1f} kbps")
    if not records:
        raise CliError(f"{args.input}: no frames")
    return records, encoder.rate_control_state


def _csv(records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in records:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def format_summary(summary: dict) -> str:
    lines = [
        f"mean {summary['mean_kbps']:.1f} kbps vs target {summary['mean_target_kbps']:.1f} kbps "
        f"({100 * summary['mean_error']:+.1f} %), {summary['frames']} frames, {summary['skipped']} skipped",
        f"1-s windows: {summary['windows']}, within +-15 %: {100 * summary['windows_within']:.0f} %, "
        f"max {100 * summary['window_max_error']:+.1f} %, min {100 * summary['window_min_error']:+.1f} %"
        if summary["windows"] else "1-s windows: none (shorter than 1 s)",
    ]
    for step in summary["steps"]:
        lines.append(f"step at {step['time_s']:g} s: {step['from_kbps']:g} -> {step['to_kbps']:g} kbps, "
                     f"settled after {step['settling_s']:.1f} s")
    lines.append("windows (start s: kbps / target): " + ", ".join(
        f"{s:g}: {k:.0f}/{t:.0f}" for s, k, t in zip(summary["window_start_s"], summary["window_kbps"],
                                                      summary["window_target_kbps"])))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.fps <= 0:
        build_parser().error("--fps must be > 0")
    if args.max_frames is not None and args.max_frames < 1:
        build_parser().error("--max-frames must be >= 1")
    from roi_codec_ros.rate_control.report import plot_records, records_summary

    try:
        schedule = _schedule(args)
    except CliError as exc:
        build_parser().error(str(exc))
    try:
        set_threads(args.threads)
        engine = _engine(args)
        detector = _detector(args, engine)
        records, state = run_stream(args, schedule, iter_input(args), engine, detector,
                                    log=None if args.quiet else print)
        summary = records_summary(records, schedule)
        summary.update(schedule=str(schedule), engine=engine.name,
                       rate_control="native" if state.get("last_reason") == "native" else "roi_codec_ros.rate_control",
                       controller={k: v for k, v in state.items() if k != "models"})
        print(format_summary(summary))
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            write_text(out / "frames.csv", _csv(records))
            write_bytes(out / "summary.json", json.dumps(summary, indent=1).encode())
            if args.plot:
                plot_records({f"{engine.name} {schedule}": records}, out / "plot.png",
                             f"{Path(args.input).name}: achieved (line: trailing 1 s, dots: 1-s windows) vs target "
                             "(dashed, +-15 %)")
            print(f"wrote {out / 'frames.csv'}, {out / 'summary.json'}" + (f", {out / 'plot.png'}" if args.plot else ""))
    except CliError as exc:
        print(f"roi-codec encode-stream: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
