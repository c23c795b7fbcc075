"""Closed-loop rate control: a kbps target in, the codec's ``rate`` (and as a last resort ROI weight) per frame out.

Per frame, in the order a video encoder runs::

    d = rc.plan(frame_pixels=h*w, roi_coverage=mask.mean(), frame_type="I", now_s=stamp, roi_weight=alpha)
    if not d.skip:
        frame = codec.encode(rgb, roi_mask=mask, rate=d.rate, roi_weight=d.roi_weight)
    rc.update(d, 0 if d.skip else len(frame.data))

The controller is a leaky bucket (VBV-like) drained at the target rate.  Its fullness is steered to
``target_fullness`` of ``buffer_ms`` worth of bytes: each frame's budget is the mean frame size at the target plus
a correction that repays the buffer's error over ``horizon_s``.  The frame's rate is read off an online model of
ln(bytes/pixel) vs rate (``model.BitsModel``), one per frame type and size class.

I- and P-frames (frame type is an input of every ``plan``): the budget of the rest of the current GOP (plus whole
GOPs up to ``horizon_s``) is planned at one rate over the frames it will hold, an I-frame model and a P-frame model
each predicting its frames (TM5-like GOP allocation, on a horizon that always ends just before a keyframe, where
the buffer's saw-tooth is at its bottom).  So a keyframe costs what its model predicts at the stream's rate, the
P-frames of its GOP pay it back, and the steering level is lowered so that the next keyframe fits the buffer.  The
GOP length comes from ``keyframe_interval`` (the stream encoder's own setting) or from the observed spacing; an
on-demand keyframe simply starts a new GOP.  Every frame must also fit the free buffer and ``max_frame_bytes``
(with a margin of ``safety_sigma`` prediction errors); a keyframe that would not is coded at a lower rate.  When
even the lowest rate exceeds the budget, the ROI weight is moved toward ``roi_weight_limit`` (the direction that
saves bytes is codec specific: for the shipped model a higher weight is smaller, measured in
docs/rate_control.md); a frame is skipped only if it would still overflow the buffer.  Both are counted.

No ROS, no torch: the encoder node, the CLI and the evaluation all drive this one class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from .meter import WindowMeter
from .model import MODEL_KINDS, BitsModel, ModelPrior
from .schedule import check_kbps

_RATE_GRID = 513  # resolution of the model inversion; finer than the codec's 16-bit rate code needs


class FrameType(str, Enum):
    I = "I"  # intra / keyframe
    P = "P"  # predicted from the previous frame

    @classmethod
    def parse(cls, value) -> "FrameType":
        if isinstance(value, FrameType):
            return value
        text = str(value).strip().upper()
        aliases = {"I": cls.I, "KEY": cls.I, "INTRA": cls.I, "P": cls.P, "INTER": cls.P}
        if text not in aliases:
            raise ValueError(f"frame_type must be 'I' or 'P', got {value!r}")
        return aliases[text]


def _finite(value, what: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{what} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{what} must be <= {hi}, got {v}")
    return v


@dataclass(frozen=True)
class RateControllerConfig:
    """Every tunable of the controller (ROS parameters ``rate_control.*`` map 1:1 onto these).

    target_kbps: 0 = off (``plan`` returns the manual rate; the model and meter keep running).
    fps_hint: frame rate assumed until frame stamps say otherwise.
    buffer_ms: leaky-bucket size as link time; bounds how far any window can overshoot and how big a keyframe may
        be (>= 2x the expected I-frame's share of a second for P-frame streams).
    max_frame_bytes: hard cap per frame (0 = none), e.g. a transport's message limit.
    rate_range: the codec's rate knob range (``codec.rate_range``); nothing else about the codec is assumed.
    roi_weight_limit: where the ROI weight may be moved when even the lowest rate is too big (None = never).
    target_fullness: share of the buffer the controller steers to (room for overshoot below, credit above).
    horizon_s: the buffer error is repaid over this time (shorter = tighter windows, more rate flicker).
    safety_sigma: frames must fit the free buffer with this many prediction standard deviations to spare.
    keyframe_interval: hint for P-frame streams (frames between I-frames); None = learn from the stream.
    p_frame_ratio_prior: a P-frame's size relative to an I-frame at the same rate, until P-frames are seen.
    model: 'loglinear' or 'table' (see model.py); prior: its starting point.
    window_s: window of the achieved-kbps statistic.
    """

    target_kbps: float
    fps_hint: float = 10.0
    buffer_ms: float = 500.0
    max_frame_bytes: int = 0
    rate_range: tuple[float, float] = (0.0, 1.0)
    roi_weight_limit: float | None = None
    target_fullness: float = 0.5
    horizon_s: float = 0.5
    safety_sigma: float = 1.0
    keyframe_interval: int | None = None
    p_frame_ratio_prior: float = 0.3
    model: str = "loglinear"
    prior: ModelPrior = field(default_factory=ModelPrior)
    table_knots: int = 5
    window_s: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_kbps", check_kbps(self.target_kbps, allow_zero=True))
        _finite(self.fps_hint, "fps_hint", 0.0, lo_open=True)
        _finite(self.buffer_ms, "buffer_ms", 0.0, lo_open=True)
        mfb = _finite(self.max_frame_bytes, "max_frame_bytes", 0.0)
        if mfb != int(mfb):
            raise ValueError(f"max_frame_bytes must be a whole number of bytes, got {self.max_frame_bytes}")
        object.__setattr__(self, "max_frame_bytes", int(mfb))
        try:
            lo, hi = (float(v) for v in self.rate_range)
        except (TypeError, ValueError):
            raise ValueError(f"rate_range must be two numbers (lo, hi), got {self.rate_range!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"rate_range must be finite with lo < hi, got {self.rate_range}")
        object.__setattr__(self, "rate_range", (lo, hi))
        if self.roi_weight_limit is not None:
            _finite(self.roi_weight_limit, "roi_weight_limit", 0.0, lo_open=True)
        _finite(self.target_fullness, "target_fullness", 0.0, 1.0)
        _finite(self.horizon_s, "horizon_s", 0.0, lo_open=True)
        _finite(self.safety_sigma, "safety_sigma", 0.0)
        if self.keyframe_interval is not None and (int(self.keyframe_interval) != self.keyframe_interval or self.keyframe_interval < 1):
            raise ValueError(f"keyframe_interval must be a whole number >= 1 or None, got {self.keyframe_interval}")
        _finite(self.p_frame_ratio_prior, "p_frame_ratio_prior", 0.0, 1.0, lo_open=True)
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model must be one of {MODEL_KINDS}, got {self.model!r}")
        _finite(self.window_s, "window_s", 0.0, lo_open=True)


@dataclass(frozen=True)
class Decision:
    """What to code this frame with, and why (for logs and the statistics topic)."""

    seq: int
    rate: float
    roi_weight: float
    skip: bool
    frame_type: FrameType
    now_s: float
    pixels: int
    roi_coverage: float
    requested_roi_weight: float
    budget_bytes: float  # what the plan gives this frame (after the buffer / max-frame limits)
    predicted_bytes: float  # the model's size at (rate, roi_weight)
    limit_bytes: float  # free buffer / max_frame_bytes: above this the buffer overflows
    horizon_frames: float  # frames the plan spread the budget over (rest of the GOP and whole GOPs, or horizon_s)
    reason: str  # track | saturated | buffer | roi_weight | skip | off


class RateController:
    """One camera's rate controller (see module docstring).  Not thread-safe: call from the encoding thread."""

    def __init__(self, target_kbps: float | RateControllerConfig = 0.0, fps_hint: float = 10.0,
                 buffer_ms: float = 500.0, max_frame_bytes: int = 0, rate_range: tuple[float, float] = (0.0, 1.0),
                 roi_weight_limit: float | None = None, **options):
        if isinstance(target_kbps, RateControllerConfig):
            if options or fps_hint != 10.0 or buffer_ms != 500.0 or max_frame_bytes or roi_weight_limit is not None:
                raise ValueError("pass either a RateControllerConfig or keyword options, not both")
            config = target_kbps
        else:
            config = RateControllerConfig(target_kbps=target_kbps, fps_hint=fps_hint, buffer_ms=buffer_ms,
                                          max_frame_bytes=max_frame_bytes, rate_range=rate_range,
                                          roi_weight_limit=roi_weight_limit, **options)
        self.config = config
        lo, hi = config.rate_range
        self._rates = np.linspace(lo, hi, _RATE_GRID)
        self._models: dict[tuple[FrameType, int], BitsModel] = {}
        self._target_kbps = config.target_kbps
        self._interval = 1.0 / config.fps_hint
        self._fullness = self._target_level()  # start at the target level (like x264's vbv-init)
        self._last_s: float | None = None
        self._seq = 0
        self._pending: Decision | None = None
        self._keyint = float(config.keyframe_interval) if config.keyframe_interval else None
        self._learned_keyint: float | None = None
        self._since_i: int | None = None
        self._seen_p = False
        self._coverage = 0.0
        self._max_fullness = 0.0
        self.meter = WindowMeter(config.window_s)
        self.counters = {"frames": 0, "skipped": 0, "roi_weight_changed": 0, "buffer_limited": 0,
                         "saturated": 0, "overflows": 0, "unreported": 0}
        self._last_decision: Decision | None = None

    # ------------------------------------------------------------------------------------------ knobs
    @property
    def target_kbps(self) -> float:
        return self._target_kbps

    @property
    def enabled(self) -> bool:
        return self._target_kbps > 0

    def set_target(self, kbps: float) -> None:
        """Change the target (live; 0 = off).  The buffer keeps its fullness *fraction* (a re-split of a budget
        should not be paid for with the old target's queue)."""
        kbps = check_kbps(kbps, allow_zero=True)
        old = self._target_kbps
        self._target_kbps = kbps
        if kbps == 0:
            return
        if old > 0:
            ratio = kbps / old
            self._fullness *= ratio
        else:
            self._fullness = self._target_level()

    def reconfigure(self, **changes) -> None:
        """Change any other tunable live (ROS parameter callbacks), keeping the learned models, meter and counters.

        ``target_kbps`` goes through ``set_target``; ``rate_range``, ``model``, ``prior`` and ``table_knots`` shape
        the models and cannot change on a running controller (build a new one).  The buffer keeps its fullness
        fraction when ``buffer_ms`` changes.  Invalid values raise ValueError and change nothing.
        """
        fixed = {"rate_range", "model", "prior", "table_knots"} & set(changes)
        if fixed:
            raise ValueError(f"{sorted(fixed)} cannot change on a running controller; build a new RateController")
        unknown = set(changes) - set(RateControllerConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown rate control settings {sorted(unknown)}")
        target = changes.pop("target_kbps", None)
        config = replace(self.config, **changes)  # validates
        if target is not None:
            check_kbps(target, allow_zero=True)
        fraction = self._fullness / self.capacity_bytes if self.capacity_bytes else None
        self.config = config
        if fraction is not None:
            self._fullness = fraction * self.capacity_bytes
        if "keyframe_interval" in changes:
            self.set_keyframe_interval(config.keyframe_interval)
        if "window_s" in changes:
            meter = WindowMeter(config.window_s)
            for t, b in self.meter._frames:  # noqa: SLF001 - same module family; the recent frames carry over
                meter.add(t, b)
            meter.total_bytes, meter.frames, meter.first_s = self.meter.total_bytes, self.meter.frames, self.meter.first_s
            self.meter = meter
        if target is not None:
            self.set_target(target)

    def set_keyframe_interval(self, frames: int | None) -> None:
        """Hint from the stream encoder (its live ``keyframe_interval``); None = learn it from the frame types."""
        if frames is not None and (int(frames) != frames or frames < 1):
            raise ValueError(f"keyframe_interval must be a whole number >= 1 or None, got {frames}")
        self._keyint = float(frames) if frames else None

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def _bytes_per_s(self) -> float:
        return self._target_kbps * 1000.0 / 8.0

    @property
    def capacity_bytes(self) -> float:
        return self._bytes_per_s * self.config.buffer_ms / 1000.0

    def _target_level(self) -> float:
        return self.config.target_fullness * self.capacity_bytes

    @staticmethod
    def _size_class(pixels: int) -> int:
        return int(round(2.0 * math.log2(pixels)))  # half-octave classes: bpp is similar within one

    def model_for(self, frame_type: FrameType | str, pixels: int) -> BitsModel:
        """The model of this frame class, created from the nearest known class (or the prior) on first use."""
        frame_type = FrameType.parse(frame_type)
        key = (frame_type, self._size_class(pixels))
        model = self._models.get(key)
        if model is None:
            same = [k for k in self._models if k[0] == frame_type]
            other = [k for k in self._models if k[0] != frame_type]
            if same:
                near = min(same, key=lambda k: abs(k[1] - key[1]))
                model = self._models[near].copy_shifted(0.0)
            elif other:
                near = min(other, key=lambda k: abs(k[1] - key[1]))
                shift = math.log(self.config.p_frame_ratio_prior)
                model = self._models[near].copy_shifted(shift if frame_type is FrameType.P else -shift)
            else:
                model = BitsModel(self.config.model, self.config.prior, self.config.rate_range, self.config.table_knots)
            self._models[key] = model
        return model

    def _curve_bytes(self, frame_type: FrameType, pixels: int, roi_weight: float, coverage: float) -> np.ndarray:
        return pixels * np.exp(self.model_for(frame_type, pixels).curve(self._rates, roi_weight, coverage))

    def _rate_for(self, curve: np.ndarray, nbytes: float) -> float:
        """Highest rate whose predicted size is <= nbytes (curve non-decreasing); clipped to the range."""
        if nbytes <= curve[0]:
            return float(self._rates[0])
        if nbytes >= curve[-1]:
            return float(self._rates[-1])
        strictly = curve + np.arange(len(curve)) * 1e-9 * curve[-1]  # np.interp needs increasing abscissae
        return float(np.interp(nbytes, strictly, self._rates))

    def _gop_length(self) -> int | None:
        """Frames per keyframe the plan assumes; None while the stream is intra-only."""
        if self._keyint is not None:
            return None if self._keyint <= 1 else int(self._keyint)
        if not self._seen_p:
            return None
        # learned spacing, else an assumed 2-s GOP (a common streaming default) until a second I-frame is seen
        return max(2, int(round(self._learned_keyint or 2.0 * self.config.fps_hint)))

    def i_frame_share(self) -> float:
        """Share of I-frames the plan assumes: 1 for intra-only streams, else 1/keyframe interval."""
        gop = self._gop_length()
        return 1.0 if gop is None else 1.0 / gop

    # ------------------------------------------------------------------------------------------ per frame
    def plan(self, frame_pixels: int, roi_coverage: float, frame_type: FrameType | str, now_s: float, *,
             roi_weight: float = 1.0, manual_rate: float | None = None) -> Decision:
        """Rate and ROI weight for the next frame.

        frame_pixels: h*w; roi_coverage: mean of the ROI mask in [0, 1] (0 without ROI); frame_type: 'I'/'P' as the
        stream encoder will code it; now_s: the frame's time in seconds (camera stamp; non-decreasing);
        roi_weight: the operator's requested weight; manual_rate: the rate to use while the target is 0 (off).
        """
        pixels = _finite(frame_pixels, "frame_pixels", 0.0, lo_open=True)
        if pixels != int(pixels):
            raise ValueError(f"frame_pixels must be a whole number, got {frame_pixels}")
        pixels = int(pixels)
        coverage = _finite(roi_coverage, "roi_coverage", 0.0, 1.0)
        frame_type = FrameType.parse(frame_type)
        now = _finite(now_s, "now_s")
        alpha = _finite(roi_weight, "roi_weight", 0.0, lo_open=True)
        if self._last_s is not None and now < self._last_s:
            raise ValueError(f"now_s {now} is before the previous frame's {self._last_s} (stamps must not go back)")
        if self._pending is not None:
            self.counters["unreported"] += 1  # the previous frame was never reported (encode failed): forget it
        if self._last_s is not None:
            dt = now - self._last_s
            self._fullness = max(0.0, self._fullness - self._bytes_per_s * dt)
            if dt > 0:
                self._interval += 0.2 * (min(dt, 2.0) - self._interval)
        self._last_s = now
        self._seq += 1
        lo, hi = self.config.rate_range

        if not self.enabled:
            if manual_rate is None:
                raise ValueError("target_kbps is 0 (off): pass manual_rate, the rate to code with")
            rate = min(max(_finite(manual_rate, "manual_rate"), lo), hi)
            model = self.model_for(frame_type, pixels)
            predicted = pixels * math.exp(model.predict(rate, alpha, coverage)[0])
            decision = Decision(self._seq, rate, alpha, False, frame_type, now, pixels, coverage, alpha,
                                predicted, predicted, math.inf, 1.0, "off")
            self._pending = decision
            return decision

        per_frame = self._bytes_per_s * self._interval
        curve = self._curve_bytes(frame_type, pixels, alpha, coverage)
        curve_i = curve if frame_type is FrameType.I else self._curve_bytes(FrameType.I, pixels, alpha, coverage)
        gop = self._gop_length()
        level = self._target_level()
        if gop is None:
            # intra-only: every frame alike; the buffer error is repaid over the horizon
            horizon = max(1.0, self.config.horizon_s / self._interval)
            spend = horizon * curve
        else:
            # P-frame stream: plan the rest of this GOP (plus whole GOPs up to the horizon) at one rate, so a
            # keyframe is paid for by the P-frames of its own GOP and the horizon ends where the buffer's saw-tooth
            # is at its bottom (the steering level)
            curve_p = curve if frame_type is FrameType.P else self._curve_bytes(FrameType.P, pixels, alpha, coverage)
            phase = 0 if frame_type is FrameType.I or self._since_i is None else self._since_i + 1
            remaining = gop - phase if phase < gop else gop  # an overdue keyframe: expect it an interval later
            extra_gops = max(0, math.ceil((self.config.horizon_s / self._interval - remaining) / gop))
            horizon = remaining + extra_gops * gop
            spend = curve + (remaining - 1) * curve_p + extra_gops * (curve_i + (gop - 1) * curve_p)
            # the bottom of the saw-tooth must leave room for the next keyframe
            i_excess = max(float(np.interp(per_frame * gop, curve_i + (gop - 1) * curve_p, curve_i)) - per_frame, 0.0)
            level = min(level, max(0.0, self.capacity_bytes - 1.25 * i_excess - per_frame))
        if self.counters["frames"] == 0 and self._pending is None:
            self._fullness = level  # the stream starts at the level it is steered to
        horizon_budget = max(horizon * per_frame - (self._fullness - level), 0.05 * horizon * per_frame)
        op_rate = self._rate_for(spend, horizon_budget)
        # this frame's part of the horizon budget: its predicted size at the operating rate (scaled when the
        # operating rate is clipped to the range)
        planned = horizon_budget * float(np.interp(op_rate, self._rates, curve) / np.interp(op_rate, self._rates, spend))

        limit = max(self.capacity_bytes - self._fullness, 0.0)
        if self.config.max_frame_bytes:
            limit = min(limit, float(self.config.max_frame_bytes))
        std = self.model_for(frame_type, pixels).predict(op_rate, alpha, coverage)[1]
        # the prior's std (~2 before the first frame) would force rate 0 on a start that fits with room to spare
        margin = math.exp(self.config.safety_sigma * min(std, 0.5))
        budget, reason = planned, "track"
        if planned * margin > limit:
            budget, reason = limit / margin, "buffer"

        rate = self._rate_for(curve, budget)
        if rate >= hi and curve[-1] < budget:
            reason = "saturated" if reason == "track" else reason
        skip = False
        mean_lo, std_lo = self.model_for(frame_type, pixels).predict(lo, alpha, coverage)
        if budget < curve[0]:
            rate = lo
        # even the lowest rate is above the budget, and the model is sure of it (its optimistic size, mean - safety
        # std, is): the ROI weight is the last knob before skipping.  An unlearned prior changes neither.
        if budget < pixels * math.exp(mean_lo - self.config.safety_sigma * std_lo):
            if self.config.roi_weight_limit is not None and self.config.roi_weight_limit != alpha:
                alpha = self._roi_weight_for(frame_type, pixels, coverage, alpha, budget)
                reason = "roi_weight"
            mean_lo, std_lo = self.model_for(frame_type, pixels).predict(lo, alpha, coverage)
            if pixels * math.exp(mean_lo - self.config.safety_sigma * std_lo) > limit:
                skip, reason = True, "skip"
        predicted = pixels * math.exp(self.model_for(frame_type, pixels).predict(rate, alpha, coverage)[0])
        decision = Decision(self._seq, rate, alpha, skip, frame_type, now, pixels, coverage,
                            float(roi_weight), budget, predicted, limit, horizon, reason)
        self._pending = decision
        return decision

    def _roi_weight_for(self, frame_type: FrameType, pixels: int, coverage: float, requested: float,
                        budget: float) -> float:
        """The weight nearest the request, on a log grid toward the limit, whose size at the lowest rate fits."""
        lo = self.config.rate_range[0]
        model = self.model_for(frame_type, pixels)
        grid = np.exp(np.linspace(math.log(requested), math.log(self.config.roi_weight_limit), 9))[1:]
        for alpha in grid:
            if pixels * math.exp(model.predict(lo, float(alpha), coverage)[0]) <= budget:
                return float(alpha)
        return float(self.config.roi_weight_limit)

    def update(self, decision: Decision, bytes_used: int, frame_type: FrameType | str | None = None) -> None:
        """Report the coded size of ``decision``'s frame (0 if skipped); ``frame_type`` if the encoder changed it."""
        if self._pending is None or decision.seq != self._pending.seq:
            raise ValueError("update() must report the decision returned by the latest plan()")
        nbytes = _finite(bytes_used, "bytes_used", 0.0)
        if nbytes != int(nbytes):
            raise ValueError(f"bytes_used must be a whole number, got {bytes_used}")
        if decision.skip and nbytes:
            raise ValueError("a skipped frame has no bytes: report 0")
        actual = FrameType.parse(frame_type) if frame_type is not None else decision.frame_type
        self._pending = None
        self._last_decision = decision
        self.meter.add(decision.now_s, int(nbytes))
        self.counters["frames"] += 1
        if decision.skip:
            self.counters["skipped"] += 1
            return
        if decision.roi_weight != decision.requested_roi_weight:
            self.counters["roi_weight_changed"] += 1
        if decision.reason == "buffer":
            self.counters["buffer_limited"] += 1
        if decision.reason == "saturated":
            self.counters["saturated"] += 1
        self._coverage += 0.2 * (decision.roi_coverage - self._coverage)
        if nbytes > 0:
            self.model_for(actual, decision.pixels).update(decision.rate, decision.roi_weight,
                                                           decision.roi_coverage, nbytes, decision.pixels)
        if actual is FrameType.P:
            self._seen_p = True
            self._since_i = None if self._since_i is None else self._since_i + 1
        else:
            if self._since_i is not None and self._seen_p:
                spacing = self._since_i + 1.0
                self._learned_keyint = spacing if self._learned_keyint is None else 0.5 * (self._learned_keyint + spacing)
            self._since_i = 0
        if not self.enabled:
            return
        self._fullness += nbytes
        if self._fullness > self.capacity_bytes * (1 + 1e-9):
            self.counters["overflows"] += 1
        self._max_fullness = max(self._max_fullness, self._fullness / self.capacity_bytes)

    # ------------------------------------------------------------------------------------------ reporting
    def kbps_range(self, frame_pixels: int, roi_coverage: float | None = None, roi_weight: float = 1.0) -> tuple[float, float]:
        """Model's kbps at the lowest and highest rate for this frame size at the current frame rate and I/P mix
        (what the budget allocator needs to know about this camera)."""
        coverage = self._coverage if roi_coverage is None else roi_coverage
        share_i = self.i_frame_share()
        pixels = int(frame_pixels)
        mix = share_i * self._curve_bytes(FrameType.I, pixels, roi_weight, coverage)
        if share_i < 1.0:
            mix = mix + (1 - share_i) * self._curve_bytes(FrameType.P, pixels, roi_weight, coverage)
        scale = 8.0 / self._interval / 1000.0
        return float(mix[0] * scale), float(mix[-1] * scale)

    def state(self) -> dict:
        """Everything the statistics topic reports: target, achieved kbps, buffer, counters, model parameters."""
        last = self._last_decision
        models = {f"{t.value}:{c}": m.state() for (t, c), m in self._models.items()}
        for m in models.values():
            m.pop("P", None)  # covariances are for load_state, not for a statistics message
        out = {
            "target_kbps": self._target_kbps,
            "achieved_kbps": self.meter.kbps(),
            "window_s": self.meter.window_s,
            "buffer_bytes": self._fullness,
            "buffer_capacity_bytes": self.capacity_bytes,
            "buffer_fullness": self._fullness / self.capacity_bytes if self.capacity_bytes else 0.0,
            "max_buffer_fullness": self._max_fullness,
            "buffer_delay_ms": 1000.0 * self._fullness / self._bytes_per_s if self._bytes_per_s else 0.0,
            "frame_interval_s": self._interval,
            "i_frame_share": self.i_frame_share(),
            "roi_coverage": self._coverage,
            **self.counters,
            "models": models,
        }
        if last is not None:
            out.update(last_rate=last.rate, last_roi_weight=last.roi_weight, last_reason=last.reason,
                       last_budget_bytes=last.budget_bytes, last_predicted_bytes=last.predicted_bytes)
            out["kbps_at_rate_min"], out["kbps_at_rate_max"] = self.kbps_range(last.pixels, roi_weight=last.requested_roi_weight)
        return out

    def model_state(self) -> dict:
        """The learned models with covariances (save it to start the next run warm: ``load_model_state``)."""
        return {f"{t.value}:{c}": m.state() for (t, c), m in self._models.items()}

    def load_model_state(self, state: dict) -> None:
        for key, value in state.items():
            t, c = key.split(":")
            model = BitsModel(self.config.model, self.config.prior, self.config.rate_range, self.config.table_knots)
            model.load_state(value)
            self._models[(FrameType.parse(t), int(c))] = model
