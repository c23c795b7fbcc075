"""A fast stand-in for a codec, for developing and testing the controller (the real one takes seconds per frame here).

``SimulatedCodec`` returns a frame size from a table of ln(bytes/pixel) over (rate, ln ROI weight), interpolated
bilinearly, shifted by the scene's complexity, times log-normal noise; P-frames cost ``p_ratio`` of an I-frame at
the same rate (with their own noise: motion varies).  The default table is a measurement of the shipped model
(``MEASURED_*``, see docs/rate_control.md); ``SimulatedCodec.from_measurement`` builds one from the JSON that
``scripts/rate_control_eval.py measure`` writes.

``SimulatedScene`` produces per-frame complexity (a random walk plus scene cuts) and ROI coverage, seeded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .controller import FrameType

# Shipped model (roi_codec_ros/models/default.pt, id 0c766b87c4b97bbd), highway_960x540 frame 0 at 10 Hz, YOLO ROI
# (coverage 0.021), with detector features; bytes at rates 0, 0.1, ..., 1 for ROI weights 1, 8, 60
# (scripts/rate_control_eval.py measure, outputs/rc/measure.json).  Note the knee at rate ~0.7.
MEASURED_PIXELS = 960 * 540
MEASURED_RATES = tuple(round(0.1 * i, 1) for i in range(11))
MEASURED_ROI_WEIGHTS = (1.0, 8.0, 60.0)
MEASURED_BYTES = (
    (6544, 7596, 8892, 10132, 11752, 13440, 15384, 16756, 17148, 17312, 17612),
    (4932, 5524, 6304, 7180, 8504, 10256, 12592, 14456, 15116, 15584, 16164),
    (4512, 4868, 5352, 5892, 6792, 8064, 9840, 11532, 12084, 12540, 13088),
)
# frame-to-frame std of ln(bytes) at a fixed rate on the same video (30 consecutive frames, rate 0.5, weight 8)
MEASURED_FRAME_NOISE = 0.024


@dataclass
class SimulatedCodec:
    rates: Sequence[float] = MEASURED_RATES
    roi_weights: Sequence[float] = MEASURED_ROI_WEIGHTS
    bytes_table: Sequence[Sequence[float]] = MEASURED_BYTES  # [roi weight][rate]
    table_pixels: int = MEASURED_PIXELS
    noise_std: float = MEASURED_FRAME_NOISE
    p_ratio: float = 0.25
    p_noise_std: float = 0.1
    coverage_slope: float = 0.0  # d ln(bytes)/d coverage per ln(ROI weight); 0 = coverage has no effect
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rates = np.asarray(self.rates, dtype=np.float64)
        self._log_w = np.log(np.asarray(self.roi_weights, dtype=np.float64))
        table = np.asarray(self.bytes_table, dtype=np.float64)
        if table.shape != (len(self._log_w), len(self._rates)):
            raise ValueError(f"bytes_table must be [len(roi_weights)][len(rates)], got {table.shape}")
        self._ln_bpp = np.log(table / self.table_pixels)
        self.rng = np.random.default_rng(self.seed)

    @classmethod
    def from_measurement(cls, measurement: dict, video: str, frame: int | None = None, **kw) -> "SimulatedCodec":
        """From ``rate_control_eval.py measure`` output: the grid of one video's frame (default: its first)."""
        grid = [g for g in measurement["grid"] if g["video"] == video]
        if not grid:
            raise ValueError(f"no grid measurement for video {video!r}")
        frame = grid[0]["frame"] if frame is None else frame
        grid = [g for g in grid if g["frame"] == frame]
        rates = sorted({g["rate"] for g in grid})
        weights = sorted({g["roi_weight"] for g in grid})
        lookup = {(g["roi_weight"], g["rate"]): g["bytes"] for g in grid}
        table = [[lookup[(w, r)] for r in rates] for w in weights]
        trace = [t["bytes"] for t in measurement.get("trace", []) if t["video"] == video]
        if len(trace) > 3 and "noise_std" not in kw:
            kw["noise_std"] = float(np.std(np.diff(np.log(trace[1:]))) / math.sqrt(2))
        return cls(rates=rates, roi_weights=weights, bytes_table=table, table_pixels=grid[0]["pixels"], **kw)

    def mean_ln_bpp(self, rate: float, roi_weight: float, coverage: float = 0.0) -> float:
        """Noise-free ln(bytes/pixel) of an I-frame at complexity 0."""
        lw = float(np.clip(math.log(roi_weight), self._log_w[0], self._log_w[-1]))
        per_weight = np.array([np.interp(rate, self._rates, row) for row in self._ln_bpp])
        value = float(np.interp(lw, self._log_w, per_weight))
        return value + self.coverage_slope * coverage * math.log(roi_weight)

    def encode(self, rate: float, roi_weight: float = 8.0, coverage: float = 0.0, frame_type: FrameType | str = "I",
               pixels: int = MEASURED_PIXELS, complexity: float = 0.0) -> int:
        """Bytes of one frame."""
        frame_type = FrameType.parse(frame_type)
        ln = self.mean_ln_bpp(rate, roi_weight, coverage) + complexity + self.rng.normal(0.0, self.noise_std)
        if frame_type is FrameType.P:
            ln += math.log(self.p_ratio) + self.rng.normal(0.0, self.p_noise_std)
        return max(1, int(round(pixels * math.exp(ln))))

    def kbps_range(self, fps: float, roi_weight: float = 8.0, pixels: int = MEASURED_PIXELS, complexity: float = 0.0,
                   share_i: float = 1.0) -> tuple[float, float]:
        """Noise-free kbps at the lowest and highest rate (for picking targets inside the range)."""
        def kbps(rate):
            b = pixels * math.exp(self.mean_ln_bpp(rate, roi_weight) + complexity)
            return b * (share_i + (1 - share_i) * self.p_ratio) * 8 * fps / 1000

        return kbps(float(self._rates[0])), kbps(float(self._rates[-1]))


