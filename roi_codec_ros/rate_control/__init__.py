"""Bitrate control for the codec engines (issue 12): pure Python + numpy, no ROS, no torch.

    RateController   one camera: kbps target -> rate (and ROI weight as a last resort) per frame, leaky bucket,
                     online bits model, I/P-frame budgeting, skip counting, state() for statistics
    WindowMeter      achieved kbps over a trailing window; window_bitrates for aligned offline windows
    TargetSchedule   "0:2000,10:800" (CLI --target-schedule)
    BudgetAllocator  one total kbps over several cameras by weight and content (the budget node's logic)
    BitsModel        the online model of ln(bytes/pixel) vs rate ('loglinear' or 'table')
    simulate         a fast simulated codec and scene, fitted to measurements of the real codec

See docs/rate_control.md.
"""
from .budget import BudgetAllocator, CameraReport, water_fill
from .controller import Decision, FrameType, RateController, RateControllerConfig
from .meter import WindowMeter, tracking_summary, trailing_bitrates, window_bitrates
from .model import MODEL_KINDS, BitsModel, ModelPrior, fit_prior
from .schedule import TargetSchedule, check_kbps

__all__ = [
    "MODEL_KINDS",
    "BitsModel",
    "BudgetAllocator",
    "CameraReport",
    "Decision",
    "FrameType",
    "ModelPrior",
    "RateController",
    "RateControllerConfig",
    "TargetSchedule",
    "WindowMeter",
    "check_kbps",
    "fit_prior",
    "water_fill",
    "tracking_summary",
    "trailing_bitrates",
    "window_bitrates",
]
