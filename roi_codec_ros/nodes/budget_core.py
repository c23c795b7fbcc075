"""What budget_node does, without ROS: camera list and weights from parameters, encoder statistics -> the
allocator's reports, and which targets to send (``roi_codec_ros.rate_control.BudgetAllocator`` does the split).

    cameras ["cam_front/encoder", ...] + weights [2, 1, 1]  --camera_weights-->  {camera: weight}
    EncoderStatistics of each camera  --report_fields-->  BudgetAllocator.report(...)
    BudgetAllocator.allocate(now)  --TargetSender.due-->  {camera: kbps} to set as that encoder's target_kbps

A target is sent when it moved by more than ``tolerance`` from what the encoder last accepted (relative, so a
re-split that changes nothing costs no service call), never while a call for that camera is still in flight,
and again after a call failed or was refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

STATISTICS_SUFFIX = "statistics"  # <camera>/statistics: the encoder's ~/statistics
SET_PARAMETERS_SUFFIX = "set_parameters"  # <camera>/set_parameters: the encoder's parameter service
TARGET_PARAMETER = "target_kbps"
SEND_TOLERANCE = 0.005  # relative change of a camera's target below which nothing is sent


def camera_weights(cameras: Sequence[str], weights: Iterable) -> dict[str, float]:
    """{camera: weight} from the ``cameras`` and ``weights`` parameters (ValueError saying why not).

    cameras: encoder node names, relative to the budget node's namespace or absolute (``/cam_front/encoder``);
    weights: one number > 0 per camera, or a single number / empty list for equal weights."""
    names = [str(c).strip() for c in cameras]
    if not names or any(not n for n in names):
        raise ValueError(f"cameras must be a non-empty list of encoder node names, got {list(cameras)!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"cameras must not repeat a name, got {names}")
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
        raise ValueError(f"weights must be a list of numbers, got {weights!r}")
    values = list(weights)
    if any(isinstance(w, (bool, str, bytes)) or not isinstance(w, (int, float)) for w in values):
        raise ValueError(f"weights must be numbers, got {values!r}")
    values = [float(w) for w in values]
    if len(values) <= 1:
        values = values * len(names) if values else [1.0] * len(names)
    if len(values) != len(names):
        raise ValueError(f"weights needs one number per camera ({len(names)} cameras {names}), got {len(values)}: {values}")
    bad = [w for w in values if not (math.isfinite(w) and w > 0)]
    if bad:
        raise ValueError(f"weights must be finite and > 0, got {bad[0]}")
    return dict(zip(names, values))


def report_fields(msg) -> dict | None:
    """``BudgetAllocator.report`` keyword arguments from an EncoderStatistics message; None for messages that
    carry no frame (timer messages: their coverage is 0, not a measurement)."""
    if not msg.has_frame:
        return None

    def positive(value: float):
        value = float(value)
        return value if math.isfinite(value) and value > 0 else None

    coverage = float(msg.roi_coverage)
    return {
        "roi_coverage": min(max(coverage, 0.0), 1.0) if math.isfinite(coverage) else None,
        "rd_slope": positive(msg.rd_slope),
        "achieved_kbps": positive(msg.bitrate_kbps),
        "kbps_min": positive(msg.kbps_at_rate_min),
        "kbps_max": positive(msg.kbps_at_rate_max),
    }


@dataclass
class TargetSender:
    """Which camera targets to send now (see module docstring).  Not thread-safe: one executor thread."""

    tolerance: float = SEND_TOLERANCE
    accepted: dict[str, float] = field(default_factory=dict)  # last target each encoder accepted
    pending: dict[str, float] = field(default_factory=dict)  # calls in flight
    sent: int = 0
    failed: int = 0

    def due(self, allocation: dict[str, float]) -> dict[str, float]:
        out = {}
        for camera, kbps in allocation.items():
            if camera in self.pending:
                continue
            old = self.accepted.get(camera)
            if old is None or abs(kbps - old) > self.tolerance * max(old, 1e-9):
                out[camera] = float(kbps)
        return out

    def started(self, camera: str, kbps: float) -> None:
        self.pending[camera] = float(kbps)
        self.sent += 1

    def finished(self, camera: str, ok: bool) -> None:
        kbps = self.pending.pop(camera, None)
        if ok and kbps is not None:
            self.accepted[camera] = kbps
        elif not ok:
            self.failed += 1
            self.accepted.pop(camera, None)  # unknown: send again at the next allocation

    def forget(self, camera: str) -> None:
        self.pending.pop(camera, None)
        self.accepted.pop(camera, None)
