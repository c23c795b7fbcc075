"""Coding engines (``roi_codec_ros.engine``) behind the same ``encode(image, boxes) / decode(bytes)`` contract as the
baselines: our learned codec (``OursCodec``, the neural engine) and any other engine (``EngineCodec``, e.g. the
real-time x264 engine the nodes run).

The ROI mask an engine receives is the hard union of the same boxes every other codec and the ROI metrics use
(``metrics.boxes_to_mask``) or, with per-class ROI weights, the runner's weighted mask (``RoiSelection.mask``), and
the boxes themselves (classical engines code ROI per box); detector features are
passed through to engines that use them when the evaluation runs a detector, else the neural codec zero-fills them
(the "without object features" setting of the TUM paper).

One setting = one stream (``Engine.stream_encoder``), *stateful* for inter-frame engines: frames must arrive in
stream order and ``decode`` must get every payload ``encode`` made, in order (the runner does that: frames outer,
settings inner).  A frame's bytes are what the node publishes in ``EncodedFrame.data``.
"""
from __future__ import annotations

import numpy as np

from .baselines import Codec
from .metrics import boxes_to_mask, check_image

DEFAULT_RATES = (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)
DEFAULT_ROI_WEIGHTS = (1.0, 4.0, 16.0)
DEFAULT_KEYFRAME_INTERVAL = 10


def load_roi_codec(source: str | None, device: str = "cpu"):
    """``RoiCodec`` from a model path, "default" (shipped model) or "random" (untrained tiny test model)."""
    try:
        from roi_codec_ros.codec import RoiCodec
    except ImportError as err:  # the codec package is part of this repository; say so if it is broken
        raise RuntimeError(f"cannot import roi_codec_ros.codec.RoiCodec: {err}") from err
    if source in (None, "", "default"):
        return RoiCodec.load(None, device=device)
    if source == "random":
        return RoiCodec.random(seed=0, device=device)
    return RoiCodec.load(source, device=device)


class EngineCodec(Codec):
    """One (rate, roi_weight) setting of an engine: one stream, keyframes every ``keyframe_interval`` frames."""

    def __init__(self, engine, rate: float, roi_weight: float = 1.0, name: str | None = None,
                 keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL, fps: float = 10.0,
                 keyframe_roi_weight: float | None = None):
        engine.check(rate, roi_weight)  # ValueError with the engine's own range
        if keyframe_roi_weight is not None:
            engine.check(rate, keyframe_roi_weight)
        self.engine, self.rate, self.roi_weight = engine, float(rate), float(roi_weight)
        self.keyframe_interval, self.fps = int(keyframe_interval), float(fps)
        self.keyframe_roi_weight = None if keyframe_roi_weight is None else float(keyframe_roi_weight)
        self.name = name or engine.name
        self.family = f"{self.name} α={self.roi_weight:g}"
        self.setting = f"rate={self.rate:g}"
        self.format = engine.format
        self._encoder = None
        self._decoder = None
        self.keyframes = 0

    takes_roi_mask = True  # the engines' encoders take a mask (the neural codec reads fractional values)

    def reset(self) -> None:
        """Start a new stream with the next frame (a keyframe)."""
        self._encoder = self._decoder = None

    def encode(self, image, boxes=None, features=None, roi_mask=None) -> bytes:
        """``roi_mask``: the mask to code with (e.g. class-weighted); None = the 0/1 union of ``boxes``."""
        image = check_image(image)
        if self._encoder is None:
            self._encoder = self.engine.stream_encoder(keyframe_interval=self.keyframe_interval, fps=self.fps)
            self._encoder.keyframe_roi_weight = self.keyframe_roi_weight
        mask, box_array = None, None
        if boxes is not None and len(boxes):
            box_array = np.asarray(boxes, np.float64).reshape(-1, 4)
            mask = boxes_to_mask(box_array, image.shape[:2]).astype(np.float32)
        if roi_mask is not None:
            mask = np.asarray(roi_mask, np.float32)
        frame = self._encoder.encode(image, roi_mask=mask, boxes=box_array,
                                     features=features if self.engine.uses_features else None,
                                     rate=self.rate, roi_weight=self.roi_weight)
        self.keyframes += frame.keyframe
        return frame.data

    def decode(self, data: bytes) -> np.ndarray:
        if self._decoder is None:
            self._decoder = self.engine.stream_decoder()
        return self._decoder.decode(data, self.format)

    def params(self) -> dict:
        return {"rate": self.rate, "roi_weight": self.roi_weight, "keyframe_interval": self.keyframe_interval,
                "keyframe_roi_weight": self.keyframe_roi_weight, **self.engine.describe()}


class OursCodec(EngineCodec):
    """One (rate, roi_weight) setting of a loaded ``RoiCodec`` (the neural engine); settings share the codec object.
    Intra only: every frame is a keyframe, so frame order does not matter."""

    def __init__(self, codec, rate: float, roi_weight: float = 1.0, name: str = "ours", roi_gain: float = 1.0):
        from roi_codec_ros.engine.neural import NeuralEngine

        low, high = codec.rate_range
        if not low <= float(rate) <= high:
            raise ValueError(f"rate must be in [{low}, {high}], got {rate}")
        a_low, a_high = codec.roi_weight_range
        if not a_low <= float(roi_weight) <= a_high:
            raise ValueError(f"roi_weight must be in [{a_low}, {a_high}] for this model, got {roi_weight}")
        # keyframe_interval 1: every frame an intra frame (streams: the spec engine:neural:k=N)
        super().__init__(NeuralEngine(codec, roi_gain=roi_gain), rate, roi_weight, name=name, keyframe_interval=1)
        self.codec = codec  # the evaluation bag writer recognises our codec by it
        self.roi_gain = float(roi_gain)

    def params(self) -> dict:
        return {
            "rate": self.rate,
            "roi_weight": self.roi_weight,
            "roi_gain": self.roi_gain,
            "model_id": self.codec.model_id,
            "model_path": str(getattr(self.codec, "info", {}).get("path", "")),
        }


def ours_grid(codec, rates=DEFAULT_RATES, roi_weights=DEFAULT_ROI_WEIGHTS, name: str = "ours",
              roi_gain: float = 1.0) -> list[OursCodec]:
    """Settings over the grid rates x roi_weights (one RD curve per roi_weight), all at one latent gain; weights
    outside the model's range are an error, not silently dropped."""
    return [OursCodec(codec, r, a, name=name, roi_gain=roi_gain) for a in roi_weights for r in rates]


def engine_grid(engine, rates=DEFAULT_RATES, roi_weights=DEFAULT_ROI_WEIGHTS, name: str | None = None,
                keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL, fps: float = 10.0,
                keyframe_roi_weight: float | None = None) -> list[EngineCodec]:
    """An engine's settings over rates x roi_weights (one stream, and one RD curve per roi_weight); keyframes at
    ``keyframe_roi_weight`` where given (else at each setting's roi_weight)."""
    return [EngineCodec(engine, r, a, name=name, keyframe_interval=keyframe_interval, fps=fps,
                        keyframe_roi_weight=keyframe_roi_weight) for a in roi_weights for r in rates]
