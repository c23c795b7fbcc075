"""``roi-codec eval | eval-bag | make-bag``: evaluate codecs on an image folder or a rosbag2, make test bags.

Codec specs (``--codec``, repeatable; default ``baselines``):

    baselines                  jpeg, webp, x264, x264-444, x265, x265-444, x264-roi with their default sweeps
    jpeg[:q=10,30,50]          OpenCV JPEG qualities          webp[:q=...]   Pillow WebP qualities
    x264[:crf=18,26,34]        x264 intra 4:2:0 CRF sweep     x264-444, x265, x265-444 likewise
    x264-roi[:crf=..][:q=-0.2][:bg=0]   x264 + addroi (ROI qoffset q, optional background qoffset bg)
    ours[:MODEL][:gain=G]      our RoiCodec: MODEL = model file, "default" (shipped model) or "random"
                               (untrained test model); swept over --rates x --roi-weights; gain = explicit
                               latent scaling in the ROI (roi_gain, 1..8; default 1 = off)
    engine:NAME[:k=10][:preset=veryfast][:chroma=box|fit][:threads=1][:flow=0|1][:kw=1]
                               a coding engine of the nodes (roi_codec_ros.engine: x264, x265, neural, detected
                               hardware) as the encoder node runs it: one stream per setting, a keyframe every k
                               frames (0 = only the first), swept over --rates x --roi-weights (x264/x265:
                               CRF = 45 - 30*rate, ROI QP offset -3*log2(roi_weight)); neural uses --model-style
                               option model=PATH, and flow=1 lets its P-frames also predict from the warped
                               reference picture (flow_prediction, docs/video.md); kw = the ROI weight
                               of the keyframes (keyframe_roi_weight; kw=1: uniform "HQ I-frames")
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from pathlib import Path

from roi_codec_ros.evaluation.baselines import baseline_sweep
from roi_codec_ros.evaluation.ours import (
    DEFAULT_KEYFRAME_INTERVAL,
    DEFAULT_RATES,
    DEFAULT_ROI_WEIGHTS,
    OursCodec,
    engine_grid,
    load_roi_codec,
    ours_grid,
)
from roi_codec_ros.evaluation.report import families, write_report
from roi_codec_ros.evaluation.runner import RoiSource, evaluate, records_as_dicts, summarize

from .common import add_class_weights_arg, float_list

BASELINES = ("jpeg", "webp", "x264", "x264-444", "x265", "x265-444", "x264-roi")
PREFERRED_ANCHOR = "JPEG"


def build_codecs(specs: list[str], rates, roi_weights, device: str = "cpu") -> list:
    """Codec settings for the ``--codec`` specs (see module doc)."""
    codecs, loaded, seen_ours = [], {}, set()
    ours_specs = [s for s in specs if s.split(":", 1)[0] == "ours"]
    for spec in specs:
        name, _, rest = spec.partition(":")
        name = name.strip().lower()
        if name == "baselines":
            for base in BASELINES:
                codecs += baseline_sweep(base)
            continue
        if name == "ours":
            model, gain = _ours_options(spec, rest)
            if (model, gain) in seen_ours:
                raise ValueError(f"--codec {spec}: model {model!r} at gain {gain:g} given twice")
            seen_ours.add((model, gain))
            codec = _cached_codec(loaded, model, device)
            models = {_ours_options(s, s.partition(":")[2])[0] for s in ours_specs}
            label = "ours" if len(models) == 1 else f"ours[{Path(model).stem}]"
            if gain != 1.0:
                label += f" G={gain:g}"
            codecs += ours_grid(codec, rates, roi_weights, name=label, roi_gain=gain)
            continue
        if name == "engine":
            codecs += _engine_codecs(spec, rest, rates, roi_weights, device)
            continue
        values, kwargs = None, {}
        for part in filter(None, rest.split(":")):
            key, eq, value = part.partition("=")
            if not eq:  # bare list = the sweep values
                key, value = ("q" if name in ("jpeg", "webp") else "crf"), part
            key = key.strip().lower()
            if key in ("q", "quality", "crf") and not (name.startswith("x26") and key == "q"):
                try:
                    values = [int(v) if name in ("jpeg", "webp") else v for v in float_list(value)]
                except argparse.ArgumentTypeError as exc:
                    raise ValueError(f"codec spec {spec!r}: {exc}") from exc
            elif key in ("q", "roi_qoffset"):
                kwargs["roi_qoffset"] = float(value)
            elif key in ("bg", "bg_qoffset"):
                kwargs["bg_qoffset"] = float(value)
            elif key == "preset":
                kwargs["preset"] = value
            else:
                raise ValueError(f"codec spec {spec!r}: unknown option {key!r}")
        codecs += baseline_sweep(name, values, **kwargs)
    labels = [c.label for c in codecs]
    duplicates = sorted({l for l in labels if labels.count(l) > 1})
    if duplicates:
        raise ValueError(f"codec settings given twice: {duplicates}")
    return codecs


def _ours_options(spec: str, rest: str) -> tuple[str, float]:
    """``ours[:MODEL][:gain=G]`` -> (model, latent gain).  Only a trailing ``gain=`` option is split off, so a model
    path may hold ':' or '='."""
    model, gain = rest, 1.0
    head, sep, option = rest.rpartition(":")
    candidate = option if sep else rest
    if candidate.strip().lower().startswith("gain="):
        model = head if sep else ""
        try:
            gain = float(candidate.split("=", 1)[1])
        except ValueError:
            raise ValueError(f"--codec {spec}: gain must be a number, got {candidate!r}") from None
    return model or "default", gain


def _cached_codec(loaded: dict, model: str, device: str):
    """One RoiCodec per model file for all its specs (settings share the codec object)."""
    if model not in loaded:
        loaded[model] = load_roi_codec(model, device=device)
    return loaded[model]


def _engine_codecs(spec: str, rest: str, rates, roi_weights, device: str) -> list:
    """``engine:NAME[:k=N][:preset=P][:chroma=box|fit][:threads=N][:model=PATH][:flow=0|1][:kw=A]`` (module doc)."""
    from dataclasses import replace

    from roi_codec_ros.engine import ClassicalSettings, create_engine
    from roi_codec_ros.engine.classical import REALTIME_COLOUR

    parts = [part for part in rest.split(":") if part]
    if not parts:
        raise ValueError(f"codec spec {spec!r}: name the engine, e.g. engine:x264")
    engine_name, *options = parts
    keyint, settings, model, label, flow, keyframe_alpha = DEFAULT_KEYFRAME_INTERVAL, {}, "default", [engine_name], None, None
    for option in options:
        key, eq, value = option.partition("=")
        key = key.strip().lower()
        if not eq:
            raise ValueError(f"codec spec {spec!r}: option {option!r} needs key=value")
        if key == "k":
            keyint = int(value)
        elif key == "preset":
            settings["preset"] = value
        elif key == "threads":
            settings["threads"] = int(value)
        elif key == "chroma":
            settings["colour"] = replace(REALTIME_COLOUR, chroma_filter=value)
        elif key == "model":
            model = value
        elif key == "flow":
            if value not in ("0", "1"):
                raise ValueError(f"codec spec {spec!r}: flow must be 0 or 1, got {value!r}")
            flow = value == "1"
        elif key == "kw":
            keyframe_alpha = float(value)
        else:
            raise ValueError(f"codec spec {spec!r}: unknown option {key!r} (k, preset, chroma, threads, model, flow, kw)")
        if key not in ("model", "k"):
            label.append(option)
    classical = replace(ClassicalSettings(), **settings) if settings else None
    engine = create_engine(engine_name, model_path=model, device=device, classical=classical)
    if flow is not None:
        if not hasattr(engine, "flow_prediction"):
            raise ValueError(f"codec spec {spec!r}: flow is an option of the neural engine")
        engine.flow_prediction = flow
    if keyframe_alpha is not None:
        engine.check(0.5, keyframe_alpha)  # ValueError outside the engine's ROI weight range
    label.append(f"k{keyint}")
    return engine_grid(engine, rates, roi_weights, name=" ".join(label), keyframe_interval=keyint,
                       keyframe_roi_weight=keyframe_alpha)


def _add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("codecs")
    g.add_argument("--codec", action="append", metavar="SPEC",
                   help="codec spec, repeatable (default: baselines); see the spec list at the top of --help")
    g.add_argument("--rates", type=float_list, default=list(DEFAULT_RATES), help="our codec's rates (default: %(default)s)")
    g.add_argument("--roi-weights", type=float_list, default=list(DEFAULT_ROI_WEIGHTS),
                   help="our codec's ROI weights alpha, one RD curve each (default: %(default)s)")
    g.add_argument("--device", default="cpu", help="torch device for our codec and the detector (default: cpu)")
    g = parser.add_argument_group("ROI and detector")
    g.add_argument("--detector", metavar="WEIGHTS",
                   help="ultralytics YOLO .pt (default: $ROI_CODEC_DETECTOR_WEIGHTS; none: no detector)")
    g.add_argument("--strict-detector", action="store_true",
                   help="fail (instead of warning) when the detector is not the one our codec was trained with")
    g.add_argument("--no-detector", action="store_true", help="never run a detector (no features, no task metric)")
    g.add_argument("--roi-classes", default=None,
                   help="comma-separated ROI class names, 'all' = every class (default: the RoiMaskConfig road users)")
    g.add_argument("--roi-confidence", type=float, default=None, help="minimum detector score for ROI boxes (default 0.25)")
    g.add_argument("--roi-margin", type=float, default=None, help="pixels added around ROI boxes (default 8)")
    add_class_weights_arg(g)
    g.add_argument("--task-metric", action="store_true",
                   help="run the detector on every decoded frame: precision/recall at IoU 0.5 vs the original")
    g = parser.add_argument_group("measurement and report")
    g.add_argument("--fps", type=float, default=None, help="stream frame rate for the bitrate column")
    g.add_argument("--max-frames", type=int, default=None, help="evaluate at most N frames")
    g.add_argument("--stride", type=int, default=1, help="take every N-th frame (default 1)")
    g.add_argument("--no-msssim", action="store_true", help="skip MS-SSIM (faster)")
    g.add_argument("--out", default="eval_out", help="report folder (default: %(default)s)")
    g.add_argument("--anchor", default=None, help=f"anchor family for BD-rate (default: {PREFERRED_ANCHOR} if evaluated)")
    g.add_argument("--title", default=None, help="report title")
    g.add_argument("--no-records", action="store_true", help="leave per-frame records out of report.json")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roi-codec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("eval", help="evaluate codecs and baselines on an image folder",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", help="folder of images (evaluated in name order)")
    p.add_argument("--labels", help="folder of <image stem>.txt box files (pixel xyxy or YOLO normalised)")
    p.add_argument("--roi", choices=("auto", "labels", "detector", "none"), default="auto",
                   help="ROI boxes from label files, the detector, or none (auto: labels if given, else detector "
                        "if weights are found, else none)")
    _add_common(p)
    p = sub.add_parser("eval-bag", help="evaluate on a rosbag2 image topic",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", help="rosbag2 folder (mcap or sqlite3)")
    p.add_argument("--topic", help="sensor_msgs/Image or CompressedImage topic (default: the only image topic)")
    p.add_argument("--skip", type=int, default=0, help="skip the first N messages")
    p.add_argument("--roi", choices=("auto", "detector", "none"), default="auto",
                   help="ROI boxes from the detector or none (auto: detector if weights are found)")
    p.add_argument("--out-bag", help="write original/compressed/decoded topics of one setting to this new bag")
    p.add_argument("--out-storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--out-setting", help="label of the setting written to --out-bag, e.g. 'ours α=4 rate=0.5' "
                                         "(default: the first evaluated setting)")
    _add_common(p)
    p = sub.add_parser("make-bag", help="convert a video file or image folder to a rosbag2 (sensor_msgs/Image)")
    p.add_argument("source", help="video file (mp4, avi, ...) or image folder")
    p.add_argument("out", help="new rosbag2 folder")
    p.add_argument("--rate", type=float, default=None, help="message rate in Hz (video: its own rate; folder: 10)")
    p.add_argument("--topic", default="/camera/image_raw")
    p.add_argument("--frame-id", default="camera")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    return parser


def _detector(args, required: bool):
    """The DetectorAdapter to use, or None (no weights found and not required)."""
    if args.no_detector:
        if required:
            raise SystemExit("roi-codec: --roi detector contradicts --no-detector")
        return None
    from roi_codec_ros.detector import DetectorAdapter, default_weights_path

    weights = args.detector or default_weights_path()
    if weights is None:
        if required or args.task_metric:
            raise SystemExit("roi-codec: no detector weights: pass --detector PATH or set ROI_CODEC_DETECTOR_WEIGHTS")
        return None
    return DetectorAdapter.from_weights(weights, device=args.device)


def _roi_config(args):
    from roi_codec_ros.detector import RoiMaskConfig, parse_classes
    from roi_codec_ros.detector.roi_mask import parse_class_weights

    values = {}
    if args.roi_classes:
        values["classes"] = parse_classes(args.roi_classes)
    if args.roi_confidence is not None:
        values["confidence"] = args.roi_confidence
    if args.roi_margin is not None:
        values["margin_px"] = args.roi_margin
    values["class_weights"] = parse_class_weights(args.class_weights)
    return RoiMaskConfig(**values)


def _check_detector_match(codecs, detector, strict: bool = False) -> None:
    """Warn (or fail when strict) for every model of ours that was trained with another detector."""
    from roi_codec_ros.codec.checkpoint import check_detector_match

    if detector is None:
        return
    for codec in {id(c.codec): c.codec for c in codecs if isinstance(c, OursCodec)}.values():
        problem = check_detector_match(codec.info, detector.detector_id, strict=strict, warn=False)
        if problem:
            logging.warning("%s: %s (--strict-detector makes this an error)", codec.info.get("path", "our codec"), problem)


def _anchor(requested: str | None, names: list[str]) -> str:
    """The BD-rate anchor: the requested family, or the family it starts ("x264" -> "x264 420"; among several, the
    shortest when it starts all the others: "x264 420" before "x264 420 ROI q-0.3"); an unknown or ambiguous name
    warns and falls back to the default rather than losing the evaluation that just ran."""
    default = PREFERRED_ANCHOR if PREFERRED_ANCHOR in names else names[0]
    if requested is None or requested in names:
        return requested or default
    matches = sorted((n for n in names if n.startswith(requested)), key=len)
    if matches and all(m.startswith(matches[0]) for m in matches):
        return matches[0]
    logging.warning("--anchor %r is not one of the evaluated families %s: using %r", requested, names, default)
    return default


def _run(args, frames, total: int | None, meta: dict, roi_mode: str, detector, on_result=None, on_records=None) -> int:
    codecs = build_codecs(args.codec or ["baselines"], args.rates, args.roi_weights, device=args.device)
    _check_detector_match(codecs, detector, args.strict_detector)
    roi_config = _roi_config(args) if detector is not None or roi_mode == "detector" else None
    if args.class_weights and roi_mode != "detector":
        given = "labels" if roi_mode == "frame" else roi_mode
        raise SystemExit(f"roi-codec: --class-weights needs the detector's ROI boxes (--roi detector), not --roi {given}")
    if roi_config is not None and detector is not None:
        from roi_codec_ros.detector import unknown_classes
        from roi_codec_ros.detector.roi_mask import class_weight_keys

        missing = unknown_classes(detector.names, class_weight_keys(roi_config))
        if missing:
            logging.warning("the detector has no class %s (--class-weights; ignored)", missing)
    roi_source = RoiSource(roi_mode, detector=detector, roi_config=roi_config)
    records = evaluate(
        frames, codecs, fps=meta["fps"], roi_source=roi_source, task_metric=args.task_metric,
        with_msssim=not args.no_msssim, on_result=on_result, total=total, progress=not args.quiet,
    )
    if not records:
        raise SystemExit("roi-codec: no frames were evaluated")
    summary = summarize(records)
    names = families(summary)
    anchor = _anchor(args.anchor, names)
    meta.update(
        frames=len({r.frame for r in records}),
        resolution=sorted({f"{r.width}x{r.height}" for r in records}),
        detector=detector.detector_id if detector is not None else "none",
        roi_config=str(roi_config) if roi_config is not None else None,
        command="roi-codec " + " ".join(shlex.quote(a) for a in args.argv),
    )
    paths = write_report(args.out, meta, summary, [] if args.no_records else records_as_dicts(records), anchor)
    print(f"report: {paths['report.md']}")
    print(paths["report.md"].read_text().split("## RD curves")[0])
    if on_records is not None:
        on_records(records)
    return 0


def bitrate_windows(records, stamps_ns: dict[str, int], window_s: float = 1.0) -> list[dict]:
    """Achieved kbps per aligned ``window_s`` window of the bag's stamps, per evaluated setting (codec family +
    setting): what a link would carry replaying the bag at that setting."""
    from roi_codec_ros.rate_control.report import window_table

    by_setting: dict[tuple[str, str], list] = {}
    for r in records:
        by_setting.setdefault((r.family, r.setting), []).append(r)
    first = min(stamps_ns.values()) if stamps_ns else 0
    out = []
    for (family, setting), rows in by_setting.items():
        rows = sorted(rows, key=lambda r: stamps_ns.get(r.frame, 0))
        t = [(stamps_ns.get(r.frame, first) - first) * 1e-9 for r in rows]
        b = [r.num_bytes for r in rows]
        windows = window_table(t, b, window_s)
        kbps = [w["kbps"] for w in windows]
        span = (t[-1] - t[0]) * len(t) / (len(t) - 1) if len(t) > 1 and t[-1] > t[0] else float("nan")
        out.append({"family": family, "setting": setting, "frames": len(rows),
                    "mean_kbps": 8.0 * sum(b) / span / 1000.0 if span == span else float("nan"),
                    "window_min_kbps": min(kbps) if kbps else float("nan"),
                    "window_max_kbps": max(kbps) if kbps else float("nan"), "windows": windows})
    return out


def _write_bitrate_windows(out_dir, rows: list[dict]) -> Path:
    from roi_codec_ros.files import write_text_atomic

    path = Path(out_dir) / "bitrate_windows.json"
    write_text_atomic(path, json.dumps(rows, indent=1))
    print(f"achieved kbps per 1-s window of the bag's stamps ({path}):")
    for row in rows:
        print(f"  {row['family']:>12s} {row['setting']:<28s} mean {row['mean_kbps']:9.1f} kbps, "
              f"{len(row['windows'])} windows {row['window_min_kbps']:.1f} .. {row['window_max_kbps']:.1f} kbps")
    return path


def _main_eval(args) -> int:
    from roi_codec_ros.evaluation.frames import count_folder_frames, iter_folder_frames

    mode = args.roi
    if mode == "auto":
        mode = "labels" if args.labels else None
    if mode == "labels" and not args.labels:
        raise SystemExit("roi-codec: --roi labels needs --labels DIR")
    detector = _detector(args, required=mode == "detector")
    if mode is None:
        mode = "detector" if detector is not None else "none"
    frames = iter_folder_frames(args.images, args.labels if mode == "labels" else None, args.stride, args.max_frames)
    total = count_folder_frames(args.images, args.stride, args.max_frames)
    fps = args.fps or 10.0
    meta = {"title": args.title or Path(args.images).name, "source": str(args.images), "fps": fps,
            "roi": {"labels": f"boxes from {args.labels}", "detector": "detector boxes", "none": "none"}[mode]}
    return _run(args, frames, total, meta, "frame" if mode == "labels" else mode, detector)


def _main_eval_bag(args) -> int:
    from roi_codec_ros.evaluation.bags import EvalBagWriter, image_topic_info, iter_bag_frames

    info = image_topic_info(args.bag, args.topic)
    mode = args.roi
    detector = _detector(args, required=mode == "detector")
    if mode == "auto":
        mode = "detector" if detector is not None else "none"
    fps = args.fps or (info.fps if not math.isnan(info.fps) else 10.0)
    available = max(0, math.ceil((info.count - args.skip) / args.stride))
    total = min(available, args.max_frames) if args.max_frames is not None else available
    stamps: dict[str, int] = {}

    def stamped(frames):
        for frame in frames:
            stamps[frame.name] = frame.stamp_ns
            yield frame

    def windows(records):
        _write_bitrate_windows(args.out, bitrate_windows(records, stamps))

    frames = stamped(iter_bag_frames(args.bag, info.topic, args.stride, args.max_frames, args.skip))
    meta = {"title": args.title or f"{Path(args.bag).name} {info.topic}", "source": f"{args.bag} {info.topic}",
            "fps": round(fps, 3), "roi": "detector boxes" if mode == "detector" else "none"}
    if not args.out_bag:
        return _run(args, frames, total, meta, mode, detector, on_records=windows)
    chosen = {}

    with EvalBagWriter(args.out_bag, info.topic, args.out_storage) as writer:
        def on_result(frame, codec, data, decoded, record, boxes):
            if not chosen:
                if args.out_setting and codec.label != args.out_setting:
                    return
                chosen["label"] = codec.label
            if codec.label == chosen["label"]:
                writer.write(frame, codec, data, decoded, record, boxes=boxes)

        code = _run(args, frames, total, meta, mode, detector, on_result, on_records=windows)
    if not chosen:
        raise SystemExit(f"roi-codec: --out-setting {args.out_setting!r} matched no evaluated setting")
    print(f"output bag: {args.out_bag} ({chosen['label']}: {writer.counts})")
    return code


def _main_make_bag(args) -> int:
    from roi_codec_ros.evaluation.bags import make_bag

    count = make_bag(args.source, args.out, rate=args.rate, topic=args.topic, frame_id=args.frame_id,
                     storage=args.storage, max_frames=args.max_frames, progress=not args.quiet)
    print(f"wrote {count} frames to {args.out} ({args.storage}, topic {args.topic})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv[0]`` is the sub-command (eval, eval-bag, make-bag)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if args.command == "eval":
            return _main_eval(args)
        if args.command == "eval-bag":
            return _main_eval_bag(args)
        return _main_make_bag(args)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        print(f"roi-codec {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