@dataclass
class SimulatedScene:
    """Per-frame complexity (ln bytes offset) and ROI coverage.

    walk_std: random-walk step per frame; cut_every_s: mean seconds between scene cuts (exponential); cut_std: size
    of the jump at a cut; coverage_mean/std: ROI coverage process (clipped to [0, 1]).
    """

    fps: float = 10.0
    walk_std: float = MEASURED_FRAME_NOISE
    cut_every_s: float = 8.0
    cut_std: float = 0.35
    coverage_mean: float = 0.05
    coverage_std: float = 0.02
    reversion: float = 0.98
    seed: int = 1

    def frames(self, n: int) -> list[tuple[float, float, float]]:
        """n frames of (time s, complexity, coverage)."""
        rng = np.random.default_rng(self.seed)
        out, c, cov = [], 0.0, self.coverage_mean
        p_cut = 1.0 - math.exp(-1.0 / (self.fps * self.cut_every_s)) if self.cut_every_s > 0 else 0.0
        for i in range(n):
            if i and rng.random() < p_cut:
                c += rng.normal(0.0, self.cut_std)
                cov = float(np.clip(rng.normal(self.coverage_mean, self.coverage_std * 2), 0.0, 1.0))
            c += rng.normal(0.0, self.walk_std)
            c *= self.reversion  # mean-reverting: content stays within the codec's range over long runs
            cov = float(np.clip(cov + rng.normal(0.0, self.coverage_std * 0.2), 0.0, 1.0))
            out.append((i / self.fps, c, cov))
        return out


def run_simulation(controller, codec: SimulatedCodec, frames: Sequence[tuple[float, float, float]], schedule=None,
                   frame_type=None, roi_weight: float = 8.0, pixels: int = MEASURED_PIXELS) -> list[dict]:
    """Drive ``controller`` with ``codec`` over ``frames`` ((t, complexity, coverage), e.g. SimulatedScene.frames).

    schedule: a TargetSchedule applied with ``set_target`` when it changes; frame_type: index -> 'I'/'P' (default
    all I).  Returns one record per frame: t, target, decision, bytes.
    """
    records = []
    for i, (t, complexity, coverage) in enumerate(frames):
        if schedule is not None and schedule.at(t) != controller.target_kbps:
            controller.set_target(schedule.at(t))
        ft = FrameType.parse(frame_type(i) if frame_type else "I")
        d = controller.plan(pixels, coverage, ft, t, roi_weight=roi_weight)
        nbytes = 0 if d.skip else codec.encode(d.rate, d.roi_weight, coverage, ft, pixels, complexity)
        controller.update(d, nbytes)
        records.append({"t": t, "target": controller.target_kbps, "decision": d, "bytes": nbytes})
    return records
