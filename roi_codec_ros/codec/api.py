"""``RoiCodec``: the one way to encode and decode a frame (used by the CLI, the ROS nodes, evaluation).

Determinism by design: the entropy-coding side (z/w decoding, h_s, i_s, scale combination, scale-table
indexes, y coding) always runs on the CPU, on both ends, from integer CDF tables stored in the model file: h_s,
i_s and the combiner as an integer network exact in float32 (models with ``integer_side``, codec/integer_side.py),
else in float64.  The transforms run on the chosen device: g_a, g_s and the encoder-only side analysis h_a / i_a, whose
outputs are quantised and transmitted, never recomputed by a decoder.  So the decoded *latents* are identical
whatever device, thread count, process or precision decodes the stream; the pixels are then computed by the
synthesis transform on the decoder's device (bit-exact on the same device type and build, and on CPU between 1 and
2 threads; see README "Determinism").

Precision (docs/deployment.md has the measured costs):

- ``analysis_precision`` (encoder only): ``"auto"`` = bf16 autocast of g_a and h_a/i_a on a CPU with native bf16
  (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``), fp32 elsewhere; or ``"fp32"``, ``"bf16"``, ``"fp16"``
  (CUDA).  Any ``y`` the encoder produces is a valid stream: only which integers it sends changes (round(y)
  differs on ~0.15 % of the symbols with bf16), and every decoder decodes it as before.
- ``precision`` (decoder, g_s): ``"exact"`` (default) = fp32, the pixels bit-exact across processes and 1/2 CPU
  threads; ``"fast"`` = bf16 autocast on CPU (needs native bf16), fp16 on CUDA: faster, deterministic on one
  machine, but the pixels differ from the exact decoder's by a few levels.
- ``channels_last_synthesis`` (default on CPU): g_s weights and ``y_hat`` in channels-last memory layout: oneDNN's
  transposed convolutions are ~2x faster so, and the pixels are bit-identical to the contiguous layout (tested).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from roi_codec_ros.devices import resolve_device

from .bitstream import (
    FRAME_I,
    FRAME_P,
    GAIN_STREAM,
    MOTION_STREAM,
    STREAM_VERSION,
    MissingReferenceError,
    MAX_PIXELS,
    MAX_SIDE,
    FLAG_FEATURES,
    FLAG_LATENT_GAIN,
    FLAG_MOTION,
    FLAG_ROI,
    FLAG_WARP,
    WARP_STREAM,
    PredictionMismatchError,
    BitstreamError,
    FrameHeader,
    GainMap,
    code_to_gain,
    code_to_rate,
    gain_to_code,
    guard_rans_string,
    pack_frame,
    pack_gain_map,
    pack_flow,
    pack_motion,
    rate_to_code,
    unpack_frame,
    unpack_gain_map,
    unpack_flow,
    unpack_motion,
)
from compressai.ops import compute_padding

from .checkpoint import DEFAULT_MODEL_PATH, load_model_file, model_fingerprint
from .conditioning import GAIN_LEVELS, ControlRanges, latent_gain_levels, weighted_roi_mask
from . import motion, warp
from .stream import LATENT_STEPS, latent_crc
from .model import ModelConfig, RoiHyperprior, build_model


@dataclass
class EncodedFrame:
    """One compressed frame and what the encoder knows about it."""

    data: bytes
    height: int
    width: int
    rate: float
    roi_weight: float
    beta: float
    model_id: str
    encode_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    roi_gain: float = 1.0  # the explicit latent gain applied in the ROI (1 = none: no gain map was sent)
    keyframe: bool = True  # False: a P-frame (decodes only after its reference, see stream_encoder)

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.height * self.width)


PRECISIONS = ("exact", "fast")
ANALYSIS_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 in oneDNN (AVX512-BF16 / AMX): bf16 autocast is then faster, not emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _check_precision(device: torch.device, name: str, dtype: torch.dtype | None) -> None:
    if dtype is None:
        return
    if device.type == "cpu":
        if dtype == torch.float16:
            raise ValueError(f"{name}: fp16 is only supported on CUDA devices (use bf16 or fp32 on the CPU)")
        if not cpu_supports_bf16():
            raise ValueError(f"{name}: bf16 needs a CPU with native bf16 (AVX512-BF16/AMX); this one has none, use fp32")
    elif device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{name}: this CUDA device has no bf16; use fp16 or fp32")
    elif device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: reduced precision is only implemented for cpu and cuda, not {device.type}")


# bits of a P-frame residual per unit of its cost proxy sum log2(1 + |r|): 3.3-6.4 measured on the shared clips at
# rates 0-1 (docs/video.md); the low end, so a frame sends its flow field only where that surely pays
WARP_BITS_PER_PROXY = 3.0

# the highest p_frame_max_cost: a residual that costs as much as the latents predicts nothing, and an I-frame of it
# decodes without a reference (a scene cut, or a subscriber that joins there), whatever a P-frame entropy model
# might save on it (the calibration of model 746f7b6e found 1.0232; 3bbe5518 found 0.9802, bc9884d7 0.9814, kept in 6c1fa87e)
MAX_P_FRAME_COST = 1.0


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The padded frame size (``compressai.ops.compute_padding``).  The frame sits at the top left of the padded
    tensor (the bitstream's convention: the decoder crops ``[:height, :width]``), so only the size of CompressAI's
    centred split is used, all of it at the bottom and right."""
    (left, right, top, bottom), _ = compute_padding(height, width, min_div=multiple)
    return height + top + bottom, width + left + right


