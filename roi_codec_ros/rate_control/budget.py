"""One kbps budget shared by several cameras: the logic of the ``budget`` node (the node only adapts topics).

Every ``period_s`` (and at once when the total or a weight changes) the total is split::

    share_i ~ weight_i * content_i,   content_i in [1 - content_gain, 1 + content_gain], geometric mean 1

``content`` selects what content_i follows:

* ``"none"``: weights only.
* ``"coverage"``: the camera's ROI coverage relative to the others' mean (more road users, more bits).
* ``"rd_slope"``: the distortion decrease per bit each encoder reports at its operating point.  At the optimum of a
  weighted sum of distortions the weighted slopes are equal, so content_i is nudged each period by
  ``(w_i*slope_i / geometric mean)^step`` until they are (bounded by ``content_gain``).  For the neural codec the
  slope is the frame's beta per pixel (its loss is beta*R + D); for x264 it is the lambda of the QP used.

Then the shares are water-filled into each camera's useful range [kbps_min, kbps_max] when the camera reported one
(its controller's model at the lowest and highest rate, ``RateController.kbps_range``): bits a camera cannot use at
its highest rate go to the others; floors are kept as long as the total covers them.  Content factors are smoothed
over periods so the targets do not jump with detector noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .schedule import check_kbps

CONTENT_MODES = ("none", "coverage", "rd_slope")


def _positive(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {v}")
    return v


@dataclass
class CameraReport:
    """What an encoder last told the budget (None = not reported)."""

    time_s: float
    roi_coverage: float | None = None
    rd_slope: float | None = None
    achieved_kbps: float | None = None
    kbps_min: float | None = None
    kbps_max: float | None = None


def water_fill(total: float, raw: np.ndarray, floors: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Split ``total`` proportionally to ``raw`` subject to floors <= share <= caps.

    If the floors alone exceed the total they are scaled down to it; if the caps are all reached the rest stays
    unallocated (no camera can use it)."""
    n = len(raw)
    floors = np.minimum(floors, caps)
    if floors.sum() >= total:
        return floors * (total / floors.sum()) if floors.sum() > 0 else np.full(n, total / n)
    share = np.zeros(n)
    fixed = np.zeros(n, dtype=bool)
    for _ in range(2 * n + 1):
        free = ~fixed
        remaining = total - share[fixed].sum()
        if not free.any() or remaining <= 0:
            break
        weights = raw[free] / raw[free].sum()
        share[free] = remaining * weights
        over = free & (share > caps)
        under = free & (share < floors)
        if not over.any() and not under.any():
            break
        # fix the worst violation side first: caps release bits, floors take them
        if over.any():
            share[over] = caps[over]
            fixed |= over
        else:
            share[under] = floors[under]
            fixed |= under
    return share


