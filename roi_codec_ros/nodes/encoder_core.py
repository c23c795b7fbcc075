"""What encoder_node does per frame, without ROS: detector -> ROI selection and mask -> the engine's stream encoder.

    RGB frame --DetectorAdapter (once: features + detections; skipped with detector 'none')
              --detector.roi_mask.select_roi (classes, confidence, margin, static boxes, class weights)
                --> ROI boxes and mask (per-class weights: a fractional mask = intermediate ROI quality)
              --RateController.plan (target_kbps > 0: rate / ROI weight / skip for this frame; 0: `rate` as set)
              --StreamEncoder.encode(image, roi_mask, boxes, features, rate, roi_weight) --> EncodeResult
                (engine 'neural': RoiCodec, every frame a keyframe; 'x264'/'x265'/...: roi_codec_ros.engine)
              --RateController.update (the coded size)

The ROI rule itself lives in the detector package (``select_roi``), used here as is; the rate controller is
``roi_codec_ros.rate_control`` (the one implementation; the CLI's ``encode-stream`` runs this same class).  ``EncoderSettings`` holds
every live knob; a node builds a new one from its parameters, ``check`` rejects it with a reason, and the worker
reads the current object once per frame (so a change applies to the next frame).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.codec.bitstream import gain_to_code
from roi_codec_ros.detector import WEIGHTS_ENV, DetectorAdapter, DetectorWeightsError, Detections, RoiMaskConfig, unknown_classes
from roi_codec_ros.detector.roi_mask import class_weight_keys, select_roi
from roi_codec_ros.engine import CodedFrame, Engine, check_keyframe_interval
from roi_codec_ros.engine.neural import NeuralEngine, NeuralStreamEncoder
from roi_codec_ros.rate_control import Decision, RateController, RateControllerConfig, check_kbps

# detector 'weights' values that are not paths
DETECTOR_DEFAULT = "default"  # $ROI_CODEC_DETECTOR_WEIGHTS (a deployment setting); an error when it is not set
DETECTOR_NONE = "none"  # no detector: static boxes only, zero-filled features
DETECTOR_RANDOM = "random"  # untrained yolov8n (tests only: features of the right shape, meaningless boxes)
STATIC_CLASS_ID = -1  # class id of static (configured) boxes, as roi_codec_ros/RoiBox.STATIC_CLASS_ID
STATIC_CLASS_NAME = "static"


ROI_WEIGHT_LIMIT_ENGINE = 0.0  # rate_control.roi_weight_limit: the engine's highest ROI weight
ROI_WEIGHT_LIMIT_NEVER = -1.0  # rate_control.roi_weight_limit: never move the ROI weight (skip instead)
# rate_control.mode: 'auto' = the engine's own rate control where it has one (x264/x265: ABR + 1-s VBV; it tracked
# better than ours, docs/rate_control.md), else RateController; 'controller' = RateController for every engine
RATE_CONTROL_MODES = ("auto", "controller")


@dataclass(frozen=True)
class RateControlSettings:
    """The live rate-control knobs (``target_kbps``, ``rate_control.*`` parameters); see docs/rate_control.md."""

    target_kbps: float = 0.0  # 0 = off: the frame is coded at `rate`
    buffer_ms: float = 500.0  # leaky bucket as link time
    max_frame_bytes: int = 0  # hard cap per frame (0 = none)
    horizon_s: float = 0.5  # the buffer error is repaid over this time
    roi_weight_limit: float = ROI_WEIGHT_LIMIT_ENGINE  # 0 = the engine's highest weight, -1 = never move it
    mode: str = "auto"  # RATE_CONTROL_MODES; fixed when the FrameEncoder is built (read-only parameter)

    def limit_for(self, engine: Engine) -> float | None:
        if self.roi_weight_limit == ROI_WEIGHT_LIMIT_NEVER:
            return None
        if self.roi_weight_limit == ROI_WEIGHT_LIMIT_ENGINE:
            return float(engine.roi_weight_range[1])
        return float(self.roi_weight_limit)

    def config(self, engine: Engine, fps_hint: float = 10.0) -> RateControllerConfig:
        """The controller config for this engine (ValueError with the field and why for bad values)."""
        return RateControllerConfig(target_kbps=check_kbps(self.target_kbps, "target_kbps", allow_zero=True),
                                    fps_hint=fps_hint, buffer_ms=self.buffer_ms, max_frame_bytes=self.max_frame_bytes,
                                    rate_range=tuple(engine.rate_range), roi_weight_limit=self.limit_for(engine),
                                    horizon_s=self.horizon_s)

    def check(self, engine: Engine) -> None:
        if self.mode not in RATE_CONTROL_MODES:
            raise ValueError(f"rate_control.mode must be one of {', '.join(RATE_CONTROL_MODES)}, got {self.mode!r}")
        lo, hi = engine.roi_weight_range
        if self.roi_weight_limit not in (ROI_WEIGHT_LIMIT_ENGINE, ROI_WEIGHT_LIMIT_NEVER) and not (
                lo <= self.roi_weight_limit <= hi):
            raise ValueError(f"rate_control.roi_weight_limit must be 0 (the engine's {hi:g}), -1 (never) or in "
                             f"[{lo:g}, {hi:g}], got {self.roi_weight_limit}")
        self.config(engine)

    def changes(self, engine: Engine, other: "RateControlSettings") -> dict:
        """``RateController.reconfigure`` arguments that turn ``other`` into these settings."""
        out = {}
        for name in ("target_kbps", "buffer_ms", "max_frame_bytes", "horizon_s"):
            if getattr(self, name) != getattr(other, name):
                out[name] = getattr(self, name)
        if self.limit_for(engine) != other.limit_for(engine):
            out["roi_weight_limit"] = self.limit_for(engine)
        return out


@dataclass(frozen=True)
class EncoderSettings:
    """The knobs that may change between frames (ROS parameters of encoder_node)."""

    rate: float = 0.5
    roi_weight: float = 8.0
    roi: RoiMaskConfig = field(default_factory=RoiMaskConfig)
    max_rate: float = 0.0  # Hz; 0 = encode every frame the worker can take
    publish_detections: bool = False
    statistics_window_s: float = 2.0
    keyframe_interval: int = 10  # frames; 0 = keyframes only at the start and on request
    keyframe_roi_weight: float = 0.0  # ROI weight of keyframes (1 = uniform "HQ I-frames"); 0 = roi_weight
    keyframe_request_min_interval_s: float = 0.25  # at most one requested keyframe per this many seconds
    rate_control: RateControlSettings = field(default_factory=RateControlSettings)
    roi_gain: float = 1.0  # explicit latent scaling in the ROI (neural engine; 1 = off)
    flow_prediction: bool = False  # P-frames also predicted from the warped reference picture (neural engine)

    def check(self, engine: Engine | RoiCodec, detector: DetectorAdapter | None) -> None:
        """Raise ValueError with a reason when these settings cannot be used with this engine/detector."""
        as_engine(engine).check(float(self.rate), float(self.roi_weight))
        gain_to_code(self.roi_gain)  # ValueError outside [1, 8]
        if float(self.roi_gain) != 1.0 and not isinstance(as_engine(engine), NeuralEngine):
            raise ValueError(f"roi.latent_gain {self.roi_gain:g} needs the neural engine (the {as_engine(engine).name} "
                             "engine's ROI control is roi_weight); use 1.0")
        if self.flow_prediction and not isinstance(as_engine(engine), NeuralEngine):
            raise ValueError(f"p_frames.flow_prediction needs the neural engine (the {as_engine(engine).name} engine "
                             "has its own motion search); use false")
        check_keyframe_interval(self.keyframe_interval)
        if self.keyframe_roi_weight != 0.0:
            try:
                as_engine(engine).check(float(self.rate), float(self.keyframe_roi_weight))
            except ValueError as err:
                raise ValueError(f"keyframe_roi_weight (0 = roi_weight): {err}") from None
        if not self.keyframe_request_min_interval_s >= 0.0:
            raise ValueError(f"keyframe_request_min_interval_s must be >= 0, got {self.keyframe_request_min_interval_s}")
        if not self.max_rate >= 0.0:
            raise ValueError(f"max_rate must be >= 0 Hz (0 = no limit), got {self.max_rate}")
        if not self.statistics_window_s > 0.0:
            raise ValueError(f"statistics_window_s must be > 0, got {self.statistics_window_s}")
        self.rate_control.check(as_engine(engine))
        if detector is not None:
            known = f"(it knows e.g. {list(detector.names.values())[:8]})"
            unknown = unknown_classes(detector.names, self.roi.classes)
            if unknown:
                raise ValueError(f"unknown ROI classes {unknown} for this detector {known}")
            unknown = unknown_classes(detector.names, class_weight_keys(self.roi))
            if unknown:
                raise ValueError(f"unknown classes {unknown} in roi.class_weights for this detector {known}")

    def replace(self, **changes) -> "EncoderSettings":
        return dataclasses.replace(self, **changes)


@dataclass
class RoiBoxInfo:
    """One box of the frame's ROI (frame pixels, xyxy) with its class and score; static boxes: class -1."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int
    class_name: str
    score: float


