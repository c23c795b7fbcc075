"""``roi-codec encode-stream``: code a video, image folder or rosbag image topic as one stream (the encoder node's
``FrameEncoder``: detector, ROI rule, rate controller, the engine's stream encoder), decode it as a receiver would
(the decoder node's ``StreamReceiver`` around the engine's stream decoder) and report every frame.

    roi-codec encode-stream clip.avi --fps 10 --keyframe-interval 10 --detector yolov8n.pt --out report.json
    roi-codec encode-stream frames/ --rate 0.5 --roi-weight 8 --boxes-json boxes.json --drop-every 7 --out r.json
    roi-codec encode-stream clip.avi --intra --out intra.json                   (every frame intra, for comparison)
    roi-codec encode-stream highway.mp4 --target-kbps 600 --fps 10 --out outputs/stream --plot
    roi-codec encode-stream frames/ --target-schedule "0:2000,10:800" --detector yolov8n.pt --roi-weight 8
    roi-codec encode-stream bag_dir --topic /camera/image_raw --target-kbps 800   (times from the bag's stamps)
    roi-codec encode-stream clip.mp4 --engine x264 --target-kbps 800 [--rate-control controller]

Rate: without ``--target-kbps`` / ``--target-schedule`` every frame is coded at ``--rate`` and ``--roi-weight``
(no rate control); with a target the closed-loop rate controller picks them per frame (``rate_control``).
Keyframes: the first frame and every ``--keyframe-interval``-th (``--intra``: every frame, keyframe interval 1).
ROI: the detector's boxes (``--detector``), ``--static-box-rel`` boxes and, per frame, ``--boxes-json FILE``
(``{"<frame file name or index>": [[x1, y1, x2, y2], ...]}`` in pixels: a key is a folder frame's file name,
e.g. ``"0003.png"``, or the frame's 0-based index in the stream, e.g. ``"3"``).  Frames: folder images in name
order and video frames resampled to ``--fps`` are ``i / fps`` seconds apart; bag frames keep their stamps.

Decoding (``stream_report``): every message is decoded by a loss-free decoder: PSNR whole / ROI / background
(``evaluation.metrics``, the ROI = the hard union of the frame's ROI boxes, as the evaluation measures it) and
decode time.  ``--drop-every N`` (N >= 2) also simulates loss: the N-th, 2N-th, ... message (1-based) never reaches
a second, lossy decoder; a P-frame whose reference it lost is not decoded (``MissingReferenceError``) and never
output, and each frame it outputs is compared with the loss-free decode (delta PSNR, identical pixels); the summary
has the largest |delta PSNR| and the frames from each drop to the next output frame (recovery).

Output (``--out``): a path ending in ``.json`` is the report file: ``{"input", "engine", "settings", "summary",
"rate_control" (with a target), "frames": [per frame: index, name, t, bytes, bpp, keyframe, skip, rate, roi_weight,
boxes, roi_fraction, psnr, psnr_roi, psnr_bg, encode_ms, decode_ms, dropped, outcome (decoded | dropped |
no_reference | corrupt | skipped), output, delta_psnr, identical, error, ...]}`` (NaN / inf as null).  Any other
path is a folder for ``report.json`` (the same), ``frames.csv`` (one row per frame: time, target, bytes, rate, ROI
weight, decision reason, skip, keyframe, predicted bytes, encode ms, PSNRs, decode ms, outcome) and, with a target,
``summary.json`` (mean kbps, every aligned 1-s window against its target, settling after each step:
``rate_control.meter.tracking_summary``; controller counters) and with ``--plot`` ``plot.png`` (achieved vs
target).  Exit codes: 0 success, 1 input/model/output error (missing file, bad --boxes-json), 2 bad command line.
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
from .stream_report import FrameBoxes, StreamCheck, format_stream_summary, jsonable, read_boxes_json, stream_summary

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
CSV_FIELDS = ("index", "name", "t", "target", "bytes", "rate", "roi_weight", "reason", "skip", "keyframe",
              "predicted_bytes", "budget_bytes", "roi_coverage", "encode_ms", "psnr", "psnr_roi", "psnr_bg",
              "decode_ms", "dropped", "outcome")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roi-codec encode-stream",
        description="Code a video / image folder (frames in name order) / rosbag topic as one stream at a fixed rate "
                    "or a kbps target, decode it (optionally with simulated message loss) and report every frame: "
                    "bytes, keyframe, rate, ROI weight, PSNR whole/ROI/background, encode and decode ms.",
        epilog="--out REPORT.json writes the JSON report; any other --out is a folder for report.json, frames.csv "
               "and (with a target) summary.json [plot.png]. Module doc: roi_codec_ros/cli/stream.py. "
               "Exit codes: 0 success, 1 input/model/output error, 2 bad command line.")
    parser.add_argument("command", help=argparse.SUPPRESS)
    parser.add_argument("input", help="video file, image folder, or rosbag2 directory (with --topic)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target-kbps", type=float,
                        help="constant bitrate target, kbit/s, under the rate controller (default: none: every frame "
                             "at --rate / --roi-weight)")
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
    keyframes = parser.add_mutually_exclusive_group()
    keyframes.add_argument("--keyframe-interval", type=int, default=10,
                           help="keyframe every N frames, P-frames between (0 = the first only; default: %(default)s)")
    keyframes.add_argument("--intra", action="store_true",
                           help="every frame intra (keyframe interval 1): the intra-only stream, for comparison")
    parser.add_argument("--roi-weight", type=float, default=8.0, help="requested ROI weight (default: %(default)s)")
    parser.add_argument("--keyframe-roi-weight", type=float, default=0.0,
                        help="ROI weight of the keyframes: 1 = uniform \"HQ I-frames\" (Fathima et al. 5.6), "
                             "0 = --roi-weight (default: %(default)s)")
    parser.add_argument("--roi-gain", type=float, default=1.0,
                        help="explicit latent scaling in the ROI, 1..8 (neural engine; default: %(default)s = off)")
    parser.add_argument("--flow-prediction", action="store_true",
                        help="neural engine: P-frames may also predict from the warped reference picture (slower; "
                             "docs/video.md)")
    parser.add_argument("--rate", type=float, default=0.5,
                        help="rate of every frame without a target (and while a target is 0) (default: %(default)s)")
    parser.add_argument("--buffer-ms", type=float, default=500.0, help="rate_control.buffer_ms (default: %(default)s)")
    parser.add_argument("--max-frame-bytes", type=int, default=0, help="rate_control.max_frame_bytes (0 = none)")
    parser.add_argument("--detector", metavar="WEIGHTS", help="YOLO .pt: features for the codec and ROI boxes")
    parser.add_argument("--static-box-rel", type=float_list, action="append", default=[], metavar="X1,Y1,X2,Y2",
                        help="always-ROI box as fractions of width/height (repeatable)")
    parser.add_argument("--boxes-json", metavar="FILE",
                        help='per-frame ROI boxes in pixels, {"<frame file name or index>": [[x1,y1,x2,y2], ...]}: '
                             "the ROI of that frame instead of (no --detector) or besides the detector's")
    parser.add_argument("--drop-every", type=int, default=0, metavar="N",
                        help="simulated loss: the N-th, 2N-th, ... message never reaches a second (lossy) decoder; "
                             "its output is compared with the loss-free decode (N >= 2; default: no loss)")
    add_roi_args(parser)
    add_model_args(parser)
    parser.add_argument("--out", default=None,
                        help="REPORT.json: the JSON report; else a folder for report.json, frames.csv and, with a "
                             "target, summary.json (and plot.png)")
    parser.add_argument("--plot", action="store_true",
                        help="with a target and an --out folder: also write <out>/plot.png, achieved vs target")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def _schedule(args):
    """The target schedule, or None without a target (every frame at --rate / --roi-weight)."""
    from roi_codec_ros.rate_control import TargetSchedule

    if args.target_schedule is None and args.target_kbps is None:
        return None
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


def run_stream(args, schedule, frames, engine, detector, log=print, frame_boxes=None,
               on_frame=None) -> tuple[list[dict], dict]:
    """Code ``frames`` ((name, t, rgb) ...) under ``schedule`` (None: no target, every frame at ``args.rate``);
    (per-frame records, controller state).  ``frame_boxes(index, name)``: pixel boxes that are ROI in that frame
    besides the detector's (static boxes of that frame's ROI rule); ``on_frame(record, rgb, EncodeResult)`` after
    each frame (e.g. ``StreamCheck``: decode and measure)."""
    from roi_codec_ros.nodes.encoder_core import EncoderSettings, FrameEncoder, RateControlSettings

    rc = RateControlSettings(target_kbps=schedule.at(0.0) if schedule else 0.0, buffer_ms=args.buffer_ms,
                             max_frame_bytes=args.max_frame_bytes, mode=args.rate_control)
    roi = roi_config(args, static_boxes_rel=[tuple(b) for b in args.static_box_rel])
    settings = EncoderSettings(rate=args.rate, roi_weight=args.roi_weight, roi=roi, roi_gain=args.roi_gain,
                               flow_prediction=args.flow_prediction, keyframe_interval=args.keyframe_interval,
                               keyframe_roi_weight=args.keyframe_roi_weight, rate_control=rc)
    try:
        settings.check(engine, detector)
        encoder = FrameEncoder(engine, detector, keyframe_interval=args.keyframe_interval, fps=args.fps, rate_control=rc)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    native = encoder.native
    records = []
    for index, (name, t, rgb) in enumerate(frames):
        target = schedule.at(t) if schedule else 0.0
        if target != settings.rate_control.target_kbps:
            settings = settings.replace(rate_control=replace(settings.rate_control, target_kbps=target))
        frame_settings = settings
        if frame_boxes is not None:
            frame_settings = settings.replace(roi=replace(roi, static_boxes=tuple(frame_boxes(index, name))))
        result = encoder.encode(rgb, frame_settings, now_s=t)
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
            "detector_ms": float(result.detector_ms),
        })
        if on_frame is not None:
            on_frame(records[-1], rgb, result)
        if log is not None and index % 10 == 0:
            r = records[-1]
            quality = f"  PSNR {r['psnr']:.2f} dB" if r.get("psnr") is not None else ""
            target_text, achieved = "", ""
            if schedule:
                target_text = f"target {target:8.1f} kbps  "
                achieved = f"  {r['reason']}  achieved {encoder.rate_controller.meter.kbps():8.1f} kbps"
            log(f"frame {index:5d} t={t:7.2f}s {target_text}rate {r['rate']:.3f}  {r['bytes']:7d} B "
                f"{'I' if r['keyframe'] else 'P'}{quality}{achieved}")
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


def _report(args, engine, records: list[dict], summary: dict, rate_control: dict | None) -> dict:
    settings = {"fps": args.fps, "keyframe_interval": args.keyframe_interval, "intra": args.keyframe_interval == 1,
                "rate": args.rate if rate_control is None else None, "roi_weight": args.roi_weight,
                "keyframe_roi_weight": args.keyframe_roi_weight or None, "roi_gain": args.roi_gain, "flow_prediction": args.flow_prediction, "target": None if rate_control is None else rate_control["schedule"],
                "drop_every": args.drop_every or None, "detector": args.detector, "boxes_json": args.boxes_json,
                "max_frames": args.max_frames}
    return jsonable({"input": str(args.input), "engine": engine.describe(), "settings": settings, "summary": summary,
                     "rate_control": rate_control, "frames": records})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fps <= 0:
        parser.error("--fps must be > 0")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be >= 1")
    if args.drop_every and args.drop_every < 2:
        parser.error(f"--drop-every must be >= 2 (the N-th message of every N is dropped), got {args.drop_every}")
    if args.intra:
        args.keyframe_interval = 1
    from roi_codec_ros.rate_control.report import plot_records, records_summary

    try:
        schedule = _schedule(args)
    except CliError as exc:
        parser.error(str(exc))
    if args.plot and schedule is None:
        parser.error("--plot draws achieved vs target: it needs --target-kbps or --target-schedule")
    out = Path(args.out) if args.out else None
    report_file = out if out is not None and out.suffix.lower() == ".json" else None
    try:
        set_threads(args.threads)
        frame_boxes = FrameBoxes(read_boxes_json(args.boxes_json)) if args.boxes_json else None
        engine = _engine(args)
        detector = _detector(args, engine)
        check = StreamCheck(engine, args.drop_every)
        records, state = run_stream(args, schedule, iter_input(args), engine, detector,
                                    log=None if args.quiet else print, frame_boxes=frame_boxes, on_frame=check)
        if frame_boxes is not None and frame_boxes.unused():
            print(f"roi-codec encode-stream: warning: {args.boxes_json}: no frame for keys "
                  f"{frame_boxes.unused()[:8]}", file=sys.stderr)
        summary = stream_summary(records, args.keyframe_interval, args.fps, args.drop_every)
        rate_control = None
        if schedule is not None:
            rate_control = records_summary(records, schedule)
            rate_control.update(schedule=str(schedule), engine=engine.name,
                                rate_control="native" if state.get("last_reason") == "native"
                                else "roi_codec_ros.rate_control",
                                controller={k: v for k, v in state.items() if k != "models"})
            print(format_summary(rate_control))
        print(format_stream_summary(summary))
        report = json.dumps(_report(args, engine, records, summary, rate_control), indent=1, allow_nan=False).encode()
        if report_file is not None:
            report_file.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(report_file, report)
            print(f"wrote {report_file}")
        elif out is not None:
            out.mkdir(parents=True, exist_ok=True)
            written = [out / "report.json", out / "frames.csv"]
            write_bytes(written[0], report)
            write_text(written[1], _csv(records))
            if rate_control is not None:
                written.append(out / "summary.json")
                write_bytes(written[-1], json.dumps(rate_control, indent=1).encode())
            if args.plot:
                written.append(out / "plot.png")
                plot_records({f"{engine.name} {schedule}": records}, written[-1],
                             f"{Path(args.input).name}: achieved (line: trailing 1 s, dots: 1-s windows) vs target "
                             "(dashed, +-15 %)")
            print("wrote " + ", ".join(str(p) for p in written))
    except CliError as exc:
        print(f"roi-codec encode-stream: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an --out folder or report folder that cannot be made
        print(f"roi-codec encode-stream: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