def gain_map_from_mask(roi_mask: np.ndarray | None, roi_gain: float, padded: tuple[int, int]) -> GainMap | None:
    """The gain map of explicit latent scaling for an HxW ROI weight map in [0, 1] (``latent_gain_levels``: the
    largest weight of each y cell, GAIN_LEVELS levels; the padding is background).  None when there is nothing to
    scale (no mask, gain 1, or no cell above level 0): the frame stays version 1."""
    code = gain_to_code(roi_gain)
    if roi_mask is None or code == 0:
        return None
    h, w = roi_mask.shape
    grid = torch.zeros(1, 1, *padded)
    grid[0, 0, :h, :w] = torch.tensor(np.asarray(roi_mask, np.float32))
    levels = latent_gain_levels(grid)[0, 0].to(torch.uint8).numpy()
    if not levels.any():
        return None
    return GainMap(code=code, levels=GAIN_LEVELS, cells=levels.tobytes())


def gain_tensor(gain_map: GainMap, y_shape: tuple[int, int]) -> Tensor:
    """The (1, 1, h, w) float64 gains of a gain map, as the encoder and the decoder both compute them."""
    table = torch.tensor([gain_map.gain(level) for level in range(gain_map.levels)], dtype=torch.float64)
    cells = torch.frombuffer(bytearray(gain_map.cells), dtype=torch.uint8).long().reshape(1, 1, *y_shape)
    return table[cells]


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
        raise ValueError(f"image must be an HxWx3 uint8 RGB array, got {got}")
    h, w = image.shape[:2]
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ValueError(f"image size {w}x{h} outside 1..{MAX_SIDE} pixels per side")
    if h * w > MAX_PIXELS:
        raise ValueError(f"image of {w}x{h} pixels exceeds the bitstream limit of {MAX_PIXELS} pixels")
    return image


RANDOM_MODEL_CONFIG = ModelConfig(N=32, M=48, fusion_channels=8, object_channels=16)  # RoiCodec.random's default


