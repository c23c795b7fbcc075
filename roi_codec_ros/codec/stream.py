"""Streams of the ROI codec: I-frames, and P-frames that code only the residual of the latents to the previous frame.

    enc = codec.stream_encoder(keyframe_interval=10)     dec = codec.stream_decoder()
    frame = enc.encode(rgb, roi_mask, features, rate=, roi_weight=)  ->  rgb = dec.decode(frame.data)
    enc.request_keyframe()                                            (raises MissingReferenceError without it)
    enc.keyframe_roi_weight = 1.0    # "HQ I-frames" (Fathima et al. 5.6): I-frames uniform, P-frames at roi_weight

A P-frame codes the integer residual ``r = round(y_t) - p_t`` to a prediction ``p_t``: the previous latents
``y_hat_{t-1}`` moved by block motion on y's grid (``motion.py``), under the model's P-frame entropy model where it
has one (``RoiHyperprior.inter_codec``, trained by ``roi_codec_ros.training.inter``), else the intra one.
``y_hat_t = p_t + r = round(y_t)``, so a P-frame decodes to exactly the picture of the intra frame, at the bits of
the residual (docs/video.md has the measurements).  With ``flow_prediction`` a block may predict from the reference
picture warped by a flow field (``warp.py``), a prediction kept to 1/16: there ``r = round(y_t - p_t)``, and the
picture is no longer the intra one, only as close to y (within half a step per latent).

Every frame of a stream is a version-3 frame (docs/bitstream.md): its stream id, its sequence number and, in a
P-frame, the sequence number and a CRC-32 of the reference latents.  A decoder decodes a P-frame only when it holds
exactly that reference, and never outputs a picture decoded against another one.  A frame with a latent gain map is
an intra frame of its own (version 2): after it the stream continues with a keyframe.
"""
from __future__ import annotations

import secrets
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .bitstream import FRAME_I, FRAME_P, STREAM_VERSION, MissingReferenceError


def check_keyframe_interval(frames) -> int:
    """0 = keyframes only at the start and on request; N >= 1 = also every N-th frame (1 = every frame)."""
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or int(frames) < 0:
        raise ValueError(f"keyframe_interval must be an integer >= 0 (0 = only on request), got {frames!r}")
    return int(frames)


class KeyframePolicy:
    """Which frame of a stream is a keyframe: the first, every ``interval``-th since the last keyframe, and the one
    after a request.  Shared by the codec's streams and the engines so that they agree on the rule."""

    def __init__(self, interval: int = 0):
        self.interval = check_keyframe_interval(interval)
        self._since_keyframe: int | None = None  # frames coded since the last keyframe; None = nothing coded yet
        self._requested = False

    def set_interval(self, interval: int) -> None:
        self.interval = check_keyframe_interval(interval)

    def request(self) -> None:
        self._requested = True

    def restart(self) -> None:
        """The next frame starts a new stream (e.g. a new frame size): a keyframe."""
        self._since_keyframe = None

    @property
    def next_is_keyframe(self) -> bool:
        if self._since_keyframe is None or self._requested:
            return True
        return self.interval > 0 and self._since_keyframe >= self.interval

    def coded(self, keyframe: bool) -> None:
        """Record the frame just coded (``keyframe`` = what the encoder really produced)."""
        if keyframe:
            self._since_keyframe, self._requested = 1, False
        else:
            self._since_keyframe = (self._since_keyframe or 0) + 1


# with flow_prediction, P-frames coded without trying the flow after a try whose flow did not pay: its cost (a g_s,
# the flow, a g_a) is spent only every this many frames where the camera stands still
FLOW_RETRY_FRAMES = 4


# A stream's latents are multiples of 1/LATENT_STEPS: integers, or where a block predicts from a warped picture, that
# prediction (round(g_a) kept to 1/16: rounding it to integers as well doubles the rounding noise the residual codes)
# plus an integer residual
LATENT_STEPS = 16


def latent_crc(y_hat: Tensor) -> int:
    """CRC-32 of a stream's latents in units of 1/LATENT_STEPS, as int32 little-endian bytes, row-major: what a
    P-frame names its reference, and a flow prediction its warped latents, by."""
    units = torch.round(y_hat.detach().cpu().double() * LATENT_STEPS).to(torch.int32)
    return zlib.crc32(units.contiguous().numpy().astype("<i4").tobytes())


@dataclass
class _Reference:
    stream_id: int
    seq: int
    y_hat: Tensor  # (1, M, h, w) float32 multiples of 1/LATENT_STEPS, on the CPU
    crc: int
    size: tuple[int, int]  # the frame's (height, width)
    rate: float = 0.0  # the frame's rate (as its header reads)
    picture: np.ndarray | None = None  # the decoder's picture of it (H x W x 3 uint8), for flow predictions


