"""The codec core: model, entropy model, losses, bitstream container and the RoiCodec API (no ROS imports)."""
from .api import EncodedFrame, RoiCodec
from .bitstream import BitstreamError
from .checkpoint import DEFAULT_MODEL_PATH, export_model, load_model_file
from .conditioning import ControlRanges
from .model import ModelConfig, RoiHyperprior, build_model

__all__ = [
    "BitstreamError",
    "ControlRanges",
    "DEFAULT_MODEL_PATH",
    "EncodedFrame",
    "ModelConfig",
    "RoiCodec",
    "RoiHyperprior",
    "build_model",
    "export_model",
    "load_model_file",
]
