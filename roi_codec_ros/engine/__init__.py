"""Coding engines behind one interface (no ROS): the learned ROI codec (default) and real-time classical coders.

    engine name      format  what
    neural           rcb1    RoiCodec: the learned ROI codec (intra only for now), detector features as object prior
    x264 | x265      h264 | hevc   libx264 / libx265 tune=zerolatency through roi_codec_ros.classical, ROI side data
    h264_nvenc, hevc_nvenc, h264_v4l2m2m   hardware encoders, only where ``probe`` finds them working

``create_engine(name, ...)`` builds one; ``engine_status()`` says which are usable here and why not;
``AnyFormatDecoder`` decodes the frames of any engine by ``EncodedFrame.format``.  The nodes, the CLI and the
evaluation talk only to ``Engine`` / ``StreamEncoder`` / ``StreamDecoder`` (``base``).  docs/engines.md.
"""
from __future__ import annotations

import functools

import av
import numpy as np

from .base import (
    FORMAT_H264,
    FORMAT_HEVC,
    FORMAT_RCB1,
    FORMATS,
    CodedFrame,
    Engine,
    ForeignFrameError,
    KeyframePolicy,
    MissingReferenceError,
    StreamDecoder,
    StreamEncoder,
    UnsupportedFormatError,
    check_keyframe_interval,
)
from .classical import ENGINES as CLASSICAL_ENGINES
from .classical import ClassicalEngine, ClassicalSettings, ClassicalStreamDecoder
from .hardware import SPECS as HARDWARE_SPECS
from .hardware import HardwareEngine

NEURAL = "neural"
ENGINE_NAMES = (NEURAL, *CLASSICAL_ENGINES, *HARDWARE_SPECS)
_LIBRARIES = {"x264": "libx264", "x265": "libx265"}


@functools.lru_cache(maxsize=None)
def _hardware_probe(name: str) -> tuple[str | None, bool]:
    from .hardware import probe

    return probe(HARDWARE_SPECS[name])


def engine_status(probe_hardware: bool = True) -> dict[str, str | None]:
    """engine name -> None when usable on this machine, else the reason (hardware probed once per process)."""
    status: dict[str, str | None] = {NEURAL: None}
    for name, lib in _LIBRARIES.items():
        status[name] = None if lib in av.codecs_available else f"this PyAV build has no {lib} encoder"
    for name in HARDWARE_SPECS:
        status[name] = _hardware_probe(name)[0] if probe_hardware else "not probed"
    return status


def create_engine(name: str, *, model_path: str | None = "default", device: str = "cpu", precision: str | None = None,
                  analysis_precision: str = "auto", fp16: bool = False,
                  classical: ClassicalSettings | None = None) -> Engine:
    """The engine ``name`` (``ENGINE_NAMES``). Neural: ``RoiCodec.load(model_path, device, fp16, precision=...,
    analysis_precision=...)`` (ValueError/FileNotFoundError as it raises them); classical: ``classical`` settings
    (default real-time ones); hardware: probed here, RuntimeError with the reason when it cannot run."""
    if name == NEURAL:
        from .neural import NeuralEngine

        return NeuralEngine.load(model_path, device=device, precision=precision, analysis_precision=analysis_precision,
                                 fp16=fp16)
    if name in CLASSICAL_ENGINES:
        reason = engine_status(probe_hardware=False)[name]
        if reason:
            raise RuntimeError(reason)
        settings = classical or ClassicalSettings()
        return ClassicalEngine(settings, encoder=name) if settings.encoder != name else ClassicalEngine(settings)
    if name in HARDWARE_SPECS:
        reason, roi = _hardware_probe(name)
        if reason is not None:
            raise RuntimeError(reason)
        return HardwareEngine(HARDWARE_SPECS[name], roi)
    raise ValueError(f"engine must be one of {', '.join(ENGINE_NAMES)}, got {name!r}")


class AnyFormatDecoder(StreamDecoder):
    """Decodes frames of every engine by format: rcb1 with the neural decoder it was given (None = rcb1 frames are
    UnsupportedFormatError), h264 / hevc with a classical decoder made on first use."""

    def __init__(self, neural: StreamDecoder | None = None):
        self._decoders: dict[str, StreamDecoder] = {}
        if neural is not None:
            self._decoders[FORMAT_RCB1] = neural
        self.formats = (*([FORMAT_RCB1] if neural is not None else []), FORMAT_H264, FORMAT_HEVC)
        self._last: StreamDecoder | None = None

    def decoder_for(self, fmt: str) -> StreamDecoder:
        self._check_format(fmt)
        if fmt not in self._decoders:
            self._decoders[fmt] = ClassicalStreamDecoder(fmt)
        return self._decoders[fmt]

    def decode(self, data: bytes, fmt: str | None = None) -> np.ndarray:
        if fmt is None:
            raise UnsupportedFormatError("AnyFormatDecoder needs the frame's format")
        decoder = self.decoder_for(fmt)
        self._last = decoder
        return decoder.decode(data, fmt)

    def reset(self) -> None:
        for decoder in self._decoders.values():
            decoder.reset()

    @property
    def has_reference(self) -> bool:
        return self._last is not None and self._last.has_reference


__all__ = [
    "AnyFormatDecoder", "CLASSICAL_ENGINES", "ClassicalEngine", "ClassicalSettings", "CodedFrame", "ENGINE_NAMES",
    "Engine", "FORMATS", "FORMAT_H264", "FORMAT_HEVC", "FORMAT_RCB1", "ForeignFrameError", "HARDWARE_SPECS",
    "HardwareEngine", "KeyframePolicy", "MissingReferenceError", "NEURAL", "StreamDecoder", "StreamEncoder",
    "UnsupportedFormatError", "check_keyframe_interval", "create_engine", "engine_status",
]
