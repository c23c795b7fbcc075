"""Target schedules: ``"0:2000,10:800"`` = 2000 kbps from second 0, 800 kbps from second 10 (CLI, evaluation)."""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


def check_kbps(value, what: str = "target_kbps", allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite kbps > 0 (or == 0 when allowed), else a ValueError saying why."""
    try:
        kbps = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of kbps, got {value!r}") from None
    if not math.isfinite(kbps):
        raise ValueError(f"{what} must be finite, got {kbps}")
    if kbps < 0 or (kbps == 0 and not allow_zero):
        raise ValueError(f"{what} must be {'>= 0 (0 = off)' if allow_zero else '> 0'} kbps, got {kbps}")
    return kbps


@dataclass(frozen=True)
class TargetSchedule:
    """Piecewise-constant target: ``points`` = ((t0=0, kbps0), (t1, kbps1), ...), times strictly increasing."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a target schedule needs at least one 'seconds:kbps' point")
        times = [t for t, _ in self.points]
        if any(not math.isfinite(t) or t < 0 for t in times):
            raise ValueError(f"schedule times must be finite seconds >= 0, got {times}")
        if times[0] != 0:
            raise ValueError(f"a target schedule must start at second 0, got {times[0]}")
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"schedule times must be strictly increasing, got {times}")
        for t, k in self.points:
            check_kbps(k, f"schedule target at {t} s")

    @classmethod
    def parse(cls, text: str) -> "TargetSchedule":
        """Parse ``"0:2000,10:800"``; a bare number is a constant target."""
        text = str(text).strip()
        if not text:
            raise ValueError("empty target schedule")
        points = []
        for item in text.split(","):
            item = item.strip()
            if ":" not in item:
                if len(text.split(",")) == 1:
                    return cls(((0.0, check_kbps(item)),))
                raise ValueError(f"schedule item {item!r} is not 'seconds:kbps'")
            t, k = item.split(":", 1)
            try:
                t_s = float(t)
            except ValueError:
                raise ValueError(f"schedule item {item!r}: {t!r} is not a number of seconds") from None
            points.append((t_s, check_kbps(k, f"schedule target at {t_s} s")))
        return cls(tuple(points))

    @classmethod
    def constant(cls, kbps: float) -> "TargetSchedule":
        return cls(((0.0, check_kbps(kbps)),))

    def at(self, t_s: float) -> float:
        """The target in force at ``t_s`` seconds after the stream's start (before 0: the first one)."""
        i = bisect.bisect_right([t for t, _ in self.points], float(t_s)) - 1
        return self.points[max(i, 0)][1]

    def __str__(self) -> str:
        return ",".join(f"{t:g}:{k:g}" for t, k in self.points)
