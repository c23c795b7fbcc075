"""The codec core: model, entropy model, losses, bitstream container and the RoiCodec API (no ROS imports).

Nothing here imports the detector, training, evaluation or command-line packages: they build on this one.
"""
from .api import EncodedFrame, RoiCodec
from .bitstream import BitstreamError
from .checkpoint import (
    DEFAULT_MODEL_PATH,
    DetectorMismatchError,
    DetectorMismatchWarning,
    ModelFileError,
    check_detector_match,
    export_model,
    load_model_file,
)
from .conditioning import ControlRanges
from .model import ModelConfig, RoiHyperprior, build_model

__all__ = [
    "BitstreamError",
    "ControlRanges",
    "DEFAULT_MODEL_PATH",
    "DetectorMismatchError",
    "DetectorMismatchWarning",
    "EncodedFrame",
    "ModelConfig",
    "ModelFileError",
    "RoiCodec",
    "RoiHyperprior",
    "build_model",
    "check_detector_match",
    "export_model",
    "load_model_file",
]