class StreamEncoder:
    """One stream of one camera (not thread-safe).  ``keyframe_interval`` as ``KeyframePolicy``."""

    def __init__(self, codec, keyframe_interval: int = 10, stream_id: int | None = None,
                 keyframe_roi_weight: float | None = None):
        self.codec = codec
        self.keyframes = KeyframePolicy(keyframe_interval)
        self.keyframe_roi_weight = keyframe_roi_weight
        self.stream_id = secrets.randbits(32) if stream_id is None else int(stream_id) & 0xFFFFFFFF
        self._seq = 0
        self._reference: _Reference | None = None
        # P-frames may also predict from the reference picture warped by a flow field (codec/warp.py): fewer bits
        # under camera motion, for about 2x the encode time (one g_s and one g_a more) and 1.9x the decode time
        # (docs/video.md); a change applies from the next frame
        self.flow_prediction = bool(codec.p_frame_warp)
        self._flow_wait = 0  # P-frames to code without trying the flow (it did not pay on the last try)

    @property
    def keyframe_roi_weight(self) -> float | None:
        """The ROI weight of planned I-frames (None = the frame's own ``roi_weight``).  1 codes them uniformly, the
        "HQ I-frame" of Fathima et al. (5.6), made for codecs whose P-frames inherit their reference's background.
        Ours do not (a P-frame decodes to its own intra picture), so here it only costs bits (docs/video.md).  A
        scene cut found while coding a P-frame stays at the frame's weight."""
        return self._keyframe_roi_weight

    @keyframe_roi_weight.setter
    def keyframe_roi_weight(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            try:
                self.codec.ranges.check(0.5, value)
            except ValueError as err:
                raise ValueError(f"keyframe_roi_weight: {err}") from None
        self._keyframe_roi_weight = value

    def request_keyframe(self) -> None:
        """The next frame is an I-frame (e.g. a decoder lost its reference, or a new subscriber joined)."""
        self.keyframes.request()

    def reset(self) -> None:
        """Forget the reference: the next frame is an I-frame (frames were coded outside this stream)."""
        self._reference = None

    @property
    def next_is_keyframe(self) -> bool:
        return self._reference is None or self.keyframes.next_is_keyframe

    def _reference_picture(self) -> np.ndarray:
        """What the decoder sees of the reference (one g_s, once per reference): the picture flow fields warp."""
        ref = self._reference
        if ref.picture is None:
            ref.picture = self.codec._synthesize(ref.y_hat, ref.rate, *ref.size)[0]
        return ref.picture

    def encode(self, rgb: np.ndarray, roi_mask: np.ndarray | None = None, features=None, rate: float = 0.5,
               roi_weight: float = 1.0, roi_gain: float = 1.0):
        """Code the next frame: ``EncodedFrame`` with ``keyframe`` True for an I-frame (arguments as
        ``RoiCodec.encode``; an I-frame takes ``keyframe_roi_weight`` when it is set).  A frame of another size than
        the reference, and one whose latent residual would cost more than its latents (a scene cut), is an I-frame."""
        size = tuple(np.asarray(rgb).shape[:2])
        keyframe = self.next_is_keyframe or self._reference.size != size
        seq = self._seq
        if keyframe:
            stream, reference = {"frame_type": FRAME_I, "stream_id": self.stream_id, "seq": seq}, None
            roi_weight = roi_weight if self.keyframe_roi_weight is None else self.keyframe_roi_weight
        else:
            ref = self._reference
            stream = {"frame_type": FRAME_P, "stream_id": self.stream_id, "seq": seq, "ref_seq": ref.seq, "ref_crc": ref.crc}
            reference = ref.y_hat
        try_flow = not keyframe and self.flow_prediction and self._flow_wait <= 0
        picture = self._reference_picture() if try_flow else None
        frame, y_hat = self.codec._encode(rgb, roi_mask, features, rate, roi_weight, roi_gain, reference, stream, picture)
        if try_flow:  # a still camera never sends flow: then try again only every FLOW_RETRY_FRAMES P-frames
            self._flow_wait = 0 if self.codec.read_header(frame.data).has_flow else FLOW_RETRY_FRAMES
        elif not keyframe:
            self._flow_wait -= 1
        self.keyframes.coded(frame.keyframe)  # a P-frame planned at a scene cut comes out as an I-frame
        if frame.data[3] != STREAM_VERSION:  # a gain map made it an intra frame of its own: the stream goes on
            self._reference = None  # with an I-frame
            return frame
        self._reference = _Reference(self.stream_id, seq, y_hat.cpu(), latent_crc(y_hat), size, frame.rate)
        self._seq = (seq + 1) & 0xFFFFFFFF
        return frame


class StreamDecoder:
    """Decodes the frames of streams in order (not thread-safe): I-frames and intra frames on their own, a P-frame
    only against exactly the reference it names (else ``MissingReferenceError``, a ``BitstreamError``)."""

    def __init__(self, codec):
        self.codec = codec
        self._reference: _Reference | None = None

    @property
    def has_reference(self) -> bool:
        return self._reference is not None

    def reset(self) -> None:
        """Forget the reference (frames went missing): the next frame must be a keyframe."""
        self._reference = None

    def decode(self, data: bytes) -> np.ndarray:
        header = self.codec.read_header(data)
        reference = None
        if header.is_p_frame:
            ref = self._reference
            problem = None
            if ref is None:
                problem = "no reference is held (joined late, lost frames or reset)"
            elif ref.stream_id != header.stream_id:
                problem = f"the reference held is of stream {ref.stream_id:08x}"
            elif ref.seq != header.ref_seq:
                problem = f"the reference held is frame {ref.seq}"
            elif ref.crc != header.ref_crc:
                problem = "the reference held has other latents (CRC mismatch)"
            if problem:
                raise MissingReferenceError(f"P-frame {header.seq} of stream {header.stream_id:08x} needs frame "
                                            f"{header.ref_seq} as its reference: {problem}")
            reference = ref.y_hat
        image, _, header, y_hat = self.codec._decode(data, reference, ref.picture if reference is not None else None)
        if header.is_stream_frame:
            self._reference = _Reference(header.stream_id, header.seq, y_hat.cpu(), latent_crc(y_hat),
                                         (header.height, header.width), header.rate, image.copy())
        else:  # an intra frame outside any stream (version 1/2): nothing can reference it
            self._reference = None
        return image


__all__ = ["LATENT_STEPS", "KeyframePolicy", "MissingReferenceError", "StreamDecoder", "StreamEncoder",
           "check_keyframe_interval", "latent_crc"]
