#!/usr/bin/env python3
"""Offline evaluation of the rate controller (issue 12) on the real codec or on a simulated one.

    python scripts/rate_control_eval.py measure                       # model reach + curve shape (192 encodes)
    python scripts/rate_control_eval.py run --plots outputs/rc/real_plots --psnr-every 10 --psnr-every-pair 2
    python scripts/rate_control_eval.py table outputs/rc/real/highway.json outputs/rc/real/pedestrians.json
    python scripts/rate_control_eval.py replay outputs/rc/real/pedestrians.json   # model candidates on real frames
    python scripts/rate_control_eval.py plot outputs/rc/real/highway.json --out docs/images/rate_control_highway.png
    python scripts/rate_control_eval.py simulate [--keyframe-interval 10]   # the same runs in seconds

``--model PATH`` (measure, run) evaluates another model file; ``run`` refuses a measurement of another model.
Videos: highway (25 fps, resampled to 10 Hz, all frames) and pedestrians (10 fps, first 300 frames).  One pass per
video: the detector runs once per frame and every controller run (each target, the step) encodes that frame with
its own controller, so the runs see identical frames, masks and features.  Outputs go under ``outputs/rc/``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roi_codec_ros.rate_control import (  # noqa: E402
    FrameType,
    RateController,
    TargetSchedule,
    tracking_summary,
)
from roi_codec_ros.rate_control.model import BitsModel  # noqa: E402
from roi_codec_ros.rate_control.report import plot_records as plot_tracking  # noqa: E402
from roi_codec_ros.rate_control.simulate import SimulatedCodec, SimulatedScene  # noqa: E402

SHARED = Path("/work/shared/data/video")
VIDEOS = {
    "highway": (SHARED / "highway_960x540_25fps.mp4", None),
    "pedestrians": (SHARED / "pedestrians_768x576_10fps.avi", 300),
}
FPS = 10.0
DETECTOR = Path("/work/shared/models/yolov8n_coco.pt")


# ------------------------------------------------------------------------------------------------ frames
def read_frames(path: Path, fps: float = FPS, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB frames resampled to ``fps``: output instant k/fps shows the latest source frame at or before it
    (half a source period of tolerance), i.e. every 2.5th frame of a 25 fps video; a 10 fps video is unchanged."""
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    native = float(stream.average_rate or 25)
    count, next_t, first = 0, 0.0, None
    try:
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else count / native
            first = t if first is None else first
            t -= first
            while next_t < t + 0.5 / native:
                if max_frames is not None and count >= max_frames:
                    return
                yield frame.to_ndarray(format="rgb24")
                count += 1
                next_t = count / fps
    finally:
        container.close()


