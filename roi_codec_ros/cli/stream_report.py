"""The receiving side of ``roi-codec encode-stream``: decode every message of the stream as a receiver would, measure
it, and summarise the stream (the JSON report).

    message (CodedFrame) --loss-free StreamReceiver(engine.stream_decoder())--> picture: PSNR whole / ROI / background,
                         |                                                              decode ms
                         '--drop every N-th message--> lossy StreamReceiver(engine.stream_decoder())
                              --> picture (compared with the loss-free one: delta PSNR, identical pixels), or
                                  not decoded (its reference was lost: no_reference; damage: corrupt), never output

Decoding is the decoder node's: ``nodes.decoder_core.StreamReceiver`` (reset and wait for a keyframe after a frame
that cannot be decoded) around the engine's own stream decoder.  The lossy decoder is not told that a message went
missing when the format's inter frames name their reference (rcb1: stream id, sequence number and CRC of the
reference latents), so the neural decoder has to notice the loss from the bitstream (``MissingReferenceError``); H.264
/ H.265 access units do not name theirs, so for x264 / x265 the gap is passed on, as the decoder node learns it
from ``EncodedFrame.sequence``.

The ROI of the region PSNRs is the hard union of the boxes the encoder was given (``metrics.boxes_to_mask``, as the
evaluation measures it): detections grown by the margin, static boxes and ``--boxes-json`` boxes.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from .common import CliError

# formats whose inter frames name their reference, so that a decoder notices a lost one from the bitstream itself
FORMATS_NAMING_REFERENCE = ("rcb1",)


def read_boxes_json(path: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """``{"<frame file name or index>": [[x1, y1, x2, y2], ...]}`` (pixels) -> key -> boxes; CliError when the file
    cannot be read or a value is not a list of boxes (the ROI rule's own check: finite, x2 >= x1, y2 >= y1)."""
    from roi_codec_ros.detector import RoiMaskConfig

    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CliError(f"cannot read boxes file {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CliError(f'{path}: expected an object {{"<frame file name or index>": [[x1, y1, x2, y2], ...]}}, '
                       f"got {type(data).__name__}")
    out = {}
    for key, boxes in data.items():
        if not isinstance(boxes, list) or not all(
                isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                            for v in b) for b in boxes):
            raise CliError(f"{path}: frame {key!r}: expected a list of [x1, y1, x2, y2] pixel boxes, got {boxes!r}")
        try:
            out[key] = list(RoiMaskConfig(static_boxes=[tuple(b) for b in boxes]).static_boxes)
        except ValueError as exc:
            raise CliError(f"{path}: frame {key!r}: {exc}") from exc
    return out


class FrameBoxes:
    """The ``--boxes-json`` boxes of a frame: those under its name (a folder's file name; a video's or bag's
    zero-padded index) and those under its 0-based index in the stream (a whole number)."""

    def __init__(self, boxes: dict[str, list]):
        self.boxes = boxes
        self.by_index: dict[int, list[str]] = {}
        for key in boxes:
            if key.strip().isdigit():
                self.by_index.setdefault(int(key), []).append(key)
        self.used: set[str] = set()

    def __call__(self, index: int, name: str) -> list:
        keys = [name] if name in self.boxes else []
        keys += [k for k in self.by_index.get(index, ()) if k not in keys]
        self.used.update(keys)
        return [b for k in keys for b in self.boxes[k]]

    def unused(self) -> list[str]:
        return [k for k in self.boxes if k not in self.used]


