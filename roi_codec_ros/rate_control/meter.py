"""Achieved bitrate: a trailing-window meter for live statistics and aligned 1-s windows for offline evaluation."""
from __future__ import annotations

import math
from collections import deque
from typing import Sequence

import numpy as np


def _finite_non_negative(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value}")
    return value


class WindowMeter:
    """kbps over the trailing ``window_s`` seconds: the bytes of frames stamped in (now - window, now].

    Frames must be added in time order (equal stamps allowed).  Before one whole window has passed the bytes are
    still divided by the full window, so a starting stream reads low rather than spiking.
    """

    def __init__(self, window_s: float = 1.0):
        self.window_s = _finite_non_negative(window_s, "window_s")
        if self.window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._frames: deque[tuple[float, int]] = deque()
        self._bytes = 0
        self.total_bytes = 0
        self.frames = 0
        self.first_s: float | None = None
        self.last_s: float | None = None

    def add(self, t_s: float, nbytes: int) -> None:
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise ValueError(f"frame time must be finite, got {t_s}")
        nbytes = int(_finite_non_negative(nbytes, "frame bytes"))
        if self.last_s is not None and t_s < self.last_s:
            raise ValueError(f"frame time {t_s} is before the previous frame's {self.last_s}")
        self.first_s = t_s if self.first_s is None else self.first_s
        self.last_s = t_s
        self._frames.append((t_s, nbytes))
        self._bytes += nbytes
        self.total_bytes += nbytes
        self.frames += 1
        self._expire(t_s)

    def _expire(self, now_s: float) -> None:
        # 1e-9 s: frame stamps like k/10 must not fall in or out of a window by floating-point rounding
        while self._frames and self._frames[0][0] <= now_s - self.window_s + 1e-9:
            self._bytes -= self._frames.popleft()[1]

    def kbps(self, now_s: float | None = None) -> float:
        """Achieved kbps over the window ending at ``now_s`` (default: the last frame's time); 0 before any frame."""
        if self.last_s is None:
            return 0.0
        now = self.last_s if now_s is None else float(now_s)
        if now < self.last_s:
            raise ValueError(f"now_s {now} is before the last frame {self.last_s}")
        self._expire(now)
        return 8.0 * self._bytes / self.window_s / 1000.0

    def mean_kbps(self, frame_interval_s: float | None = None) -> float:
        """Mean kbps since the first frame: bytes over (last - first + one frame interval)."""
        if self.first_s is None:
            return 0.0
        span = self.last_s - self.first_s
        if frame_interval_s is None:
            frame_interval_s = span / (self.frames - 1) if self.frames > 1 else self.window_s
        span += frame_interval_s
        return 8.0 * self.total_bytes / span / 1000.0


def window_bitrates(times_s: Sequence[float], nbytes: Sequence[float], window_s: float = 1.0,
                    start_s: float = 0.0, end_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """kbps of consecutive aligned windows [start + k*w, start + (k+1)*w) that lie entirely before ``end_s``.

    ``end_s`` defaults to one mean frame interval after the last frame (the end of the last frame's slot), so a
    stream of 88 frames at 10 Hz gives 8 whole windows.  Returns (window start times, kbps).
    """
    t = np.asarray(times_s, dtype=np.float64)
    b = np.asarray(nbytes, dtype=np.float64)
    if t.shape != b.shape or t.ndim != 1:
        raise ValueError("times_s and nbytes must be 1-D sequences of equal length")
    if len(t) == 0:
        return np.zeros(0), np.zeros(0)
    if window_s <= 0 or not math.isfinite(window_s):
        raise ValueError(f"window_s must be > 0, got {window_s}")
    if end_s is None:
        interval = float(np.median(np.diff(t))) if len(t) > 1 else window_s
        end_s = float(t[-1]) + interval
    count = int(math.floor((end_s - start_s) / window_s + 1e-9))
    if count <= 0:
        return np.zeros(0), np.zeros(0)
    index = np.floor((t - start_s) / window_s + 1e-9).astype(np.int64)
    keep = (index >= 0) & (index < count)
    sums = np.bincount(index[keep], weights=b[keep], minlength=count)
    starts = start_s + window_s * np.arange(count)
    return starts, 8.0 * sums / window_s / 1000.0


def trailing_bitrates(times_s: Sequence[float], nbytes: Sequence[float], window_s: float = 1.0) -> np.ndarray:
    """kbps of the trailing window (t - w, t] at every frame time t (what a live WindowMeter shows)."""
    t = np.asarray(times_s, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(np.asarray(nbytes, dtype=np.float64))])
    first = np.searchsorted(t, t - window_s + 1e-9, side="right")
    return 8.0 * (c[1:] - c[first]) / window_s / 1000.0


def tracking_summary(times_s: Sequence[float], nbytes: Sequence[float], schedule, window_s: float = 1.0,
                     tolerance: float = 0.15, end_s: float | None = None) -> dict:
    """Acceptance figures of one stream against a ``TargetSchedule``.

    mean_error: mean bitrate / time-averaged target - 1.  windows_*: aligned windows [k, k+1) s, each against its
    time-averaged target.  For each step of the schedule, ``settling_s``: time after the step from which every
    trailing window (t - w, t] until the next step (or the end) is within ``tolerance`` of the new target.
    """
    t = np.asarray(times_s, dtype=np.float64)
    b = np.asarray(nbytes, dtype=np.float64)
    starts, kbps = window_bitrates(t, b, window_s, 0.0, end_s)
    interval = float(np.median(np.diff(t))) if len(t) > 1 else window_s
    end = float(t[-1]) + interval if end_s is None else float(end_s)

    def mean_target(a: float, z: float) -> float:
        grid = np.linspace(a, z, 201)[:-1] + (z - a) / 400
        return float(np.mean([schedule.at(x) for x in grid]))

    targets = np.array([mean_target(s, s + window_s) for s in starts])
    rel = kbps / targets - 1.0 if len(kbps) else np.zeros(0)
    total_target = mean_target(0.0, end)
    mean_kbps = 8.0 * b.sum() / end / 1000.0
    out = {
        "mean_kbps": mean_kbps,
        "mean_target_kbps": total_target,
        "mean_error": mean_kbps / total_target - 1.0,
        "windows": int(len(kbps)),
        "windows_within": float(np.mean(np.abs(rel) <= tolerance)) if len(rel) else float("nan"),
        "window_max_error": float(rel.max()) if len(rel) else float("nan"),
        "window_min_error": float(rel.min()) if len(rel) else float("nan"),
        "window_kbps": kbps.tolist(),
        "window_target_kbps": targets.tolist(),
        "steps": [],
    }
    trailing = trailing_bitrates(t, b, window_s)
    points = list(schedule.points)
    for i, (t_step, new) in enumerate(points[1:], start=1):
        t_next = points[i + 1][0] if i + 1 < len(points) else end
        sel = (t >= t_step) & (t < t_next)
        ok = np.abs(trailing[sel] / new - 1.0) <= tolerance
        bad = np.nonzero(~ok)[0]
        settle = 0.0 if len(bad) == 0 else (float(t[sel][bad[-1] + 1] - t_step) if bad[-1] + 1 < len(ok) else math.inf)
        out["steps"].append({"time_s": t_step, "from_kbps": points[i - 1][1], "to_kbps": new, "settling_s": settle})
    return out