class Roi:
    """Detector once per frame: features for the codec, ROI mask (road users + 8 px margin), coverage, boxes."""

    def __init__(self, weights: Path | None):
        self.detector = None
        if weights is not None:
            from roi_codec_ros.detector import DetectorAdapter

            self.detector = DetectorAdapter.from_weights(str(weights))

    def __call__(self, rgb: np.ndarray):
        from roi_codec_ros.detector import RoiMaskConfig, roi_mask_from_detections

        h, w = rgb.shape[:2]
        if self.detector is None:
            # static fallback: the lower-middle road region, when no detector can run
            mask = np.zeros((h, w), np.float32)
            mask[h // 2 :, w // 4 : 3 * w // 4] = 1.0
            return None, mask
        result = self.detector(rgb)
        mask = roi_mask_from_detections(result.detections, (h, w), RoiMaskConfig(margin_px=8))
        return result.features, mask


def psnr_regions(original: np.ndarray, decoded: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """(whole, ROI, background) PSNR in dB (RGB, MAX 255; the evaluation's eq. 9); NaN for an empty region."""
    err = (original.astype(np.float64) - decoded.astype(np.float64)) ** 2
    err = err.mean(axis=2)
    roi = mask >= 0.5

    def p(sel):
        if sel is not None and not sel.any():
            return float("nan")
        m = float(err.mean() if sel is None else err[sel].mean())
        return 100.0 if m <= 0 else 10 * math.log10(255.0**2 / m)

    return p(None), p(roi), p(~roi)


# ------------------------------------------------------------------------------------------------ measure
def cmd_measure(args) -> None:
    """Bytes vs rate on a dense grid (3 ROI weights) on a few frames, and a short fixed-rate trace per video."""
    from roi_codec_ros.codec import RoiCodec

    codec = RoiCodec.load(args.model)
    roi = Roi(None if args.no_detector else DETECTOR)
    rates = [round(x, 3) for x in np.linspace(0.0, 1.0, args.grid)]
    weights = [float(a) for a in args.roi_weights.split(",")]
    out = {"model": codec.info.get("path"), "model_id": codec.model_id, "rates": rates, "roi_weights": weights,
           "grid": [], "trace": []}
    for name, (path, max_frames) in VIDEOS.items():
        frames = list(read_frames(path, FPS, max_frames))
        picks = np.linspace(0, len(frames) - 1, args.grid_frames).round().astype(int)
        for i in picks:
            rgb = frames[i]
            features, mask = roi(rgb)
            for a in weights:
                for r in rates:
                    e = codec.encode(rgb, roi_mask=mask, features=features, rate=r, roi_weight=a)
                    out["grid"].append({"video": name, "frame": int(i), "pixels": int(rgb.shape[0] * rgb.shape[1]),
                                        "coverage": float(mask.mean()), "rate": r, "roi_weight": a,
                                        "bytes": len(e.data), "encode_ms": e.encode_ms})
            print(f"{name} frame {i}: grid done", flush=True)
        for i in range(args.trace_frames):
            rgb = frames[i]
            features, mask = roi(rgb)
            e = codec.encode(rgb, roi_mask=mask, features=features, rate=args.trace_rate, roi_weight=args.trace_weight)
            out["trace"].append({"video": name, "frame": i, "pixels": int(rgb.shape[0] * rgb.shape[1]),
                                 "coverage": float(mask.mean()), "rate": args.trace_rate,
                                 "roi_weight": args.trace_weight, "bytes": len(e.data)})
        print(f"{name}: trace done", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")



# ------------------------------------------------------------------------------------------------ runs
def feasible_range(measure: dict, video: str, roi_weight: float, fps: float = FPS) -> tuple[float, float]:
    """kbps range every measured frame of ``video`` can reach at ``roi_weight``: the largest size at the lowest
    rate and the smallest at the highest rate, over the grid frames."""
    grid = [g for g in measure["grid"] if g["video"] == video and g["roi_weight"] == roi_weight]
    if not grid:
        raise SystemExit(f"no measurement for {video} at ROI weight {roi_weight}: run 'measure' first")
    lo_rate, hi_rate = min(g["rate"] for g in grid), max(g["rate"] for g in grid)
    lo = max(g["bytes"] for g in grid if g["rate"] == lo_rate)
    hi = min(g["bytes"] for g in grid if g["rate"] == hi_rate)
    return lo * 8 * fps / 1000, hi * 8 * fps / 1000


def pick_targets(lo: float, hi: float, fractions=(0.2, 0.5, 0.8)) -> list[float]:
    """Targets spread over the range on a log scale (bits vs rate is roughly exponential below the knee)."""
    return [round(lo * (hi / lo) ** f) for f in fractions]


class Run:
    """One controlled stream: its schedule, controller and per-frame records."""

    def __init__(self, name: str, schedule: TargetSchedule, args, psnr_every: int = 0, keyframe_interval=None):
        self.name, self.schedule, self.psnr_every = name, schedule, psnr_every
        self.keyframe_interval = keyframe_interval
        self.rc = RateController(schedule.at(0.0), fps_hint=FPS, buffer_ms=args.buffer_ms, model=args.model_kind,
                                 roi_weight_limit=args.roi_weight_limit, keyframe_interval=keyframe_interval,
                                 table_knots=args.table_knots)
        self.records: list[dict] = []

    def frame_type(self, index: int) -> FrameType:
        if self.keyframe_interval is None:
            return FrameType.I
        return FrameType.I if index % self.keyframe_interval == 0 else FrameType.P

    def summary(self) -> dict:
        t = [r["t"] for r in self.records]
        b = [r["bytes"] for r in self.records]
        out = tracking_summary(t, b, self.schedule)
        out.update(name=self.name, schedule=str(self.schedule), frames=len(t),
                   counters={k: v for k, v in self.rc.counters.items()},
                   mean_rate=float(np.mean([r["rate"] for r in self.records])),
                   prediction_rms_ln=float(np.sqrt(np.mean([np.log(r["bytes"] / r["predicted"]) ** 2
                                                            for r in self.records if r["bytes"] > 0]))))
        return out


def stream(frames, runs: list[Run], encode: Callable, decode: Callable | None = None, log_every: int = 10) -> None:
    """Code every frame once per run: plan, encode, update (and decode for PSNR where the run asks)."""
    start = time.perf_counter()
    for index, (t, frame) in enumerate(frames):
        for run in runs:
            target = run.schedule.at(t)
            if target != run.rc.target_kbps:
                run.rc.set_target(target)
            ft = run.frame_type(index)
            d = run.rc.plan(frame["pixels"], frame["coverage"], ft, t, roi_weight=frame["roi_weight"])
            nbytes, psnr = 0, (math.nan, math.nan, math.nan)
            if not d.skip:
                data = encode(frame, d, ft)
                nbytes = len(data)
                if decode is not None and run.psnr_every and index % run.psnr_every == 0:
                    psnr = decode(frame, data)
            run.rc.update(d, nbytes)
            run.records.append({"t": t, "target": target, "rate": d.rate, "roi_weight": d.roi_weight,
                                "coverage": d.roi_coverage, "pixels": d.pixels, "frame_type": ft.value,
                                "bytes": nbytes, "predicted": d.predicted_bytes, "budget": d.budget_bytes,
                                "reason": d.reason, "skip": d.skip, "psnr": psnr[0], "psnr_roi": psnr[1],
                                "psnr_bg": psnr[2]})
        if log_every and index % log_every == 0:
            state = " ".join(f"{r.name}:{r.records[-1]['rate']:.2f}/{r.rc.meter.kbps():.0f}" for r in runs)
            print(f"  frame {index} t={t:.1f}s {time.perf_counter() - start:.0f}s  {state}", flush=True)


def roi_priority(high: Run, step: Run, from_s: float) -> dict:
    """ROI vs background PSNR drop when the target halves: the step run after settling against the constant
    high-target run on the same frames (both decoded)."""
    pairs = [(a, b) for a, b in zip(high.records, step.records)
             if a["t"] >= from_s and np.isfinite(a["psnr"]) and np.isfinite(b["psnr"])]
    if not pairs:
        return {"frames": 0}
    d_roi = [b["psnr_roi"] - a["psnr_roi"] for a, b in pairs if np.isfinite(a["psnr_roi"]) and np.isfinite(b["psnr_roi"])]
    d_bg = [b["psnr_bg"] - a["psnr_bg"] for a, b in pairs]
    return {"frames": len(pairs), "frames_with_roi": len(d_roi), "from_s": from_s,
            "kbps_high": float(np.mean([a["bytes"] for a, _ in pairs]) * 8 * FPS / 1000),
            "kbps_halved": float(np.mean([b["bytes"] for _, b in pairs]) * 8 * FPS / 1000),
            "psnr_roi_high": float(np.mean([a["psnr_roi"] for a, _ in pairs if np.isfinite(a["psnr_roi"])])),
            "psnr_bg_high": float(np.mean([a["psnr_bg"] for a, _ in pairs])),
            "delta_roi_db": float(np.mean(d_roi)) if d_roi else math.nan,
            "delta_bg_db": float(np.mean(d_bg)),
            "share_frames_roi_falls_less": float(np.mean([r > g for r, g in zip(d_roi, d_bg)])) if d_roi else math.nan}


def plot_records(records: dict[str, list[dict]], path: Path, title: str) -> None:
    """Achieved vs target (roi_codec_ros.rate_control.report.plot_records): constant targets on the left, the step
    run on the right."""
    names = list(records)
    step_names = [n for n in names if n.startswith("step")]
    plot_tracking(records, path, title, panels=[("constant targets", [n for n in names if n not in step_names]),
                                                ("2x-down step", step_names)])


def build_runs(args, lo: float, hi: float, step_at: float, keyframe_interval=None) -> tuple[list[Run], dict]:
    targets = [float(x) for x in args.targets.split(",")] if args.targets else pick_targets(lo, hi)
    high = max(targets)
    runs = [Run(f"{k:g}kbps", TargetSchedule.constant(k), args, args.psnr_every if k != high else args.psnr_every_pair,
                keyframe_interval) for k in targets]
    step = TargetSchedule(((0.0, high), (step_at, high / 2)))
    runs.append(Run(f"step {high:g}->{high / 2:g}", step, args, args.psnr_every_pair, keyframe_interval))
    return runs, {"range_kbps": [lo, hi], "targets_kbps": targets, "step": str(step)}


def step_time(video: str, frames: int) -> float:
    """Second 10 where the clip is long enough (pedestrians, 30 s); else its middle (highway is 8.9 s at 10 Hz)."""
    duration = frames / FPS
    return 10.0 if duration >= 20.0 else max(round(duration / 2, 1), 0.1)


def report(video: str, runs: list[Run], meta: dict, out_dir: Path, plots: Path | None, title: str) -> dict:
    summaries = [r.summary() for r in runs]
    result = {"video": video, **meta, "runs": summaries}
    step_run, high = runs[-1], max(runs[:-1], key=lambda r: r.schedule.at(0))
    t_step = step_run.schedule.points[1][0]
    result["roi_priority"] = roi_priority(high, step_run, t_step + 2.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    result["controller_commit"] = controller_commit()
    (out_dir / f"{video}.json").write_text(json.dumps({**result, "records": {r.name: r.records for r in runs}}, indent=1))
    if plots is not None:
        plot_records({r.name: r.records for r in runs}, plots / f"rate_control_{video}.png", title)
    for s in summaries:
        steps = "; ".join(f"settle {x['settling_s']:.1f}s" for x in s["steps"])
        print(f"{video:12s} {s['name']:18s} mean {s['mean_kbps']:7.1f} vs {s['mean_target_kbps']:7.1f} "
              f"({100 * s['mean_error']:+.1f} %), windows within 15 %: {100 * s['windows_within']:.0f} % of "
              f"{s['windows']}, max {100 * s['window_max_error']:+.1f} %, min {100 * s['window_min_error']:+.1f} %, "
              f"skipped {s['counters']['skipped']}, roi-weight {s['counters']['roi_weight_changed']}, "
              f"pred rms {s['prediction_rms_ln']:.3f} {steps}")
    print(f"{video:12s} ROI priority: {json.dumps(result['roi_priority'])}")
    return result


def controller_commit() -> str:
    """The commit the controller code comes from, '+dirty' if roi_codec_ros/rate_control differs from it."""
    import subprocess

    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "roi_codec_ros/rate_control")
    return head + ("+dirty" if dirty else "")


# ------------------------------------------------------------------------------------------------ run (real)
def cmd_run(args) -> None:
    import torch
    from roi_codec_ros.codec import RoiCodec

    torch.set_num_threads(args.threads)
    codec = RoiCodec.load(args.model)
    measure = json.loads(Path(args.measurement).read_text())
    if measure.get("model_id") != codec.model_id:
        raise SystemExit(f"{args.measurement} was measured on model {measure.get('model_id')}, not "
                         f"{codec.model_id}: run 'measure --model {args.model}' first")
    roi = Roi(None if args.no_detector else DETECTOR)
    out_dir = Path(args.out)
    results = {"model": codec.info.get("path"), "model_id": codec.model_id, "controller_commit": controller_commit(),
               "args": vars(args) | {"func": None}, "videos": []}
    for video in args.videos.split(","):
        path, max_frames = VIDEOS[video]
        max_frames = args.max_frames or max_frames
        count = sum(1 for _ in read_frames(path, FPS, max_frames))
        lo, hi = feasible_range(measure, video, args.roi_weight)
        runs, meta = build_runs(args, lo, hi, step_time(video, count))
        print(f"{video}: {count} frames, range {lo:.0f}..{hi:.0f} kbps, {meta}", flush=True)

        def frames():
            for i, rgb in enumerate(read_frames(path, FPS, max_frames)):
                features, mask = roi(rgb)
                yield i / FPS, {"rgb": rgb, "features": features, "mask": mask, "pixels": rgb.shape[0] * rgb.shape[1],
                                "coverage": float(mask.mean()), "roi_weight": args.roi_weight}

        def encode(frame, d, ft):
            return codec.encode(frame["rgb"], roi_mask=frame["mask"], features=frame["features"], rate=d.rate,
                                roi_weight=d.roi_weight).data

        def decode(frame, data):
            return psnr_regions(frame["rgb"], codec.decode(data), frame["mask"])

        stream(frames(), runs, encode, decode)
        title = (f"{video} @10 Hz, model {codec.model_id[:8]}, ROI weight {args.roi_weight:g}, "
                 f"buffer {args.buffer_ms:g} ms (dashed: target; dots: aligned 1-s windows)")
        results["videos"].append(report(video, runs, meta, out_dir, Path(args.plots) if args.plots else None, title))
    (out_dir / "summary.json").write_text(json.dumps(results, indent=1))


# ------------------------------------------------------------------------------------------------ simulate
def cmd_simulate(args) -> None:
    """The same runs on the simulated codec fitted to each video's measurement: seconds instead of an hour."""
    measure = json.loads(Path(args.measurement).read_text())
    keyint = args.keyframe_interval or None
    all_results = []
    for video in args.videos.split(","):
        count = {"highway": 89, "pedestrians": 300}[video] if args.frames is None else args.frames
        grid = [g for g in measure["grid"] if g["video"] == video]
        frames_of = sorted({g["frame"] for g in grid})
        for seed in range(args.seeds):
            codec = SimulatedCodec.from_measurement(measure, video, frames_of[0], seed=seed, p_ratio=args.p_ratio)
            lo, hi = codec.kbps_range(FPS, args.roi_weight, share_i=1.0 if keyint is None else 1.0 / keyint)
            lo, hi = (lo * 1.05, hi / 1.05) if keyint else feasible_range(measure, video, args.roi_weight)
            runs, meta = build_runs(args, lo, hi, step_time(video, count), keyint)
            trace = [t["bytes"] for t in measure["trace"] if t["video"] == video]
            walk = float(np.std(np.diff(np.log(trace[1:])))) if len(trace) > 3 else 0.02
            scene = SimulatedScene(fps=FPS, walk_std=walk, cut_every_s=args.cut_every_s, cut_std=args.cut_std,
                                   coverage_mean=float(np.mean([g["coverage"] for g in grid])), seed=100 + seed)
            pixels = grid[0]["pixels"]
            frames = [(t, {"pixels": pixels, "coverage": cov, "complexity": c, "roi_weight": args.roi_weight})
                      for t, c, cov in scene.frames(count)]

            def encode(frame, d, ft):
                return b"\0" * codec.encode(d.rate, d.roi_weight, frame["coverage"], ft, frame["pixels"], frame["complexity"])

            stream(frames, runs, encode, None, log_every=0)
            title = f"{video} simulated (seed {seed}), {'intra' if keyint is None else f'I/P keyint {keyint}'}"
            plots = Path(args.plots) if args.plots and seed == 0 else None
            all_results.append(report(f"{video}_sim{seed}", runs, meta, Path(args.out), plots, title))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(all_results, indent=1))


# ------------------------------------------------------------------------------------------------ replay
def cmd_replay(args) -> None:
    """Prediction error of each model candidate on recorded frames (same rates, ROI weights and sizes): every
    model predicts a frame's size before it is told it."""
    data = json.loads(Path(args.records).read_text())
    rows = []
    for name, records in data["records"].items():
        for kind, knots in (("loglinear", 2), ("table", 5), ("table", 9)):
            model = BitsModel(kind, knots=knots)
            errors = []
            for r in records:
                if r["bytes"] <= 0:
                    continue
                errors.append(model.update(r["rate"], r["roi_weight"], r["coverage"], r["bytes"], r["pixels"]))
            e = np.abs(np.array(errors[args.warmup:]))
            label = kind if kind == "loglinear" else f"table{knots}"
            rows.append((name, label, float(np.sqrt(np.mean(e**2))), float(np.percentile(e, 95))))
            print(f"{data['video']:12s} {name:18s} {label:10s} rms {rows[-1][2]:.4f} p95 {rows[-1][3]:.4f} "
                  f"({len(e)} frames after {args.warmup})")


# ------------------------------------------------------------------------------------------------ plots
def cmd_plot(args) -> None:
    """Re-plot a run's records (``<video>.json`` from 'run' or 'simulate') without coding again."""
    data = json.loads(Path(args.records).read_text())
    title = args.title or f"{data['video']} ({data.get('model_id', '')[:8]}): dashed target, band +-15 %, dots 1-s windows"
    plot_records(data["records"], Path(args.out), title)
    print(f"wrote {args.out}")


def cmd_curve(args) -> None:
    """ln(bytes/pixel) vs rate of the measured grid (the curve the model must follow), one line per frame/weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measure = json.loads(Path(args.measurement).read_text())
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=90)
    styles = {1.0: ":", 8.0: "-", 60.0: "--"}
    colours = {"highway": "tab:blue", "pedestrians": "tab:orange"}
    keys = sorted({(g["video"], g["frame"], g["roi_weight"]) for g in measure["grid"]})
    for video, frame, weight in keys:
        rows = sorted((g for g in measure["grid"] if (g["video"], g["frame"], g["roi_weight"]) == (video, frame, weight)),
                      key=lambda g: g["rate"])
        ax.plot([g["rate"] for g in rows], [8 * g["bytes"] / g["pixels"] for g in rows], styles.get(weight, "-"),
                color=colours.get(video, "k"), lw=1, label=f"{video} f{frame} w{weight:g}")
    ax.set_yscale("log")
    ax.set_xlabel("rate")
    ax.set_ylabel("bits per pixel (log)")
    ax.set_title(f"model {measure['model_id'][:8]}: size vs rate (ROI weight 1 dotted, 8 solid, 60 dashed)", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


def cmd_table(args) -> None:
    """Markdown table of a run's acceptance figures (docs/rate_control.md), from the per-video JSON files."""
    rows = ["| video | run | target kbps | mean kbps (error) | 1-s windows within +-15 % | max / min window | "
            "settling after step | skipped / ROI-weight changes | mean rate | prediction RMS ln |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for path in args.records:
        data = json.loads(Path(path).read_text())
        for s in data["runs"]:
            ok = abs(s["mean_error"]) <= 0.05 and s["windows_within"] >= 0.9 and s["window_max_error"] <= 0.30
            settle = "; ".join(f"{x['settling_s']:.1f} s" for x in s["steps"]) or "-"
            if s["steps"]:
                ok = ok and all(x["settling_s"] <= 2.0 for x in s["steps"])
            c = s["counters"]
            rows.append(f"| {data['video']} | {s['name']} | {s['schedule']} | {s['mean_kbps']:.1f} "
                        f"({100 * s['mean_error']:+.1f} %) | {100 * s['windows_within']:.0f} % of {s['windows']} | "
                        f"{100 * s['window_max_error']:+.1f} % / {100 * s['window_min_error']:+.1f} % | {settle} | "
                        f"{c['skipped']} / {c['roi_weight_changed']} | {s['mean_rate']:.3f} | "
                        f"{s['prediction_rms_ln']:.3f} | " + ("" if ok else "**fails**"))
        p = data["roi_priority"]
        if p.get("frames"):
            notes.append(f"- {data['video']}: {p['frames']} decoded frame pairs from {p['from_s']:.1f} s, "
                         f"{p['kbps_high']:.0f} -> {p['kbps_halved']:.0f} kbps: ROI PSNR {p['psnr_roi_high']:.2f} dB "
                         f"{p['delta_roi_db']:+.2f} dB, background {p['psnr_bg_high']:.2f} dB {p['delta_bg_db']:+.2f} dB; "
                         f"ROI fell less on {100 * p['share_frames_roi_falls_less']:.0f} % of the frames "
                         f"({p['frames_with_roi']} with ROI pixels)")
    print("\n".join(rows))
    print()
    print("\n".join(notes))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="bytes vs rate of the model on a few frames (range and curve shape)")
    m.add_argument("--model", default=None, help="model file (default: the shipped one)")
    m.add_argument("--out", default="outputs/rc/measure.json")
    m.add_argument("--grid", type=int, default=11, help="rates 0..1 in this many steps")
    m.add_argument("--grid-frames", type=int, default=2, help="frames per video on the dense grid")
    m.add_argument("--roi-weights", default="1,8,60")
    m.add_argument("--trace-frames", type=int, default=30, help="consecutive frames per video at a fixed rate")
    m.add_argument("--trace-rate", type=float, default=0.5)
    m.add_argument("--trace-weight", type=float, default=8.0)
    m.add_argument("--no-detector", action="store_true", help="static ROI box instead of the YOLO detector")
    m.set_defaults(func=cmd_measure)

    def common(p):
        p.add_argument("--measurement", default="outputs/rc/measure.json", help="output of 'measure'")
        p.add_argument("--videos", default="highway,pedestrians")
        p.add_argument("--targets", default=None, help="kbps list; default: 20/50/80 %% of the measured range")
        p.add_argument("--roi-weight", type=float, default=8.0)
        p.add_argument("--roi-weight-limit", type=float, default=60.0,
                       help="last resort below the lowest rate (the shipped model: a higher weight is smaller)")
        p.add_argument("--buffer-ms", type=float, default=500.0)
        p.add_argument("--model-kind", default="loglinear", choices=("loglinear", "table"))
        p.add_argument("--table-knots", type=int, default=5)
        p.add_argument("--out", default="outputs/rc/real")
        p.add_argument("--plots", default=None, help="folder for the PNG plots (docs/images for the docs)")
        p.add_argument("--psnr-every", type=int, default=0, help="decode every Nth frame of the other runs")
        p.add_argument("--psnr-every-pair", type=int, default=2,
                       help="decode every Nth frame of the high-target and step runs (ROI priority)")

    r = sub.add_parser("run", help="real codec: three targets and a 2x-down step per video")
    common(r)
    r.add_argument("--model", default=None, help="codec model file (default: the shipped one)")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--no-detector", action="store_true")
    r.add_argument("--max-frames", type=int, default=None, help="smoke test: fewer frames than the acceptance")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("simulate", help="the same runs on a simulated codec fitted to the measurement")
    common(s)
    s.set_defaults(out="outputs/rc/sim")
    s.add_argument("--seeds", type=int, default=3)
    s.add_argument("--frames", type=int, default=None)
    s.add_argument("--keyframe-interval", type=int, default=0, help="0 = intra only; N = simulated I/P stream")
    s.add_argument("--p-ratio", type=float, default=0.25)
    s.add_argument("--cut-every-s", type=float, default=0.0, help="scene cuts (0 = none, like the real clips)")
    s.add_argument("--cut-std", type=float, default=0.2)
    s.set_defaults(func=cmd_simulate)

    p = sub.add_parser("replay", help="prediction error of the model candidates on recorded frames")
    p.add_argument("records", help="a <video>.json written by 'run'")
    p.add_argument("--warmup", type=int, default=5)
    p.set_defaults(func=cmd_replay)
    q = sub.add_parser("plot", help="re-plot the records of a run")
    q.add_argument("records")
    q.add_argument("--out", required=True)
    q.add_argument("--title", default=None)
    q.set_defaults(func=cmd_plot)

    t = sub.add_parser("table", help="markdown table of the acceptance figures")
    t.add_argument("records", nargs="+")
    t.set_defaults(func=cmd_table)

    c = sub.add_parser("curve", help="plot the measured size-vs-rate curves")
    c.add_argument("--measurement", default="outputs/rc/measure.json")
    c.add_argument("--out", default="docs/images/rate_control_curve.png")
    c.set_defaults(func=cmd_curve)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