class BudgetAllocator:
    """Split ``total_kbps`` over cameras by weight and content; see the module docstring."""

    def __init__(self, total_kbps: float, weights: Mapping[str, float], content: str = "coverage",
                 content_gain: float = 0.25, period_s: float = 1.0, smoothing: float = 0.5,
                 slope_step: float = 0.3, stale_s: float = 3.0):
        self._total = check_kbps(total_kbps, "total_kbps")
        if content not in CONTENT_MODES:
            raise ValueError(f"content must be one of {CONTENT_MODES}, got {content!r}")
        if not weights:
            raise ValueError("the budget needs at least one camera")
        gain = float(content_gain)
        if not (math.isfinite(gain) and 0.0 <= gain < 1.0):
            raise ValueError(f"content_gain must be in [0, 1), got {content_gain}")
        self.content, self.content_gain = content, gain
        self.period_s = _positive(period_s, "period_s")
        self.smoothing = float(smoothing)
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.slope_step = _positive(slope_step, "slope_step")
        self.stale_s = _positive(stale_s, "stale_s")
        self._weights: dict[str, float] = {}
        for name, w in weights.items():
            self.set_weight(name, w)
        self._reports: dict[str, CameraReport] = {}
        self._factors: dict[str, float] = {name: 1.0 for name in self._weights}
        self._allocation: dict[str, float] = {}
        self._last_s: float | None = None
        self._dirty = True
        self.allocations = 0

    # ----------------------------------------------------------------------------------- inputs
    @property
    def total_kbps(self) -> float:
        return self._total

    def set_total(self, kbps: float) -> None:
        """New total (parameter or the link monitor's topic): applied at the next ``allocate``."""
        self._total = check_kbps(kbps, "total_kbps")
        self._dirty = True

    def set_weight(self, camera: str, weight: float) -> None:
        """Add a camera or change its weight."""
        if not isinstance(camera, str) or not camera:
            raise ValueError(f"camera name must be a non-empty string, got {camera!r}")
        self._weights[camera] = _positive(weight, f"weight of camera {camera!r}")
        if hasattr(self, "_factors"):
            self._factors.setdefault(camera, 1.0)
        self._dirty = True

    def remove_camera(self, camera: str) -> None:
        if camera not in self._weights:
            raise KeyError(f"unknown camera {camera!r}")
        if len(self._weights) == 1:
            raise ValueError("cannot remove the last camera")
        for table in (self._weights, self._factors, self._reports, self._allocation):
            table.pop(camera, None)
        self._dirty = True

    @property
    def cameras(self) -> list[str]:
        return list(self._weights)

    def report(self, camera: str, now_s: float, roi_coverage: float | None = None, rd_slope: float | None = None,
               achieved_kbps: float | None = None, kbps_min: float | None = None, kbps_max: float | None = None) -> None:
        """An encoder's latest figures (its statistics message); unknown cameras are an error, not a new camera."""
        if camera not in self._weights:
            raise KeyError(f"report from unknown camera {camera!r} (known: {self.cameras})")
        values = {}
        for name, v in (("roi_coverage", roi_coverage), ("rd_slope", rd_slope), ("achieved_kbps", achieved_kbps),
                        ("kbps_min", kbps_min), ("kbps_max", kbps_max)):
            if v is not None:
                v = float(v)
                if not math.isfinite(v) or v < 0:
                    raise ValueError(f"{name} from camera {camera!r} must be finite and >= 0, got {v}")
            values[name] = v
        if values["roi_coverage"] is not None and values["roi_coverage"] > 1:
            raise ValueError(f"roi_coverage from camera {camera!r} must be in [0, 1], got {roi_coverage}")
        self._reports[camera] = CameraReport(time_s=float(now_s), **values)

    # ----------------------------------------------------------------------------------- split
    def _fresh(self, now_s: float) -> dict[str, CameraReport]:
        return {c: r for c, r in self._reports.items() if c in self._weights and now_s - r.time_s <= self.stale_s}

    def _content_factors(self, names: list[str], reports: dict[str, CameraReport]) -> np.ndarray:
        g = self.content_gain
        target = np.array([self._factors.get(n, 1.0) for n in names])
        if self.content == "coverage":
            cov = [reports[n].roi_coverage if n in reports else None for n in names]
            known = [c for c in cov if c is not None]
            mean = float(np.mean(known)) if known else 0.0
            if mean > 0:
                rel = np.array([c / mean if c is not None else 1.0 for c in cov])
                target = 1.0 + g * (rel - 1.0) / max(1.0, float(np.max(np.abs(rel - 1.0))))
            else:
                target = np.ones(len(names))
        elif self.content == "rd_slope":
            w = np.array([self._weights[n] for n in names])
            slopes = np.array([reports[n].rd_slope if n in reports and reports[n].rd_slope else np.nan for n in names])
            ok = np.isfinite(slopes) & (slopes > 0)
            if ok.sum() >= 2:
                ws = w[ok] * slopes[ok]
                nudge = np.ones(len(names))
                nudge[ok] = (ws / math.exp(np.mean(np.log(ws)))) ** self.slope_step
                target = target * nudge
        else:
            target = np.ones(len(names))
        target = target / math.exp(np.mean(np.log(target)))
        return np.clip(target, 1.0 - g, 1.0 + g)

    def allocate(self, now_s: float) -> dict[str, float]:
        """kbps target per camera; recomputed every ``period_s`` or after a change of total or weights."""
        now_s = float(now_s)
        if not math.isfinite(now_s):
            raise ValueError(f"now_s must be finite, got {now_s}")
        due = self._last_s is None or now_s - self._last_s >= self.period_s - 1e-9
        if not (due or self._dirty):
            return dict(self._allocation)
        names = self.cameras
        reports = self._fresh(now_s)
        factors = self._content_factors(names, reports)
        if due:
            # smooth the content part over periods; a total/weight change alone reuses the last factors
            old = np.array([self._factors.get(n, 1.0) for n in names])
            factors = self.smoothing * old + (1 - self.smoothing) * factors
            self._factors = dict(zip(names, factors.tolist()))
            self._last_s = now_s
        else:
            factors = np.array([self._factors.get(n, 1.0) for n in names])
        raw = np.array([self._weights[n] for n in names]) * factors
        floors = np.array([reports[n].kbps_min if n in reports and reports[n].kbps_min else 0.0 for n in names])
        caps = np.array([reports[n].kbps_max if n in reports and reports[n].kbps_max else math.inf for n in names])
        shares = water_fill(self._total, raw, floors, caps)
        self._allocation = dict(zip(names, shares.tolist()))
        self._dirty = False
        self.allocations += 1
        return dict(self._allocation)

    def state(self) -> dict:
        """For the budget node's statistics: total, per-camera weight, content factor, allocation, achieved."""
        return {
            "total_kbps": self._total,
            "content": self.content,
            "allocated_kbps": sum(self._allocation.values()),
            "cameras": {
                n: {"weight": self._weights[n], "content_factor": self._factors.get(n, 1.0),
                    "target_kbps": self._allocation.get(n),
                    "achieved_kbps": self._reports[n].achieved_kbps if n in self._reports else None}
                for n in self.cameras
            },
        }