def _finite(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def jsonable(value):
    """``value`` with NaN / inf floats as None (strict JSON: an ROI PSNR without ROI, an unlimited budget)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    return value


class StreamCheck:
    """Decodes the stream's messages as they are coded (``__call__`` per frame, after ``FrameEncoder.encode``) and
    adds what happened to each frame's record (module doc).  ``drop_every`` N >= 2: the N-th, 2N-th, ... message
    (1-based) never reaches the lossy decoder; 0: one decoder, no loss."""

    def __init__(self, engine, drop_every: int = 0):
        from roi_codec_ros.nodes.decoder_core import StreamReceiver

        self.drop_every = int(drop_every)
        self.loss_free = StreamReceiver(engine.stream_decoder())
        self.lossy = StreamReceiver(engine.stream_decoder()) if self.drop_every else None
        self.signal_gaps = engine.format not in FORMATS_NAMING_REFERENCE
        self.messages = 0
        self._gap = False  # a message was dropped since the lossy decoder's last one

    def __call__(self, record: dict, rgb: np.ndarray, result) -> None:
        from roi_codec_ros.evaluation.metrics import boxes_to_mask, frame_quality, psnr

        boxes = np.array([[b.x1, b.y1, b.x2, b.y2] for b in result.boxes], np.float64).reshape(-1, 4)
        roi = boxes_to_mask(boxes, rgb.shape[:2])
        frame = result.frame
        record.update(bpp=8.0 * record["bytes"] / (rgb.shape[0] * rgb.shape[1]), boxes=len(boxes),
                      roi_fraction=float(roi.mean()), dropped=False, outcome="skipped" if frame is None else "",
                      output=False, psnr=None, psnr_roi=None, psnr_bg=None, decode_ms=None, delta_psnr=None,
                      identical=None, error=None)
        if frame is None:  # skipped by the rate controller: no message
            return
        self.messages += 1
        start = time.perf_counter()
        clean = self.loss_free.process(frame.data, frame.format, frame.keyframe, False, record["t"])
        decode_ms = (time.perf_counter() - start) * 1e3
        if clean.kind == "decoded":
            quality = frame_quality(rgb, clean.image, roi, with_msssim=False)
            record.update(psnr=quality.psnr, psnr_roi=quality.psnr_roi, psnr_bg=quality.psnr_bg, decode_ms=decode_ms)
        if self.lossy is None:
            record.update(outcome=clean.kind, output=clean.kind == "decoded", error=clean.error or None)
            return
        if clean.kind != "decoded":
            record["loss_free_error"] = f"{clean.kind}: {clean.error}"
        if self.messages % self.drop_every == 0:
            record.update(dropped=True, outcome="dropped")
            self._gap = True
            return
        got = self.lossy.process(frame.data, frame.format, frame.keyframe, self._gap and self.signal_gaps, record["t"])
        self._gap = False
        record.update(outcome=got.kind, output=got.kind == "decoded", error=got.error or None)
        if got.kind == "decoded" and clean.kind == "decoded":
            record.update(delta_psnr=psnr(rgb, got.image) - quality.psnr,
                          identical=bool(np.array_equal(got.image, clean.image)))


def _mean(values, how=np.mean) -> float | None:
    """``how`` of the finite values (None for none: an ROI PSNR without ROI, the decode time of a lost frame)."""
    values = [v for v in values if _finite(v) is not None]
    return float(how(values)) if values else None


def _median(values) -> float | None:
    return _mean(values, np.median)


def recoveries(records: list[dict]) -> list[dict]:
    """Per dropped message: its frame, the first frame the lossy decoder output after it, and the frames between
    (``frames`` = first output - dropped; None when the stream ended first: ``frames_to_end`` then).  ``lost_again``:
    a keyframe dropped before that output, the one that would have ended the outage (the outage goes on: the
    recovery that counts is that drop's; a P-frame dropped while the decoder waits changes nothing)."""
    out = []
    for i, r in enumerate(records):
        if not r["dropped"]:
            continue
        first = next((j for j in range(i + 1, len(records)) if records[j]["output"]), None)
        again = next((j for j in range(i + 1, len(records) if first is None else first)
                      if records[j]["dropped"] and records[j]["keyframe"]), None)
        out.append({"frame": r["index"], "first_output": None if first is None else records[first]["index"],
                    "frames": None if first is None else first - i, "frames_to_end": len(records) - i,
                    "lost_again": None if again is None else records[again]["index"]})
    return out


def longest_outage(records: list[dict]) -> int:
    """The most frames in a row that the (lossy) decoder did not output."""
    longest = run = 0
    for r in records:
        run = 0 if r["output"] else run + 1
        longest = max(longest, run)
    return longest


def stream_summary(records: list[dict], keyframe_interval: int, fps: float, drop_every: int = 0) -> dict:
    """Totals and means of a stream's frame records (``StreamCheck``): sizes, PSNR of the decoded (loss-free)
    frames, I/P times, and with loss the lossy decoder's counts, its largest |delta PSNR| and the recovery after each
    drop.  Means are per frame (``mean_bpp`` counts a skipped frame as 0 bits); ROI PSNR over frames with an ROI."""
    coded = [r for r in records if not r["skip"]]
    decoded = [r for r in coded if r["psnr"] is not None]
    by_type = {"i": [r for r in coded if r["keyframe"]], "p": [r for r in coded if not r["keyframe"]]}
    t = [r["t"] for r in records]
    duration = (t[-1] - t[0]) * len(t) / (len(t) - 1) if len(t) > 1 and t[-1] > t[0] else len(t) / fps
    total = sum(r["bytes"] for r in records)
    out = {"frames": len(records), "coded": len(coded), "skipped": len(records) - len(coded),
           "keyframes": len(by_type["i"]), "p_frames": len(by_type["p"]), "total_bytes": total,
           "mean_bpp": _mean([r["bpp"] for r in records]), "mean_kbps": 8.0 * total / duration / 1000.0,
           "duration_s": duration}
    for key in ("psnr", "psnr_roi", "psnr_bg"):
        out[f"mean_{key}"] = _mean([r[key] for r in decoded])
    out["frames_with_roi"] = sum(1 for r in records if r["roi_fraction"] > 0)
    out["mean_roi_fraction"] = _mean([r["roi_fraction"] for r in records])
    for kind, frames in by_type.items():
        for what in ("encode_ms", "decode_ms"):
            out[f"mean_{what}_{kind}"] = _mean([r[what] for r in frames])
            out[f"median_{what}_{kind}"] = _median([r[what] for r in frames])
    output = [r for r in records if r["output"]]
    out.update(drop_every=drop_every or None, dropped=sum(1 for r in records if r["dropped"]),
               not_decoded=sum(1 for r in coded if not r["dropped"] and not r["output"]), decoded=len(output))
    if not drop_every:
        return out
    deltas = [abs(r["delta_psnr"]) for r in output if r["delta_psnr"] is not None]
    recovery = recoveries(records)
    last = [d for d in recovery if d["lost_again"] is None]  # drops whose recovery was not cut short by another
    recovered = [d["frames"] for d in last if d["frames"] is not None]
    within = None  # keyframe interval 0: no keyframe to recover at
    if keyframe_interval > 0:  # a drop the stream ended after counts when the stream ended within the interval
        within = all((d["frames"] if d["frames"] is not None else d["frames_to_end"]) <= keyframe_interval
                     for d in last)
    out.update(
        loss_free_failures=sum(1 for r in coded if "loss_free_error" in r),
        mean_output_psnr=_mean([r["psnr"] + r["delta_psnr"] for r in output if r["delta_psnr"] is not None]),
        max_abs_delta_psnr=max(deltas) if deltas else None,
        identical_to_loss_free=sum(1 for r in output if r["identical"]),
        recovery=recovery, max_recovery_frames=max(recovered) if recovered else None,
        unrecovered_at_end=sum(1 for d in last if d["frames"] is None),
        recovered_within_keyframe_interval=within, longest_outage_frames=longest_outage(records),
    )
    return out


def _f(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def format_stream_summary(s: dict) -> str:
    lines = [
        f"{s['frames']} frames ({s['keyframes']} I, {s['p_frames']} P, {s['skipped']} skipped): "
        f"{s['total_bytes']} bytes, {_f(s['mean_bpp'], '.4f')} bpp, {s['mean_kbps']:.1f} kbps; "
        f"PSNR {_f(s['mean_psnr'])} dB (ROI {_f(s['mean_psnr_roi'])}, background {_f(s['mean_psnr_bg'])}; "
        f"ROI in {s['frames_with_roi']} frames)",
        f"encode ms I {_f(s['mean_encode_ms_i'], '.1f')} / P {_f(s['mean_encode_ms_p'], '.1f')} (median "
        f"{_f(s['median_encode_ms_i'], '.1f')} / {_f(s['median_encode_ms_p'], '.1f')}), decode ms I "
        f"{_f(s['mean_decode_ms_i'], '.1f')} / P {_f(s['mean_decode_ms_p'], '.1f')} (median "
        f"{_f(s['median_decode_ms_i'], '.1f')} / {_f(s['median_decode_ms_p'], '.1f')})",
    ]
    if s["drop_every"]:
        recovery = ", ".join(f"(lost again at {d['lost_again']})" if d["lost_again"] is not None else
                             str(d["frames"]) if d["frames"] is not None else f"(end after {d['frames_to_end']})"
                             for d in s["recovery"])
        within = {None: "", True: " (within one keyframe interval)", False: " (NOT within one keyframe interval)"}
        lines.append(
            f"drop every {s['drop_every']}: {s['dropped']} dropped, {s['not_decoded']} not decoded, "
            f"{s['decoded']} decoded (PSNR {_f(s['mean_output_psnr'])} dB); max |dPSNR| vs loss-free "
            f"{_f(s['max_abs_delta_psnr'], '.4f')} dB, {s['identical_to_loss_free']} of {s['decoded']} identical; "
            f"frames to recover: {recovery or 'none'}{within[s['recovered_within_keyframe_interval']]}, "
            f"longest outage {s['longest_outage_frames']} frames")
    return "\n".join(lines)