def as_engine(engine: Engine | RoiCodec) -> Engine:
    """An Engine; a bare RoiCodec becomes the neural engine (what callers before the engines passed)."""
    return NeuralEngine(engine) if isinstance(engine, RoiCodec) else engine


def rd_slope(frame: CodedFrame) -> float:
    """The distortion drop per bit the frame was coded at, per pixel (what the budget's ``rd_slope`` content mode
    equalises; comparable between cameras of one engine).  Neural: the loss's beta / (h*w); x264/x265: H.264's
    mode lambda 0.85 * 2^((QP - 12) / 3) at the frame's CRF / (h*w); 0 when unknown."""
    pixels = frame.height * frame.width
    beta = frame.params.get("beta")
    if beta is not None:
        return float(beta) / pixels
    crf = frame.params.get("crf")
    if crf is not None:
        return 0.85 * 2.0 ** ((float(crf) + float(frame.params.get("frame_qp_offset") or 0.0) - 12.0) / 3.0) / pixels
    return 0.0


@dataclass
class EncodeResult:
    frame: CodedFrame | None  # data, format, keyframe, rate, roi_weight, bpp, timings_ms; None = skipped by rate control
    boxes: list[RoiBoxInfo]  # every box that shaped the ROI mask (selected detections grown by the margin, static)
    detections: Detections | None  # everything the detector returned (None without a detector)
    roi_coverage: float  # fraction of pixels inside the ROI mask (mean of the mask)
    detector_ms: float
    encode_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    decision: Decision | None = None  # the rate controller's plan for this frame (rate, roi_weight, reason, ...)
    rd_slope: float = 0.0  # rd_slope(frame); 0 for a skipped frame

    @property
    def skipped(self) -> bool:
        return self.frame is None