class RoiCodec:
    """Encode RGB frames to self-describing bytes and back (see module docstring for determinism)."""

    def __init__(
        self,
        model: RoiHyperprior,
        device: str | torch.device = "cpu",
        fp16: bool = False,
        info: dict | None = None,
        *,
        precision: str | None = None,
        analysis_precision: str = "auto",
        channels_last_synthesis: bool | None = None,
    ):
        """``fp16`` (CUDA only, kept for older callers) = ``analysis_precision="fp16"`` and ``precision="fast"``.

        precision: decoder, ``"exact"`` (default) or ``"fast"``; analysis_precision: encoder, ``"auto"``, ``"fp32"``,
        ``"bf16"``, ``"fp16"``; channels_last_synthesis: ``None`` = on for CPU, off for CUDA (see module docstring).
        Another runtime can take over the encoder's transforms through ``set_analysis_backend`` (OpenVINO:
        ``roi_codec_ros.deploy.openvino_backend.use_openvino``).
        """
        self.device = resolve_device(device)
        if fp16 and self.device.type != "cuda":
            raise ValueError("fp16 is only supported on CUDA devices")
        self.fp16 = fp16
        if precision is None:
            precision = "fast" if fp16 else "exact"
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if analysis_precision not in ANALYSIS_PRECISIONS:
            raise ValueError(f"analysis_precision must be one of {ANALYSIS_PRECISIONS}, got {analysis_precision!r}")
        if analysis_precision == "auto":
            if fp16:
                analysis_precision = "fp16"
            elif self.device.type == "cpu" and cpu_supports_bf16():
                analysis_precision = "bf16"
            else:
                analysis_precision = "fp32"
        self.precision = precision
        self.analysis_precision = analysis_precision
        self.analysis_dtype = _DTYPES[analysis_precision]
        _check_precision(self.device, "analysis_precision", self.analysis_dtype)
        if precision == "fast":
            self.synthesis_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        else:
            self.synthesis_dtype = None
        _check_precision(self.device, "precision='fast'", self.synthesis_dtype)
        self.channels_last_synthesis = (
            self.device.type == "cpu" if channels_last_synthesis is None else bool(channels_last_synthesis)
        )
        self.info = info or {}
        model = model.eval()
        self.model_id = model_fingerprint(model)
        self.model_hash = bytes.fromhex(self.model_id)[:8]
        # entropy side on CPU float64 (determinism); transforms on the device
        self._coder = copy.deepcopy(model.latent_codec).double().cpu().eval()
        self._inter_coder = copy.deepcopy(model.inter_codec).double().cpu().eval() if model.config.inter_prior else None
        self.model = model.to(self.device)
        if self.device.type == "cpu":
            # oneDNN's 5x5 convolutions are ~10 % faster on channels-last weights on CPU.  Encoder-only: y may differ
            # in the last float bits, which changes no decoder computation.
            for part in (self.model.g_a_convs, self.model.fusion_proj):
                part.to(memory_format=torch.channels_last)
        # Synthesis: same bits in either layout (oneDNN computes the same sums; test_codec_speed.py checks it on the
        # shipped model), channels-last is ~2x faster on CPU.  Set at construction: it changes the weights' layout.
        self.model.g_s_convs.to(memory_format=torch.channels_last if self.channels_last_synthesis else torch.contiguous_format)
        self.config: ModelConfig = model.config
        self.analysis_backend = "torch"
        self._analysis_graph = None
        # A planned P-frame is coded as an I-frame when the residual's cost proxy (sum log2(1 + |v|)) exceeds this
        # share of the latents'.  0.6 for a model without a P-frame entropy model (its P-frame bytes reached the intra
        # frame's at 0.6-0.8, docs/video.md); one with it has its own, calibrated by roi-codec train-inter and kept in
        # the model file's metadata (an encoder-side choice, not hashed), at most MAX_P_FRAME_COST.
        calibrated = self.info.get("metadata", {}).get("inter_prior", {}).get("p_frame_max_cost", 0.6)
        self.p_frame_max_cost = min(float(calibrated), MAX_P_FRAME_COST)
        # P-frames predict their latents by block motion on y's grid (codec/motion.py); False = from the reference
        # as it is (streams before motion; benchmarks compare the two)
        self.p_frame_motion = True
        # New streams' default for flow_prediction (StreamEncoder): P-frames may also predict blocks from the
        # reference picture warped by a coarse flow field (codec/warp.py): fewer bits under camera motion, for a flow
        # estimate and one more g_a at both ends and a g_s at the encoder; off (it fails the P/I time target)
        self.p_frame_warp = False
        self.warp_grid = warp.DEFAULT_GRID
        # encoder-only g_a with fewer passes (RoiHyperprior.analysis(for_coding=True)); False = the training graph's
        # ``analysis`` (benchmarks compare the two)
        self.folded_analysis = True
        self._zero_maps: dict[tuple, tuple[list[Tensor], Tensor]] = {}  # see _zero_feature_maps

    def set_analysis_backend(self, name: str, graph=None) -> None:
        """Run the encoder's transforms (g_a and the side analysis) in another runtime: ``graph(x, mask_alpha,
        embedding, features, (h, w)) -> (y, z, w)``; ``("torch", None)`` goes back.  Any y/z/w is a valid stream,
        so the decoder is untouched."""
        if (name == "torch") != (graph is None):
            raise ValueError("analysis backend 'torch' takes no graph; any other backend needs one")
        self.analysis_backend, self._analysis_graph = name, graph

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: str = "cpu",
        fp16: bool = False,
        *,
        precision: str | None = None,
        analysis_precision: str = "auto",
        channels_last_synthesis: bool | None = None,
    ) -> "RoiCodec":
        """Load a model file; ``None``/"default" = the model shipped in the package, "random" = untrained test model.

        See ``__init__`` for the precision options."""
        options = dict(precision=precision, analysis_precision=analysis_precision,
                       channels_last_synthesis=channels_last_synthesis)
        if path is None or str(path) == "default":
            if not DEFAULT_MODEL_PATH.is_file():
                raise FileNotFoundError(
                    f"the shipped default model is missing ({DEFAULT_MODEL_PATH}); reinstall the package or pass a model path"
                )
            path = DEFAULT_MODEL_PATH
        if str(path) == "random":
            return cls.random(device=device, fp16=fp16, **options)
        model, info = load_model_file(path)
        info["path"] = str(path)
        return cls(model, device=device, fp16=fp16, info=info, **options)

    @classmethod
    def random(cls, seed: int = 0, device: str = "cpu", config: ModelConfig | None = None, fp16: bool = False, **options) -> "RoiCodec":
        """An untrained model (small by default) with valid CDF tables: for tests and plumbing, not for quality."""
        generator_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            model = build_model(config or RANDOM_MODEL_CONFIG)
        finally:
            torch.random.set_rng_state(generator_state)
        with torch.no_grad():
            # make the rate knob visibly act on an untrained model: latents grow with the rate
            bins = model.config.rate_bins
            model.g_a_cond[-1].scale.mul_(torch.logspace(0, 3, bins, base=4.0)[:, None])
        model.update(force=True)
        return cls(model, device=device, fp16=fp16, info={"path": "random", "seed": seed}, **options)

    # -- knobs ---------------------------------------------------------------------------------------
    @property
    def ranges(self) -> ControlRanges:
        return self.config.ranges

    @property
    def rate_range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    @property
    def roi_weight_range(self) -> tuple[float, float]:
        return (self.ranges.alpha_min, self.ranges.alpha_max)

    @property
    def detector_sha256(self) -> str | None:
        detector = self.info.get("detector")
        return detector.get("sha256") if isinstance(detector, dict) else None

    # -- helpers -------------------------------------------------------------------------------------
    def _to_tensor(self, array: np.ndarray, padded: tuple[int, int]) -> Tensor:
        x = torch.from_numpy(np.array(array, copy=not array.flags.writeable or not array.flags.c_contiguous)).to(self.device)
        x = x.permute(2, 0, 1).unsqueeze(0).float()
        pad_h, pad_w = padded[0] - array.shape[0], padded[1] - array.shape[1]
        # replicate padding costs fewer bits than zeros at the borders
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if (pad_h or pad_w) else x

    @property
    def uses_features(self) -> bool:
        """False for a model trained without detector features (its model file says so); older files: True."""
        return bool(self.info.get("uses_features", True))

    def _features(self, features: Sequence[Tensor] | None, h: int, w: int) -> list[Tensor]:
        if features is None or not self.uses_features:
            return self.model.zero_features(1, h, w, self.device)
        expected = self.config.feature_channels
        if len(features) != len(expected) or any(
            f.ndim != 4 or f.shape[0] != 1 or f.shape[1] != c for f, c in zip(features, expected)
        ):
            shapes = [tuple(f.shape) for f in features]
            raise ValueError(f"features must be {len(expected)} maps (1,C,h,w) with C={list(expected)}, got {shapes}")
        if not all(bool(torch.isfinite(f).all()) for f in features):
            raise ValueError("features contain NaN or infinite values")
        return [f.to(self.device, torch.float32) for f in features]

    def _autocast(self, dtype: torch.dtype | None):
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    # -- encode / decode -----------------------------------------------------------------------------
    def encode(
        self,
        image: np.ndarray,
        roi_mask: np.ndarray | None = None,
        features: Sequence[Tensor] | None = None,
        rate: float = 0.5,
        roi_weight: float = 1.0,
        roi_gain: float = 1.0,
    ) -> EncodedFrame:
        """Encode an HxWx3 uint8 RGB frame.

        roi_mask: HxW in [0,1] (bool or float), None = no ROI (uniform quality whatever roi_weight);
        features: the detector adapter's frame-aligned maps, None = zero-filled; rate in [0,1] (1 = most bits);
        roi_weight = alpha >= 1 (1 = uniform quality): the implicit ROI input the model was trained with;
        roi_gain in [1, 8] (1 = off): explicit latent scaling, y's quantisation step divided by up to this much where
        the mask is 1 (by less where it is fractional), sent as a gain map (format version 2): ROI quality beyond
        what the rate knob alone reaches, at more bits.

        An intra frame (it decodes on its own); ``stream_encoder()`` codes streams of I- and P-frames.
        """
        return self._encode(image, roi_mask, features, rate, roi_weight, roi_gain)[0]

    @torch.inference_mode()
    def _encode(self, image, roi_mask, features, rate, roi_weight, roi_gain=1.0, reference: Tensor | None = None,
                stream: dict | None = None, reference_picture: np.ndarray | None = None) -> tuple[EncodedFrame, Tensor]:
        """``encode`` -> (frame, the latents y_hat every decoder of it reconstructs).  ``stream``: the version-3
        fields (frame_type, stream_id, seq, ref_seq, ref_crc), dropped when the frame gets a gain map; ``reference``: a P-frame's reference latents (y is
        coded as the integer residual ``round(y) - reference``, so y_hat = round(y): the picture of the intra frame,
        at the bits of the residual); ``reference_picture``: the decoder's picture of the reference, for predictions
        from it warped by a flow field (a stream with ``flow_prediction``)."""
        start = time.perf_counter()
        image, roi_mask, rate_code, (x, mask_alpha, feats, embedding) = self._inputs(image, roi_mask, features, rate, roi_weight)
        h, w = image.shape[:2]
        m = RoiHyperprior.PAD_MULTIPLE
        padded = padded_size(h, w, m)
        rate_q = code_to_rate(rate_code)
        gain_map = gain_map_from_mask(roi_mask, roi_gain, padded)
        if gain_map is not None:  # a frame with a gain map is an intra frame of its own (version 2), in a stream too
            stream = reference = None
        t_input = time.perf_counter()
        # encoder-only transforms, in analysis_precision: whatever y/z/w come out are coded as they are
        if self._analysis_graph is not None:
            y, z, w_side = self._analysis_graph(x, mask_alpha, embedding, feats, (h, w))
            t_g_a = time.perf_counter()  # one graph: g_a and the side analysis together, counted as g_a
            side, motion_field, flow_field = {"z": z, "w": w_side}, None, None
            if reference is not None:
                raise ValueError("P-frames need the torch analysis backend (the graph gives side latents of y)")
        else:
            # reference becomes the prediction of the latents (the reference moved by the motion field)
            y, side, t_g_a, reference, _, motion_field, flow_field = self._torch_analysis(
                x, mask_alpha, feats, embedding, features, h, w, padded, reference,
                (image, reference_picture, rate_code) if reference_picture is not None else None)
            if reference is None and stream is not None and stream.get("frame_type") == FRAME_P:
                stream = {**stream, "frame_type": FRAME_I, "ref_seq": 0, "ref_crc": 0}  # coded as an I-frame
        if self._coder.use_cached_tables:
            # y is only rounded (the same integers in float32 as in float64); z and w go to float64 inside, where
            # the decoder's own float64 work on them starts
            y = y.to("cpu", torch.float32, memory_format=torch.contiguous_format)
            side = {k: v.cpu() for k, v in side.items()}
        else:  # the earlier path: float64 y, z, w into CompressAI's calls
            y = y.double().cpu().contiguous()
            side = {k: v.double().cpu().contiguous() for k, v in side.items()}
        t_analysis = time.perf_counter()
        gain = gain_tensor(gain_map, tuple(y.shape[-2:])) if gain_map is not None else None
        coder, context = self._entropy_coder(reference)
        out = coder.compress(y, side=side, gain=gain, context=context)  # y: the residual in a P-frame
        strings = {name: out["strings"][name][0] for name in ("y", "z", "w")}
        flags = (FLAG_FEATURES if features is not None and self.uses_features else 0) | (FLAG_ROI if roi_mask is not None else 0)
        if gain_map is not None:
            strings[GAIN_STREAM] = pack_gain_map(gain_map)
            flags |= FLAG_LATENT_GAIN
        if reference is not None and motion_field is not None:
            strings[MOTION_STREAM] = pack_motion(motion_field)
            flags |= FLAG_MOTION
            if flow_field is not None:
                strings[WARP_STREAM] = pack_flow(flow_field)
                flags |= FLAG_WARP
        header = FrameHeader(
            model_hash=self.model_hash,
            height=h,
            width=w,
            rate_code=rate_code,
            z_shape=tuple(out["shape"]["z"]),
            w_shape=tuple(out["shape"]["w"]),
            pad_multiple=m,
            flags=flags,
            version=STREAM_VERSION if stream is not None else 2 if gain_map is not None else 1,
            **(stream or {}),
        )
        data = pack_frame(header, strings)
        y_hat = out["y_hat"].float() if reference is None else reference + out["y_hat"].float()
        end = time.perf_counter()
        return EncodedFrame(
            data=data,
            height=h,
            width=w,
            rate=rate_q,
            roi_weight=float(roi_weight),
            beta=float(self.ranges.beta(rate_q)),
            model_id=self.model_id,
            encode_ms=(end - start) * 1e3,
            roi_gain=code_to_gain(gain_map.code) if gain_map is not None else 1.0,
            timings_ms={
                "analysis": (t_analysis - start) * 1e3,  # input + g_a + side analysis (sum of the next three)
                "input": (t_input - start) * 1e3,
                "g_a": (t_g_a - t_input) * 1e3,
                "side": (t_analysis - t_g_a) * 1e3,
                "entropy": (end - t_analysis) * 1e3,
            },
            keyframe=reference is None,
        ), y_hat

    def _inputs(self, image, roi_mask, features, rate, roi_weight):
        """Checked inputs of one frame -> (image, roi_mask as an array or None, rate code, (x, mask_alpha, detector
        features, rate embedding)): the encoder conditions on the rate the decoder will read, ``code_to_rate(code)``."""
        image = _check_image(image)
        self.ranges.check(float(rate), float(roi_weight))
        h, w = image.shape[:2]
        padded = padded_size(h, w, RoiHyperprior.PAD_MULTIPLE)
        rate_code = rate_to_code(rate)
        if roi_mask is not None:
            roi_mask = np.asarray(roi_mask)
            if roi_mask.shape != (h, w):
                raise ValueError(f"roi_mask shape {roi_mask.shape} does not match the image ({h}, {w})")
            if roi_mask.dtype.kind not in "biuf" or not np.isfinite(roi_mask).all():
                raise ValueError("roi_mask must hold finite numbers in [0, 1] (NaN, inf or non-numbers given)")
        u_alpha = torch.tensor([self.ranges.u_alpha(float(roi_weight))], device=self.device)
        x, mask_alpha = self._input_tensors(image, roi_mask, u_alpha, padded)
        embedding = self.model.rate_embedding(torch.tensor([code_to_rate(rate_code)], device=self.device))
        return image, roi_mask, rate_code, (x, mask_alpha, self._features(features, h, w), embedding)

    @torch.inference_mode()
    def frame_latents(self, image: np.ndarray, rate: float = 0.5, roi_mask: np.ndarray | None = None,
                      roi_weight: float = 1.0, features: Sequence[Tensor] | None = None,
                      rounded: bool = True) -> tuple[Tensor, Tensor]:
        """(round(y), f) of one frame as the encoder computes them: the integer latents an intra frame codes (and
        every decoder of it gets) and the object prior's detector features on y's grid.  Training data for the
        P-frames' entropy model (``roi_codec_ros.training.inter``).  ``rounded=False``: y itself, unquantised (what
        no stream carries: for measuring what quantisation costs, ``benchmarks/roi_ceiling.py``)."""
        image, _, _, (x, mask_alpha, feats, embedding) = self._inputs(image, roi_mask, features, rate, roi_weight)
        h, w = image.shape[:2]
        y, _, _, _, f, _, _ = self._torch_analysis(x, mask_alpha, feats, embedding, features, h, w,
                                                padded_size(h, w, RoiHyperprior.PAD_MULTIPLE))
        y = y.float().cpu()
        return (torch.round(y) if rounded else y), f.float().cpu()

    def _entropy_coder(self, reference: Tensor | None):
        """(the float64 CPU entropy model of a frame, its context): a P-frame's residual (``reference`` given) has its
        own where the model has one, which also sees the reference latents."""
        if reference is None or self._inter_coder is None:
            return self._coder, None
        return self._inter_coder, reference.detach().to("cpu", torch.float64)

    def _input_tensors(self, image: np.ndarray, roi_mask: np.ndarray | None, u_alpha: Tensor,
                       padded: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``x`` = RGB/255 and ``mask_alpha = (1 - m) * u_alpha + m``, (1,3,Hp,Wp) and (1,1,Hp,Wp), replicate-padded
        at the bottom/right to ``padded``.  (Writing both into one channels-last buffer in place was measured: 20 %
        slower at 1 thread, because g_a's concatenation of the two strided views costs more than it saves.)"""
        x = self._to_tensor(image, padded) / 255.0
        if roi_mask is None:
            mask = torch.ones(1, 1, *padded, device=self.device)
        else:
            mask = self._to_tensor(np.clip(roi_mask.astype(np.float32), 0.0, 1.0)[..., None], padded)
        return x, weighted_roi_mask(mask, u_alpha)

    def _torch_analysis(self, x, mask_alpha, feats, embedding, features, h, w, padded, reference=None, pictures=None):
        """g_a and the side analysis -> (y, side latents, time after g_a, prediction, the object prior's features f,
        motion field, flow field); with a P-frame's ``reference``, y comes back as the integer residual ``round(y) - prediction``
        (``round(y - prediction)`` where the prediction is fractional; float32), the prediction being the reference moved by the motion field (``codec/motion.py``; the reference
        itself without ``p_frame_motion``), and the side latents are those of the residual (under the P-frames'
        entropy model where the model has one); the prediction comes back None when the residual would cost about as
        much as the latents (``p_frame_max_cost``): an I-frame.  ``pictures``: (the frame, the reference picture, the
        rate code) for a flow-field candidate (a stream with ``flow_prediction``); the flow field comes back if a
        block uses it."""
        with self._autocast(self.analysis_dtype):
            zero = self._zero_feature_maps(h, w, padded) if features is None or not self.uses_features else None
            y = self.model.analysis(x, mask_alpha, feats, embedding, (h, w), fused=zero[0] if zero else None,
                                    for_coding=self.folded_analysis)
            self._sync()
            t_g_a = time.perf_counter()
            f = zero[1] if zero else self.model.object_features(feats, y, (h, w))
            motion_field = flow_field = None
            if reference is not None:  # integer residual: y_hat = prediction + it = round(y), the intra frame's latents
                # on the CPU, where the reference and the entropy side live (the motion search is small on y's grid)
                y_cpu = y.float().cpu()
                latents = torch.round(y_cpu)
                reference = reference.cpu()
                if self.p_frame_motion:
                    warped = None
                    if pictures is None:
                        motion_field = motion.search(latents, reference)
                    else:  # the stream predicts from warped pictures too (flow_prediction)
                        frame, reference_picture, rate_code = pictures
                        cells = warp.estimate(frame, reference_picture, self.warp_grid)
                        warped = self._picture_latents(warp.warp(reference_picture, cells, self.warp_grid), rate_code)
                        # the search weighs the residual round(y - warped) such a block codes, as the integer
                        # candidate it equals: latents - it
                        motion_field, plain, saved = motion.search_with_warp(
                            latents, reference, latents - torch.round(y_cpu - warped))
                        if motion_field.warped:
                            flow_field = warp.to_field(cells, self.warp_grid, latent_crc(warped))
                            if not self._flow_pays(saved, flow_field):
                                motion_field, flow_field = plain, None
                    reference = motion.predict(reference, motion_field, warped)
                # integer residual r: y_hat = prediction + r.  An integer prediction gives round(y) itself (the intra
                # frame's latents); a fractional one (a warped block, or latents that came from one) rounds y's
                # distance to it instead
                fractional = reference != torch.round(reference)
                residual = latents - reference
                if bool(fractional.any()):
                    residual = torch.where(fractional, torch.round(y_cpu - reference), residual)
                # a scene cut, or motion the residual does not capture: it would cost more than the latents
                cost = float(torch.log2(1 + residual.abs()).sum()) / max(float(torch.log2(1 + latents.abs()).sum()), 1e-9)
                if cost < self.p_frame_max_cost:
                    y = residual.to(y.device)
                else:
                    reference = motion_field = flow_field = None
            codec = self.model.inter_codec if reference is not None and self._inter_coder is not None else self.model.latent_codec
            side = codec.analyse_side(y, f)
        return y, side, t_g_a, reference, f, motion_field, flow_field

    @staticmethod
    def _flow_pays(saved_proxy: float, flow_field) -> bool:
        """Whether a flow field saves more bits than its bytes cost: the bits of a residual are at least
        ~WARP_BITS_PER_PROXY x its sum of log2(1 + |r|) (docs/video.md)."""
        return WARP_BITS_PER_PROXY * saved_proxy > 8 * len(pack_flow(flow_field))

    @torch.inference_mode()
    def _picture_latents(self, picture: np.ndarray, rate_code: int) -> Tensor:
        """g_a of a picture rounded to 1/LATENT_STEPS, as both ends of a stream compute it for a flow-field prediction
        (``warp.py``): in float32 whatever ``analysis_precision``, without ROI mask or detector features (the decoder
        has neither), at the frame's rate; (1, M, h, w) float32 on the CPU."""
        h, w = picture.shape[:2]
        padded = padded_size(h, w, RoiHyperprior.PAD_MULTIPLE)
        # the encoder calls this inside its analysis autocast (bf16 on CPUs that have it); the decoder does not:
        # without this both ends would compute different latents
        with self._autocast(None):
            u_alpha = torch.tensor([self.ranges.u_alpha(1.0)], device=self.device)
            x, mask_alpha = self._input_tensors(picture, None, u_alpha, padded)
            embedding = self.model.rate_embedding(torch.tensor([code_to_rate(rate_code)], device=self.device))
            fused = self._zero_feature_maps(h, w, padded, torch.float32)[0]
            y = self.model.analysis(x, mask_alpha, self._features(None, h, w), embedding, (h, w), fused=fused,
                                    for_coding=True)
        return (torch.round(y.float() * LATENT_STEPS) / LATENT_STEPS).cpu()

    def _zero_feature_maps(self, h: int, w: int, padded: tuple[int, int],
                           dtype: torch.dtype | None = None) -> tuple[list[Tensor], Tensor]:
        """The fusion maps and object features of zero-filled features for this frame size (no detector): the
        same computation as in ``analysis``/``object_features``, done once per size and precision, and computed in
        that precision whatever autocast the caller is under (so the cache key says what it holds).  Saves the
        projections and the resizing of constant maps on every frame."""
        dtype = dtype or self.analysis_dtype or torch.float32
        key = (h, w, padded, dtype, self.device)
        hit = self._zero_maps.get(key)
        if hit is None:
            with self._autocast(None if dtype == torch.float32 else dtype):
                feats = self.model.zero_features(1, h, w, self.device)
                fused = [self.model.fusion_map(i, feats[i - 1], (padded[0] >> i, padded[1] >> i), (h, w), dtype)
                         for i in (1, 2, 3)]
                y_like = torch.empty(1, self.config.M, padded[0] // 16, padded[1] // 16, device=self.device, dtype=dtype)
                hit = (fused, self.model.object_features(feats, y_like, (h, w)))
            if len(self._zero_maps) >= 4:
                self._zero_maps.pop(next(iter(self._zero_maps)))
            self._zero_maps[key] = hit
        return hit

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def stream_encoder(self, keyframe_interval: int = 10, stream_id: int | None = None,
                       keyframe_roi_weight: float | None = None):
        """A stream of I- and P-frames (``roi_codec_ros.codec.stream``); ``encode`` stays intra-only.
        ``keyframe_roi_weight``: the ROI weight of I-frames (1 = uniform "HQ I-frames"; None = each frame's own)."""
        from .stream import StreamEncoder

        return StreamEncoder(self, keyframe_interval, stream_id, keyframe_roi_weight)

    def stream_decoder(self):
        """Decodes streams (and intra frames): holds the reference a P-frame needs."""
        from .stream import StreamDecoder

        return StreamDecoder(self)

    def read_header(self, data: bytes) -> FrameHeader:
        """Parse and check a frame's container (raises BitstreamError); no decoding."""
        header, _ = unpack_frame(data, expected_model_hash=self.model_hash)
        return header

    def decode(self, data: bytes) -> np.ndarray:
        """Decode bytes from ``encode`` to an HxWx3 uint8 RGB image; raises ``BitstreamError`` on bad data."""
        return self.decode_timed(data)[0]

    def decode_timed(self, data: bytes) -> tuple[np.ndarray, dict[str, float]]:
        """``decode`` plus its stage times in ms: ``entropy`` (container, z/w/y decoding, h_s/i_s, indexes),
        ``g_s`` (synthesis on the device), ``output`` (crop, uint8, to host), ``total``.  A P-frame of a stream
        raises MissingReferenceError: only ``stream_decoder()`` holds references."""
        image, stages, _, _ = self._decode(data)
        return image, stages

    def _warped_prediction(self, header: FrameHeader, strings: dict, reference_picture: np.ndarray | None) -> Tensor:
        """The latents of the reference picture warped by a P-frame's flow field, checked against the encoder's."""
        if reference_picture is None or reference_picture.shape[:2] != (header.height, header.width):
            raise MissingReferenceError(f"P-frame {header.seq} predicts from its reference's picture, which this "
                                        "decoder does not hold: decode the stream with a stream decoder")
        flow = unpack_flow(strings[WARP_STREAM], header.height, header.width)
        cells = warp.from_field(flow, header.height, header.width)
        warped = self._picture_latents(warp.warp(reference_picture, cells, flow.grid), header.rate_code)
        if latent_crc(warped) != flow.latents_crc:
            raise PredictionMismatchError(
                f"P-frame {header.seq}: the warped reference picture gives other latents here than at the encoder "
                "(CRC mismatch: another CPU, device or library version computes g_a differently); nothing is "
                "output until the next keyframe")
        return warped

    @torch.inference_mode()
    def _decode(self, data: bytes, reference: Tensor | None = None,
                reference_picture: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, float], FrameHeader, Tensor]:
        """-> (image, stage times, header, the latents y_hat); ``reference``: the latents a P-frame's residual is
        added to (the caller checked that they are the frame's reference), ``reference_picture`` its decoded
        picture (a P-frame with a flow field predicts from it)."""
        start = time.perf_counter()
        header, strings = unpack_frame(data, expected_model_hash=self.model_hash)
        if header.is_p_frame and reference is None:
            raise MissingReferenceError(f"P-frame {header.seq} of stream {header.stream_id:08x} needs its reference "
                                        f"(frame {header.ref_seq}): decode the stream with a stream decoder")
        if header.pad_multiple != RoiHyperprior.PAD_MULTIPLE:
            raise BitstreamError(f"pad multiple {header.pad_multiple} is not this model's {RoiHyperprior.PAD_MULTIPLE}")
        shapes = {"z": header.z_shape, "w": header.w_shape, "y": header.y_shape}
        # CompressAI's rANS decoder has no end-of-string check: reject/pad first (see bitstream.guard_rans_string)
        channels = {"y": self.config.M, "z": self.config.N, "w": self.config.object_channels}
        guarded = {
            name: [guard_rans_string(name, strings[name], channels[name] * shapes[name][0] * shapes[name][1])]
            for name in ("y", "z", "w")
        }
        gain = gain_tensor(unpack_gain_map(strings[GAIN_STREAM], header.y_shape), header.y_shape) if header.has_gain_map else None
        try:
            if header.is_p_frame:
                if tuple(reference.shape[-2:]) != tuple(header.y_shape):
                    raise MissingReferenceError(f"P-frame {header.seq}: its reference has latents of another size")
                if header.has_motion:  # the prediction the residual was coded against
                    warped = self._warped_prediction(header, strings, reference_picture) if header.has_flow else None
                    field = unpack_motion(strings[MOTION_STREAM], header.y_shape, header.has_flow)
                    reference = motion.predict(reference, field, warped)
            coder, context = self._entropy_coder(reference if header.is_p_frame else None)
            out = coder.decompress(guarded, shapes, gain=gain, context=context)
        except BitstreamError:
            raise
        except Exception as exc:  # the entropy decoder rejected the strings
            raise BitstreamError(f"entropy-coded payload could not be decoded: {exc}") from exc
        y_hat = out["y_hat"].float()
        if header.is_p_frame:
            y_hat = reference + y_hat
        if not torch.isfinite(y_hat).all():
            raise BitstreamError("entropy-coded payload decoded to non-finite latents")
        t_entropy = time.perf_counter()
        image, t_g_s = self._synthesize(y_hat, header.rate, header.height, header.width)
        end = time.perf_counter()
        return image, {
            "entropy": (t_entropy - start) * 1e3,
            "g_s": (t_g_s - t_entropy) * 1e3,
            "output": (end - t_g_s) * 1e3,
            "total": (end - start) * 1e3,
        }, header, y_hat

    @torch.inference_mode()
    def _synthesize(self, y_hat: Tensor, rate: float, height: int, width: int) -> tuple[np.ndarray, float]:
        """The decoder's picture of latents ``y_hat`` at ``rate`` (the frame's, as read from its header) -> (H x W x 3
        uint8 RGB, the time g_s ended); a stream encoder keeps it as the reference picture of flow predictions."""
        y_hat = y_hat.to(self.device)
        if self.channels_last_synthesis:
            y_hat = y_hat.contiguous(memory_format=torch.channels_last)
        embedding = self.model.rate_embedding(torch.tensor([rate], device=self.device))
        with self._autocast(self.synthesis_dtype):
            x_hat = self.model.synthesis(y_hat, embedding)
        self._sync()
        t_g_s = time.perf_counter()
        x_hat = x_hat[0, :, :height, :width].float().clamp(0.0, 1.0)
        return (x_hat * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy(), t_g_s
