"""The learned ROI codec (``RoiCodec``) behind the engine interface: format ``rcb1``, streams of I- and P-frames
(``roi_codec_ros.codec.stream``: a P-frame codes the latent residual to the previous frame and decodes to the very
picture of an intra frame).  ``keyframe_interval`` and ``request_keyframe`` act as for the other engines.
"""
from __future__ import annotations

import time

import numpy as np

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.codec.bitstream import gain_to_code, unpack_frame

from .base import FORMAT_RCB1, CodedFrame, Engine, ForeignFrameError, StreamDecoder, StreamEncoder

NAME = "neural"


def _checked_gain(value: float) -> float:
    gain_to_code(value)  # ValueError outside [1, 8]
    return float(value)


class NeuralEngine(Engine):
    name = NAME
    format = FORMAT_RCB1

    def __init__(self, codec: RoiCodec, roi_gain: float = 1.0, flow_prediction: bool | None = None):
        self.codec = codec
        self.uses_features = bool(codec.uses_features)
        self.roi_gain = roi_gain
        # P-frames also predicted from the warped reference picture (codec StreamEncoder.flow_prediction): the
        # starting value of this engine's stream encoders; None = the model file's default
        self.flow_prediction = bool(codec.p_frame_warp if flow_prediction is None else flow_prediction)

    roi_gain = property(lambda self: self._roi_gain, lambda self, value: setattr(self, "_roi_gain", _checked_gain(value)),
                        doc="Explicit latent scaling in the ROI (``RoiCodec.encode``'s ``roi_gain``; 1 = off): the "
                            "starting gain of this engine's stream encoders")

    @classmethod
    def load(cls, path: str | None = "default", device: str = "cpu", *, precision: str | None = None,
             analysis_precision: str = "auto", fp16: bool = False) -> "NeuralEngine":
        """``RoiCodec.load`` (ValueError for a precision the device cannot run, FileNotFoundError for a model)."""
        return cls(RoiCodec.load(path or "default", device=device, fp16=fp16, precision=precision,
                                 analysis_precision=analysis_precision))

    @property
    def roi_weight_range(self) -> tuple[float, float]:
        return self.codec.roi_weight_range

    def check(self, rate: float, roi_weight: float) -> None:
        self.codec.ranges.check(float(rate), float(roi_weight))

    @property
    def rate_mapping(self) -> str:
        r = self.codec.ranges
        return (f"neural: log2(beta) = log2({r.beta_max:g}) - rate*(log2({r.beta_max:g}) - log2({r.beta_min:g})), "
                "the Lagrangian the model was trained for, sent in the bitstream as a 16-bit code")

    @property
    def roi_weight_mapping(self) -> str:
        lo, hi = self.roi_weight_range
        return (f"neural: alpha in [{lo:g}, {hi:g}] conditions the encoder (background mask value "
                f"u = 1 - ln(alpha/{lo:g})/ln({hi:g}/{lo:g})); ROI errors weigh alpha times background errors")

    def stream_encoder(self, keyframe_interval: int = 0, fps: float = 10.0) -> "NeuralStreamEncoder":
        return NeuralStreamEncoder(self.codec, keyframe_interval, roi_gain=self.roi_gain, flow_prediction=self.flow_prediction)

    def stream_decoder(self) -> "NeuralStreamDecoder":
        return NeuralStreamDecoder(self.codec)

    def describe(self) -> dict:
        return {**super().describe(), "model_id": self.codec.model_id, "model_path": str(self.codec.info.get("path", "")),
                "precision": self.codec.precision, "analysis_precision": self.codec.analysis_precision,
                "device": str(self.codec.device), "roi_gain": self.roi_gain, "flow_prediction": self.flow_prediction}


class NeuralStreamEncoder(StreamEncoder):
    """A stream of the codec (``RoiCodec.stream_encoder``): I-frames at the engine's keyframe policy, P-frames that
    code the latent residual to the previous frame in between (``keyframe_interval`` 1 = intra only)."""

    format = FORMAT_RCB1

    def __init__(self, codec: RoiCodec, keyframe_interval: int = 0, roi_gain: float = 1.0, flow_prediction: bool = False):
        super().__init__(keyframe_interval)
        self.codec = codec
        self.stream = codec.stream_encoder(keyframe_interval)
        self.stream.keyframes = self.keyframes  # one policy: the engine's interval, requests and restarts
        self.roi_gain = roi_gain
        self.flow_prediction = flow_prediction

    # per stream (not shared through the engine): a change applies from the next frame of this stream
    roi_gain = NeuralEngine.roi_gain
    flow_prediction = property(lambda self: self.stream.flow_prediction,
                               lambda self, value: setattr(self.stream, "flow_prediction", bool(value)),
                               doc="P-frames also predicted from the warped reference picture (StreamEncoder)")
    keyframe_roi_weight = property(lambda self: self.stream.keyframe_roi_weight,
                                   lambda self, value: setattr(self.stream, "keyframe_roi_weight", value),
                                   doc="ROI weight of planned I-frames, None = the frame's (codec StreamEncoder)")

    @property
    def next_is_keyframe(self) -> bool:
        return self.stream.next_is_keyframe

    def encode(self, rgb, *, roi_mask=None, boxes=None, features=None, rate=0.5, roi_weight=1.0) -> CodedFrame:
        # boxes are not needed: the mask they made (with soft edges) is what the model is conditioned on
        start = time.perf_counter()
        if self.keyframes.interval == 1:  # every frame a keyframe: plain intra frames (version 1/2, no stream block)
            frame = self.codec.encode(rgb, roi_mask=roi_mask, features=features, rate=rate,
                                      roi_weight=self._roi_weight_for(True, roi_weight),
                                      roi_gain=self.roi_gain)
            self.keyframes.coded(True)
            self.stream.reset()
        else:
            frame = self.stream.encode(rgb, roi_mask=roi_mask, features=features, rate=rate, roi_weight=roi_weight,
                                       roi_gain=self.roi_gain)
        return CodedFrame(
            data=frame.data, format=FORMAT_RCB1, keyframe=frame.keyframe, height=frame.height, width=frame.width,
            rate=frame.rate, roi_weight=frame.roi_weight, encode_ms=(time.perf_counter() - start) * 1e3,
            timings_ms=dict(frame.timings_ms), params={"beta": frame.beta, "roi_gain": frame.roi_gain},
        )


class NeuralStreamDecoder(StreamDecoder):
    formats = (FORMAT_RCB1,)

    def __init__(self, codec: RoiCodec):
        self.codec = codec
        self.stream = codec.stream_decoder()

    def decode(self, data: bytes, fmt: str | None = None) -> np.ndarray:
        """The image of an rcb1 frame. The model hash inside the bitstream is the one identity check: it is read
        only after the container's CRC passed, so a damaged frame is BitstreamError, never ForeignFrameError.
        A P-frame without its reference raises MissingReferenceError."""
        self._check_format(fmt)
        data = bytes(data)
        header, _ = unpack_frame(data)
        if header.model_hash != self.codec.model_hash:
            raise ForeignFrameError(
                f"made by codec model {header.model_hash.hex()}, this decoder has {self.codec.model_hash.hex()} "
                "(start the decoder with the encoder's model_path)"
            )
        return self.stream.decode(data)

    def reset(self) -> None:
        self.stream.reset()

    @property
    def has_reference(self) -> bool:
        return self.stream.has_reference