def detector_weights_path(weights: str) -> str:
    """The weights file for the ``detector.weights`` parameter value (not 'none'/'random').

    'default' (or '') means ``$ROI_CODEC_DETECTOR_WEIGHTS``: which detector a vehicle runs is deployment
    configuration, so without the variable the encoder refuses to start and says what to set (running silently
    without a detector would drop the ROI, the product's point).
    """
    if weights not in ("", DETECTOR_DEFAULT):
        return weights
    path = os.environ.get(WEIGHTS_ENV)
    if not path:
        raise DetectorWeightsError(
            f"no detector weights: detector.weights is '{DETECTOR_DEFAULT}' and ${WEIGHTS_ENV} is not set. Set "
            f"detector.weights (launch argument detector_weights:=/path/to/yolo.pt) or ${WEIGHTS_ENV}, or use "
            f"detector.weights:={DETECTOR_NONE} to encode without a detector (static ROI boxes only, no object prior)"
        )
    return path


def load_detector(weights: str, device: str = "cpu", imgsz: int = 640) -> DetectorAdapter | None:
    """'none' -> no detector; 'random' -> untrained yolov8n (tests); 'default' or '' -> $ROI_CODEC_DETECTOR_WEIGHTS;
    else a .pt path.  Raises DetectorWeightsError saying what to set."""
    if weights == DETECTOR_NONE:
        return None
    if weights == DETECTOR_RANDOM:
        return DetectorAdapter.random_init("yolov8n.yaml", device=device, imgsz=imgsz)
    return DetectorAdapter.from_weights(detector_weights_path(weights), device=device, imgsz=imgsz)


