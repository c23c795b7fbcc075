"""Run codec settings over frames and measure each one the same way.

    frames ──> ROI boxes (labels | detector | none) ──┬─> codec.encode(image, boxes, features) -> bytes
               (+ detector features, reference dets)   │      codec.decode(bytes) -> image
                                                       └─> metrics: bytes, bpp, bitrate, PSNR / MS-SSIM
                                                           whole / ROI / background, PSNR per ROI class,
                                                           latency, task P/R

Per frame and setting one ``FrameRecord``; ``summarize`` averages them per setting (mean of per-frame values;
ROI means over frames that have an ROI, per-class means over frames that have the class) and pools the
task-metric counts.  Per-class PSNR is over the union of that class's ROI boxes (the boxes the codec got:
detections grown by the margin; label boxes; static boxes are class "static").
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from roi_codec_ros.detector.roi_mask import RoiMaskConfig, select_detections, select_roi

from .baselines import Codec
from .metrics import FrameQuality, bitrate_bps, bits_per_pixel, boxes_to_mask, check_image, frame_quality, psnr_regions
from .task import MatchCounts, match_detections

ROI_SOURCES = ("frame", "detector", "none")
STATIC_CLASS = "static"  # class of the ROI config's static boxes (as the encoder node's RoiBox class_name)


@dataclass
class Frame:
    """One input frame: HxWx3 uint8 RGB ``image``; ``boxes`` (K,4) xyxy ROI boxes when the source has labels,
    ``box_classes`` their class names (or ids as text) when known."""

    name: str
    image: np.ndarray
    boxes: np.ndarray | None = None
    box_classes: list[str] | None = None
    stamp_ns: int = 0
    frame_id: str = ""
    source_encoding: str = "rgb8"


@dataclass
class FrameRecord(FrameQuality):
    """Measurements of one codec setting on one frame: its quality (the inherited fields) plus size and time."""

    frame: str
    family: str
    setting: str
    height: int
    width: int
    num_bytes: int
    bpp: float
    bitrate_bps: float
    encode_ms: float
    decode_ms: float
    num_roi_boxes: int
    task_tp: int | None = None
    task_fp: int | None = None
    task_fn: int | None = None
    params: dict = field(default_factory=dict)
    psnr_class: dict[str, float] = field(default_factory=dict)  # class -> PSNR inside its boxes (classes present)


@dataclass
class FrameContext:
    """What every codec gets for one frame, computed once."""

    boxes: np.ndarray
    features: list | None
    reference: object | None  # Detections of the original frame (task metric), or None
    box_classes: list[str] = field(default_factory=list)  # class of each box (empty: unknown)
    roi_mask: np.ndarray | None = None  # the mask to code with when it is not the boxes' 0/1 union (class weights)

    def class_masks(self, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """class -> HxW bool union of its boxes, for every class present (sorted by name)."""
        if len(self.box_classes) != len(self.boxes):
            return {}
        classes = np.asarray(self.box_classes, dtype=object)
        return {c: boxes_to_mask(self.boxes[classes == c], shape) for c in sorted(set(self.box_classes))}


class RoiSource:
    """Turns a frame into ROI boxes, detector features and reference detections.

    mode "frame": the frame's own boxes (labels); "detector": the detector's boxes filtered by ``roi_config``
    (``RoiMaskConfig``: classes, confidence, margin, class weights); "none": no ROI. With a detector, its features go
    to our codec and its detections on the original frame are the task-metric reference, whatever the mode.  With
    class weights, codecs that take a mask get the weighted mask (``RoiSelection.mask``) instead of the boxes' union.
    """

    def __init__(self, mode: str = "none", detector=None, roi_config=None):
        if mode not in ROI_SOURCES:
            raise ValueError(f"ROI source must be one of {ROI_SOURCES}, got {mode!r}")
        if mode == "detector" and detector is None:
            raise ValueError("ROI source 'detector' needs a detector (DetectorAdapter)")
        self.mode, self.detector = mode, detector
        self.roi_config = RoiMaskConfig() if detector is not None and roi_config is None else roi_config

    def task_filter(self, detections):
        """Detections of the ROI classes at or above the ROI confidence, unchanged boxes (the task-metric objects)."""
        return select_detections(detections, self.roi_config)

    def __call__(self, frame: Frame) -> FrameContext:
        features = reference = roi_mask = None
        shape = frame.image.shape[:2]
        boxes, classes = np.zeros((0, 4)), []
        if self.detector is not None:
            result = self.detector(frame.image)
            features = result.features
            selection = select_roi(result.detections, shape, self.roi_config)
            reference = selection.detections
            if self.mode == "detector":
                boxes = selection.boxes
                chosen = selection.detections
                classes = [chosen.label(i) for i in range(len(chosen))] + [STATIC_CLASS] * len(selection.static_boxes)
                if self.roi_config.class_weights and not selection.empty:
                    roi_mask = selection.mask()
        if self.mode == "frame" and frame.boxes is not None:
            boxes = np.asarray(frame.boxes, np.float64).reshape(-1, 4)
            classes = list(frame.box_classes or [])
        return FrameContext(boxes=boxes, features=features, reference=reference, box_classes=classes, roi_mask=roi_mask)


def _task_counts(roi_source: RoiSource, context: FrameContext, decoded: np.ndarray) -> MatchCounts:
    found = roi_source.task_filter(roi_source.detector(decoded).detections)
    ref = context.reference
    return match_detections(ref.boxes, ref.class_ids, found.boxes, found.class_ids, found.scores)


def evaluate(
    frames: Iterable[Frame],
    codecs: Sequence[Codec],
    fps: float = 10.0,
    roi_source: RoiSource | None = None,
    task_metric: bool = False,
    with_msssim: bool = True,
    on_result: Callable[[Frame, Codec, bytes, np.ndarray, FrameRecord, np.ndarray], None] | None = None,
    total: int | None = None,
    progress: bool = True,
) -> list[FrameRecord]:
    """Encode/decode every frame with every codec setting and measure it; returns one record per (frame, setting).

    ``on_result(frame, codec, data, decoded, record, boxes)`` is called after each decode (e.g. to write a bag);
    ``boxes`` are the (M,4) ROI boxes the codec was given.
    ``task_metric`` runs the ROI source's detector on every decoded frame (costly: one pass per setting).
    """
    if not codecs:
        raise ValueError("no codec settings to evaluate")
    roi_source = roi_source or RoiSource("none")
    if task_metric and roi_source.detector is None:
        raise ValueError("the task metric needs a detector")
    records: list[FrameRecord] = []
    if total is None and hasattr(frames, "__len__"):
        total = len(frames)  # type: ignore[arg-type]
    # one step per (frame, setting): a frame can take a minute when many settings run the task metric
    bar = tqdm(total=None if total is None else total * len(codecs), unit="code", desc="evaluate",
               disable=not progress, smoothing=0.05)
    for frame in frames:
        image = check_image(frame.image, f"frame {frame.name}")
        height, width = image.shape[:2]
        context = roi_source(frame)
        roi_mask = boxes_to_mask(context.boxes, (height, width))
        class_masks = context.class_masks((height, width))
        for codec in codecs:
            # a weighted mask only for codecs that take one (the others code the boxes as before)
            takes_mask = context.roi_mask is not None and getattr(codec, "takes_roi_mask", False)
            mask_arg = {"roi_mask": context.roi_mask} if takes_mask else {}
            start = time.perf_counter()
            data = codec.encode(image, context.boxes, context.features, **mask_arg)
            encoded = time.perf_counter()
            decoded = codec.decode(data)
            decode_ms = (time.perf_counter() - encoded) * 1e3
            if decoded.shape != image.shape:
                raise RuntimeError(f"{codec.label} decoded {decoded.shape} for a {image.shape} frame")
            quality = frame_quality(image, decoded, roi_mask, with_msssim=with_msssim)
            record = FrameRecord(
                frame=frame.name,
                family=codec.family,
                setting=codec.setting,
                height=height,
                width=width,
                num_bytes=len(data),
                bpp=bits_per_pixel(len(data), height, width),
                bitrate_bps=bitrate_bps(len(data), fps),
                encode_ms=(encoded - start) * 1e3,
                decode_ms=decode_ms,
                num_roi_boxes=len(context.boxes),
                params=codec.params(),
                psnr_class=psnr_regions(image, decoded, class_masks),
                **quality.as_dict(),
            )
            if task_metric:
                counts = _task_counts(roi_source, context, decoded)
                record.task_tp, record.task_fp, record.task_fn = counts.tp, counts.fp, counts.fn
            records.append(record)
            if on_result is not None:
                on_result(frame, codec, data, decoded, record, context.boxes)
            bar.set_postfix_str(f"{frame.name[-20:]} {codec.label}", refresh=False)
            bar.update(1)
    bar.close()
    return records


MEAN_FIELDS = (
    "num_bytes",
    "bpp",
    "bitrate_bps",
    "encode_ms",
    "decode_ms",
    "psnr",
    "psnr_roi",
    "psnr_bg",
    "msssim",
    "msssim_roi",
    "msssim_bg",
    "roi_fraction",
)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarize(records: Sequence[FrameRecord]) -> list[dict]:
    """One row per (family, setting), in first-seen order: means of MEAN_FIELDS, p95 latencies, task P/R."""
    groups: dict[tuple[str, str], list[FrameRecord]] = {}
    for rec in records:
        groups.setdefault((rec.family, rec.setting), []).append(rec)
    rows = []
    for (family, setting), recs in groups.items():
        row = {"family": family, "setting": setting, "frames": len(recs), "params": recs[0].params}
        for name in MEAN_FIELDS:
            row[name] = _nanmean([getattr(r, name) for r in recs])
        row["frames_with_roi"] = sum(1 for r in recs if not math.isnan(r.psnr_roi))
        classes = sorted({c for r in recs for c in r.psnr_class})
        row["psnr_class"] = {c: _nanmean([r.psnr_class.get(c, math.nan) for r in recs]) for c in classes}
        # the frames the mean is over (a class whose boxes covered no pixel has no PSNR in that frame)
        row["class_frames"] = {c: sum(1 for r in recs if not math.isnan(r.psnr_class.get(c, math.nan))) for c in classes}
        row["encode_ms_p95"] = float(np.percentile([r.encode_ms for r in recs], 95))
        row["decode_ms_p95"] = float(np.percentile([r.decode_ms for r in recs], 95))
        if recs[0].task_tp is not None:
            counts = sum((MatchCounts(r.task_tp, r.task_fp, r.task_fn) for r in recs), MatchCounts())
            row.update(task_tp=counts.tp, task_fp=counts.fp, task_fn=counts.fn)
            row.update(task_precision=counts.precision, task_recall=counts.recall)
        rows.append(row)
    return rows


def records_as_dicts(records: Sequence[FrameRecord]) -> list[dict]:
    return [asdict(r) for r in records]