def roi_box_infos(detections: Detections | None, shape_hw: tuple[int, int], config: RoiMaskConfig):
    """(boxes for the message, HxW mask or None when there is no box) from the detector package's ROI rule."""
    selection = select_roi(detections, shape_hw, config)
    if selection.empty:
        return [], None
    chosen = selection.detections
    boxes = selection.boxes  # selected detections grown by the margin, then the static boxes: what the mask uses
    infos = [
        RoiBoxInfo(*map(float, boxes[i]), int(chosen.class_ids[i]), chosen.label(i), float(chosen.scores[i]))
        for i in range(len(chosen))
    ]
    infos += [RoiBoxInfo(*map(float, b), STATIC_CLASS_ID, STATIC_CLASS_NAME, 1.0) for b in boxes[len(chosen):]]
    return infos, selection.mask()


class FrameEncoder:
    """Engine stream + optional detector; ``encode`` runs the detector once and the engine once per frame."""

    def __init__(self, engine: Engine | RoiCodec, detector: DetectorAdapter | None = None, keyframe_interval: int = 10,
                 fps: float = 10.0, rate_control: RateControlSettings | None = None):
        self.engine = as_engine(engine)
        if detector is not None and self.engine.uses_features:
            want = tuple(self.engine.codec.config.feature_channels)
            got = tuple(detector.feature_channels)
            if want != got:
                raise ValueError(
                    f"detector feature channels {got} do not match the codec's {want}: use the detector the codec "
                    "was trained with"
                )
        self.detector = detector
        self.stream = self.engine.stream_encoder(keyframe_interval=keyframe_interval, fps=fps)
        # one controller per stream, off (target 0) unless asked: it keeps learning bytes vs rate either way
        self._rc_settings = rate_control or RateControlSettings()
        self._rc_settings.check(self.engine)
        # the engine's own rate control (x264/x265 ABR) in 'auto' mode; RateController then stays off (rate as set)
        self.native = self._rc_settings.mode == "auto" and self.stream.native_rate_control
        self._native_kbps = 0.0  # the target the stream's own rate control runs at
        config = self._rc_settings.config(self.engine, fps_hint=fps)
        self.rate_controller = RateController(replace(config, target_kbps=0.0) if self.native else config)
        if self.native:
            self._apply_native_target(self._rc_settings.target_kbps)
        self._rc_keyint: int | None = None
        self._last_now_s: float | None = None
        self.rate_control_state: dict = self._state()  # after the last frame (for statistics)

    @property
    def intra_only(self) -> bool:
        return self.stream.keyframe_interval == 1  # every frame a keyframe (any engine)

    def _state(self) -> dict:
        """``RateController.state()``; with the engine's own rate control: its target, reason 'native', no reach
        (our model does not predict an ABR stream's size, so the budget gets no caps from this camera)."""
        state = self.rate_controller.state()
        if self.native:
            state.update(target_kbps=self._native_kbps, achieved_kbps=self.rate_controller.meter.kbps(),
                         last_reason="native")
            state.pop("kbps_at_rate_min", None)
            state.pop("kbps_at_rate_max", None)
        return state

    def _apply_native_target(self, kbps: float) -> None:
        """A new target reaches the stream at its next scheduled keyframe (an ABR change reopens the coder, so
        applying it at once would add an IDR per budget re-split); at once when rate control starts or stops
        or when there are no scheduled keyframes (keyframe_interval 0)."""
        if kbps == self._native_kbps:
            return
        if self._native_kbps == 0 or kbps == 0 or self.stream.next_is_keyframe or self.stream.keyframe_interval == 0:
            self.stream.set_target_kbps(kbps)
            self._native_kbps = kbps

    def apply_rate_control(self, settings: EncoderSettings) -> None:
        """target_kbps / rate_control.* / keyframe_interval into the controller (``encode`` calls it every frame,
        so a live change applies to the next frame); ValueError for values the controller refuses."""
        if self.native:
            self._apply_native_target(settings.rate_control.target_kbps)
            settings = replace(settings, rate_control=replace(settings.rate_control, target_kbps=0.0))
            if self.rate_controller.counters["frames"] == 0:
                self.rate_control_state = self._state()
        changes = settings.rate_control.changes(self.engine, self._rc_settings)
        keyint = None if self.intra_only or settings.keyframe_interval <= 0 else int(settings.keyframe_interval)
        if changes:
            self.rate_controller.reconfigure(**changes)
            self._rc_settings = settings.rate_control
        if keyint != self._rc_keyint:
            self.rate_controller.set_keyframe_interval(keyint)
            self._rc_keyint = keyint
        if changes and self.rate_controller.counters["frames"] == 0:
            self.rate_control_state = self._state()

    def encode(self, image: np.ndarray, settings: EncoderSettings, now_s: float | None = None) -> EncodeResult:
        """Detector, rate controller, engine.  ``now_s``: the frame's time in seconds for the controller's
        leaky bucket (the node: when it received the frame; the CLI: the frame's time in the video); a time
        before the previous frame's is taken as the previous one.  A frame the controller skips (its last resort)
        comes back with ``frame=None``."""
        now_s = time.monotonic() if now_s is None else float(now_s)
        if self._last_now_s is not None and now_s < self._last_now_s:
            now_s = self._last_now_s
        self._last_now_s = now_s
        h, w = image.shape[:2]
        features, detections, detector_ms = None, None, 0.0
        if self.detector is not None:
            result = self.detector(image)
            features, detections, detector_ms = result.features, result.detections, result.latency_ms
        boxes, mask = roi_box_infos(detections, (h, w), settings.roi)
        if settings.keyframe_interval != self.stream.keyframe_interval:
            self.stream.set_keyframe_interval(settings.keyframe_interval)
        self.apply_rate_control(settings)
        coverage = float(np.clip(mask.mean(), 0.0, 1.0)) if mask is not None else 0.0
        rc = self.rate_controller
        frame_type = "I" if self.stream.next_is_keyframe else "P"
        # a planned keyframe asks the controller for keyframe_roi_weight, so it sizes the frame at that weight and may
        # still move it as a last resort (the stream's own keyframe_roi_weight stays None: it would override that)
        roi_weight = settings.keyframe_roi_weight if frame_type == "I" and settings.keyframe_roi_weight else settings.roi_weight
        decision = rc.plan(h * w, coverage, frame_type, now_s, roi_weight=roi_weight, manual_rate=settings.rate)
        if decision.skip:
            rc.update(decision, 0)
            self.rate_control_state = self._state()
            return EncodeResult(frame=None, boxes=boxes, detections=detections, roi_coverage=coverage,
                                detector_ms=float(detector_ms), encode_ms=0.0, decision=decision)
        box_array = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], np.float64).reshape(-1, 4)
        if isinstance(self.stream, NeuralStreamEncoder):
            self.stream.roi_gain = settings.roi_gain  # applies to this frame
            self.stream.flow_prediction = settings.flow_prediction
        start = time.perf_counter()
        frame = self.stream.encode(image, roi_mask=mask, boxes=box_array, features=features if self.engine.uses_features else None,
                                   rate=decision.rate, roi_weight=decision.roi_weight)
        encode_ms = (time.perf_counter() - start) * 1e3
        rc.update(decision, len(frame.data), frame_type="I" if frame.keyframe else "P")
        self.rate_control_state = self._state()
        return EncodeResult(
            frame=frame,
            boxes=boxes,
            detections=detections,
            roi_coverage=coverage,
            detector_ms=float(detector_ms),
            encode_ms=encode_ms,
            timings_ms=dict(frame.timings_ms),
            decision=decision,
            rd_slope=rd_slope(frame),
        )
