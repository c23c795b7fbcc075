"""Entropy model of the ROI codec: scale hyperprior ``z`` plus object prior ``w`` (TUM eq. 3-6).

Built from CompressAI latent codecs, one more part beside ``z`` as CompressAI's own ``HyperpriorLatentCodec``
composes them::

                   ┌───┐  z  ┌───┐ z_hat      z_hat ┌───┐ sigma_z
         y ──┬─►───┤h_a├──►──┤ Q ├───►───····───►───┤h_s├───►──┐
             │     └───┘     └───┘        EB        └───┘       │ concat     ┌─────────┐
             │     ┌───┐  w  ┌───┐ w_hat      w_hat ┌───┐ sigma_w├──►────────┤ combine ├─► scales of y
     [y; f] ─┼─►───┤i_a├──►──┤ Q ├───►───····───►───┤i_s├───►──┘            └─────────┘      │
             │     └───┘     └───┘        EB        └───┘                                     ▼
             │                     ┌───┐   y_hat                                              │
             └──────────────►──────┤ Q ├────►─────────────────····──────────────►─────────── y_hat
                                   └───┘                     GC

``f`` are the detector's multi-scale features resized to y's grid. The decoder only needs the three strings:
``w`` carries what the detector saw, so the receiver never runs the detector.  ``combine`` is a 1x1 conv on
``[sigma_z; sigma_w]`` initialised to pass ``sigma_z`` through, so a plain hyperprior warm-starts exactly.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import threading
from typing import Any

from compressai.entropy_models import EntropyBottleneck, EntropyModel, GaussianConditional
from compressai.latent_codecs import GaussianConditionalLatentCodec, HyperLatentCodec, LatentCodec
from compressai.layers import conv3x3
from compressai.models.utils import conv, deconv
import numpy as np
import torch
from torch import Tensor, nn

from .integer_side import IntegerScales


def hyper_analysis(in_channels: int, N: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        conv(in_channels, N, stride=1, kernel_size=3),
        nn.ReLU(inplace=True),
        conv(N, N),
        nn.ReLU(inplace=True),
        conv(N, out_channels),
    )


def hyper_synthesis(in_channels: int, N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(in_channels, N),
        nn.ReLU(inplace=True),
        deconv(N, N),
        nn.ReLU(inplace=True),
        conv3x3(N, M),
        nn.ReLU(inplace=True),
    )


class BucketizedGaussianConditional(GaussianConditional):
    """GaussianConditional whose scale-table lookup is one ``bucketize`` instead of a Python loop over the table
    (same indexes: the count of table entries below each scale; tested against CompressAI's loop)."""

    def build_indexes(self, scales: Tensor) -> Tensor:
        scales = self.lower_bound_scale(scales)
        return torch.bucketize(scales, self.scale_table[:-1].to(scales.dtype), right=False).int()


class ScaleCombiner(nn.Module):
    """1x1 conv on ``[sigma_z; sigma_w]`` (and ``context_channels`` more) -> scales of y; starts as the identity on
    sigma_z."""

    def __init__(self, M: int, context_channels: int = 0):
        super().__init__()
        self.mix = nn.Conv2d(2 * M + context_channels, M, kernel_size=1)
        with torch.no_grad():
            self.mix.weight.zero_()
            self.mix.weight[:, :M, 0, 0].copy_(torch.eye(M))
            self.mix.bias.zero_()

    def forward(self, params: Tensor) -> Tensor:
        return self.mix(params)


# CompressAI's rANS encoder never returns for |value| >= 2**27, NaN or inf (32-bit shift overflow).
MAX_CODABLE = 2.0**24


def check_codable(name: str, latent: Tensor) -> None:
    """Refuse latents the entropy coder cannot code (instead of hanging in C++)."""
    if not bool(torch.isfinite(latent).all()) or float(latent.abs().max()) >= MAX_CODABLE:
        raise ValueError(f"latent {name} is not finite or too large to entropy-code (|x| >= 2**24): bad input or overflow")


class RansTables:
    """An entropy model's integer CDF tables as the Python lists CompressAI's C++ rANS coder takes, built once.

    ``EntropyModel.compress``/``decompress`` convert the whole padded CDF table (``cdf.tolist()``, e.g. 64 x 3133
    ints for the Gaussian conditional) and the symbols and indexes through ``Tensor.tolist`` on every call, and build
    the decoded tensor with ``torch.tensor(list)``; that was about a third of the entropy-coding time.  Here every
    row is cut to its ``cdf_length`` (the coder reads no further: it searches ``cdf[0:cdf_length]``), the lists are
    cached until the model's buffers change (``update()``/``load_state_dict``), and the conversions go through
    numpy.  Same coder, same inputs: byte-identical strings and identical decoded symbols (tested against
    CompressAI's own ``compress``/``decompress``).
    """

    def __init__(self, model: EntropyModel):
        self.model = model
        self._key: tuple | None = None
        self._lists: tuple[list, list, list] | None = None

    def lists(self) -> tuple[list[list[int]], list[int], list[int]]:
        m = self.model
        buffers = (m._quantized_cdf, m._cdf_length, m._offset)
        key = tuple((id(b), b._version, tuple(b.shape)) for b in buffers)
        if key != self._key:
            m._check_cdf_size()
            m._check_cdf_length()
            m._check_offsets_size()
            lengths = m._cdf_length.reshape(-1).int().tolist()
            rows = m._quantized_cdf.cpu().numpy()
            cdfs = [rows[i, :n].tolist() for i, n in enumerate(lengths)]
            self._lists = (cdfs, lengths, m._offset.reshape(-1).int().tolist())
            self._key = key
        return self._lists

    def encode(self, symbols: Tensor, indexes: Tensor) -> bytes:
        """rANS-encode int symbols with their CDF indexes (one item of a batch)."""
        return self.encode_lists(_int_list(symbols), _int_list(indexes))

    def encode_lists(self, symbols: list[int], indexes: list[int]) -> bytes:
        """``encode`` for symbols and indexes already flattened to Python lists (what the C++ coder takes)."""
        cdfs, lengths, offsets = self.lists()
        return self.model.entropy_coder.encode_with_indexes(symbols, indexes, cdfs, lengths, offsets)

    def decode(self, string: bytes, indexes: Tensor) -> Tensor:
        """Decode one string to int32 symbols shaped like ``indexes``."""
        cdfs, lengths, offsets = self.lists()
        values = self.model.entropy_coder.decode_with_indexes(string, _int_list(indexes), cdfs, lengths, offsets)
        return torch.from_numpy(np.asarray(values, dtype=np.int32)).reshape(indexes.shape)


def _int_list(t: Tensor) -> list[int]:
    """A CPU int tensor as the flat Python list the coder takes (int64 goes to a list ~1.5x faster than int32)."""
    t = t.detach().reshape(-1).cpu()
    if t.dtype not in (torch.int32, torch.int64):
        t = t.to(torch.int32)
    return t.numpy().tolist()


def _tables(model: EntropyModel) -> RansTables:
    tables = model.__dict__.get("_rans_tables")
    if tables is None:
        tables = model.__dict__["_rans_tables"] = RansTables(model)  # plain attribute: not a module/buffer
    return tables


def _channel_indexes(channels: int, shape: tuple[int, int]) -> Tensor:
    return torch.arange(channels, dtype=torch.int32).view(1, -1, 1, 1).expand(1, channels, *shape)


_CHANNEL_INDEX_LISTS: dict[tuple[int, int, int], list[int]] = {}


def _channel_index_list(channels: int, shape: tuple[int, int]) -> list[int]:
    """``_int_list(_channel_indexes(...))``, built once per shape (a bottleneck codes channel c with CDF c)."""
    key = (channels, int(shape[0]), int(shape[1]))
    hit = _CHANNEL_INDEX_LISTS.get(key)
    if hit is None:
        if len(_CHANNEL_INDEX_LISTS) >= 16:
            _CHANNEL_INDEX_LISTS.pop(next(iter(_CHANNEL_INDEX_LISTS)))
        hit = _CHANNEL_INDEX_LISTS[key] = _int_list(_channel_indexes(channels, tuple(shape)))
    return hit


def _compress_side(codec: HyperLatentCodec, z: Tensor, cached: bool = True) -> tuple[list[bytes], tuple[int, int], Tensor]:
    """``HyperLatentCodec.compress`` for an already analysed side latent ``z = h_a(x)``, checked before it reaches
    the entropy coder, up to ``h_s``: returns (strings, shape, the ``z_hat`` the decoder gets).

    ``z_hat`` is computed as ``round(z - median) + median``: the very operations (and dtype) of the decoder's
    ``decompress`` on the coded symbols (rANS codes every symbol losslessly, out-of-range ones by bypass), without
    decoding the string we just wrote.  A test checks it equals ``decompress``.
    """
    check_codable("side", z)
    if z.shape[0] != 1:
        raise ValueError("the codec codes one frame at a time")
    shape = tuple(z.shape[-2:])
    bottleneck = codec.entropy_bottleneck
    medians = bottleneck._get_medians().detach().reshape(1, -1, 1, 1).to(z)
    if cached:  # EntropyBottleneck.compress: symbols round(z - median), one CDF per channel
        symbols = bottleneck.quantize(z, "symbols", medians)
        strings = [_tables(bottleneck).encode(symbols, _channel_indexes(z.shape[1], shape))]
    else:
        strings = bottleneck.compress(z)
    return strings, shape, bottleneck.quantize(z, "dequantize", medians)


def _quantize_side(codec: HyperLatentCodec, z: Tensor) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """The float64 ``z_hat = round(z - median) + median`` the decoder gets (see ``_compress_side``) and the integer
    symbols ``round(z - median)``, from one rounding: the same float64 operations as ``EntropyBottleneck.quantize``
    (``z`` in any float dtype is converted to float64 exactly first)."""
    check_codable("side", z)
    if z.shape[0] != 1:
        raise ValueError("the codec codes one frame at a time")
    bottleneck = codec.entropy_bottleneck
    z = z.detach().to(device="cpu", dtype=torch.float64)
    medians = bottleneck._get_medians().detach().reshape(1, -1, 1, 1).to(z)
    rounded = torch.round(z - medians)
    return rounded + medians, rounded.long(), tuple(z.shape[-2:])


def _encode_side(codec: HyperLatentCodec, symbols: Tensor, shape: tuple[int, int]) -> bytes:
    return _tables(codec.entropy_bottleneck).encode_lists(_int_list(symbols), _channel_index_list(symbols.shape[1], shape))


class _SidePool:
    """The encoder's second thread for the float64 entropy side when torch has more than one thread
    (``ObjectPriorLatentCodec.parallel_side``): the worker runs the object prior's ``h_s`` while the caller runs the
    hyperprior's and then the GIL-bound work (z/w rANS, y's symbol list); after the combiner each thread looks up
    the scale-table indexes of half the channels.  Torch runs with one thread per Python thread for that span
    (``torch.set_num_threads(1)``, process-wide, restored at the end): these float64 kernels are small, and with
    two OpenMP/MKL threads each they took 4-6x their 1-thread time when a core was busy (docs/deployment.md).  Same kernels on
    the same float64 inputs, so the same bits (h_s gives the same bits at 1 and 2 threads: every decoder relies on
    that already; ``test/test_codec_speed.py`` checks the worker's h_s against the 2-thread one and the bytes of
    every schedule against CompressAI's calls)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roi-codec-h_s")
            return self._pool


_SIDE_POOL = _SidePool()


def _decompress_side(codec: HyperLatentCodec, string: bytes, shape: tuple[int, int]) -> Tensor:
    """``EntropyBottleneck.decompress`` through the cached tables: the ``z_hat`` that ``HyperLatentCodec.decompress``
    runs h_s on."""
    bottleneck = codec.entropy_bottleneck
    medians = bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    values = _tables(bottleneck).decode(string, _channel_indexes(medians.shape[1], tuple(shape)))
    return bottleneck.dequantize(values, medians)  # values.type_as(medians) + medians, as CompressAI


def _index_list(conditional: GaussianConditional, scales: Tensor) -> list[int]:
    return _int_list(conditional.build_indexes(scales))


def _without_grad(inference: bool, fn, *args):
    """Run ``fn`` in the pool's worker in the caller's grad mode (grad mode is per thread)."""
    with torch.inference_mode() if inference else torch.no_grad():
        return fn(*args)


class ObjectPriorLatentCodec(LatentCodec):
    """Hyperprior ``z`` + object prior ``w`` -> Gaussian conditional for ``y`` (see module docstring).

    ``use_cached_tables`` (default True): code through ``RansTables``; False = CompressAI's own ``compress`` /
    ``decompress`` calls (the earlier path, kept so benchmarks and tests can compare the two: same bytes)."""

    use_cached_tables = True

    def __init__(self, N: int, M: int, object_in: int, object_channels: int, context_channels: int = 0):
        """``context_channels`` > 0: the scales of y also depend on a context both ends hold before decoding (a
        P-frame's reference latents), through ``context`` (a 3x3 conv + ReLU) into the combiner."""
        super().__init__()
        self.hyper = HyperLatentCodec(
            entropy_bottleneck=EntropyBottleneck(N),
            h_a=hyper_analysis(M, N, N),
            h_s=hyper_synthesis(N, N, M),
        )
        self.object = HyperLatentCodec(
            entropy_bottleneck=EntropyBottleneck(object_channels),
            h_a=hyper_analysis(M + object_in, N, object_channels),
            h_s=hyper_synthesis(object_channels, N, M),
        )
        self.y = GaussianConditionalLatentCodec(
            gaussian_conditional=BucketizedGaussianConditional(None),
            entropy_parameters=ScaleCombiner(M, context_channels),
            chunks=("scales",),
        )
        self.context = nn.Sequential(conv3x3(M, context_channels), nn.ReLU()) if context_channels else None
        # the coding path's h_s/i_s/combiner/context on integers, exact in float32 (codec/integer_side.py): set by
        # ``RoiHyperprior`` for models with ``integer_side``; None = the float networks, in float64 when coding
        self.integer: IntegerScales | None = None

    def scales(self, z_params: Tensor, w_params: Tensor, context: Tensor | None = None) -> Tensor:
        """The scales of y from the two side decoders' outputs (and the context, which a codec with a ``context``
        net requires: decoders hold it too)."""
        parts = [z_params, w_params]
        if self.context is not None:
            if context is None:
                raise ValueError("this entropy model needs a context (a P-frame's reference latents)")
            parts.append(self.context(context.to(z_params)))
        elif context is not None:
            raise ValueError("this entropy model takes no context")
        return self.y.entropy_parameters(torch.cat(parts, dim=1))

    def side_scales(self, z_hat: Tensor, w_hat: Tensor, context: Tensor | None = None) -> Tensor:
        """The scales of y from the decoded side latents, as both ends of a stream compute them: through the integer
        side where the model has one (float64 scales, exact), else h_s, i_s and ``scales`` in the coder's dtype."""
        if self.integer is not None:
            return self.integer(z_hat, w_hat, context)
        return self.scales(self.hyper.h_s(z_hat), self.object.h_s(w_hat), context)

    def forward(self, y: Tensor, f: Tensor, gain: Tensor | None = None, context: Tensor | None = None) -> dict[str, Any]:
        """Training pass (noise quantisation).  ``gain``: (B, 1, h, w) explicit latent scaling, as ``compress``:
        ``y * gain`` is quantised under the scales times ``gain`` and divided back.  ``context``: see ``scales``."""
        hyper_out = self.hyper(y)
        object_out = self.object(torch.cat([y, f], dim=1))
        scales = self.scales(hyper_out["params"], object_out["params"], context)
        if gain is None:
            y_hat, y_likelihoods = self.y.gaussian_conditional(y, scales)
        else:
            scaled_hat, y_likelihoods = self.y.gaussian_conditional(y * gain, scales * gain)
            y_hat = scaled_hat / gain
        return {
            "likelihoods": {"y": y_likelihoods, "z": hyper_out["likelihoods"]["z"], "w": object_out["likelihoods"]["z"]},
            "y_hat": y_hat,
        }

    def analyse_side(self, y: Tensor, f: Tensor) -> dict[str, Tensor]:
        """The side latents ``z = h_a(y)`` and ``w = i_a([y; f])``: encoder-only (a decoder never recomputes them),
        so they may run on any device/precision; only what follows the decoded strings must match the decoder."""
        return {"z": self.hyper.h_a(y), "w": self.object.h_a(torch.cat([y, f], dim=1))}

    def compress(self, y: Tensor, f: Tensor | None = None, side: dict[str, Tensor] | None = None,
                 gain: Tensor | None = None, context: Tensor | None = None) -> dict[str, Any]:
        """Code one frame's ``y`` with its side latents ``side = {"z", "w"}`` (``analyse_side(y, f)`` if not given).

        ``gain``: explicit latent scaling, a float64 (1, 1, h, w) map >= 1 on y's grid (from the bitstream's gain map):
        y is coded as ``round(y * gain)`` with the scales times ``gain`` (a finer quantisation step where the gain is
        high), and ``y_hat = round(y * gain) / gain``.  ``decompress`` must get the same map (and the same
        ``context``, see ``scales``).

        The float64 parts the decoder recomputes (z_hat/w_hat, h_s, i_s, the combiner, the indexes) run in float64
        on the CPU whatever dtype ``y``/``z``/``w`` come in (converted exactly); ``y`` itself is only rounded, which
        gives the same integers in any float dtype, so it may stay float32.  ``y_hat`` comes back in ``y``'s dtype."""
        check_codable("y", y)
        side = side if side is not None else self.analyse_side(y, f)
        if not self.use_cached_tables:  # the earlier path: CompressAI's calls, everything in float64
            if gain is not None or context is not None:
                raise ValueError("latent gains and contexts need the cached-table coder (use_cached_tables)")
            y = y.to(torch.float64)
            z_strings, z_shape, z_hat = _compress_side(self.hyper, side["z"].to(y), False)
            w_strings, w_shape, w_hat = _compress_side(self.object, side["w"].to(y), False)
            conditional = self.y.gaussian_conditional
            indexes = conditional.build_indexes(self.side_scales(z_hat, w_hat))
            return {
                "strings": {"y": conditional.compress(y, indexes), "z": z_strings, "w": w_strings},
                "shape": {"z": z_shape, "w": w_shape, "y": tuple(y.shape[-2:])},
                "y_hat": conditional.quantize(y, "dequantize"),
            }
        with torch.no_grad():
            return self._compress_cached(y.detach().cpu(), side, gain, context)

    # False (default) = serial, at the caller's torch thread count; _SidePool: "all" = the two h_s and the index
    # lookup on two Python threads, one torch thread each; "hs" = only the two h_s so.  Same bytes in every mode.
    # Serial won on an idle 2-core machine (17 vs 28 ms) and with one core training (19 vs 52 ms); "all" won only
    # when the cores were oversubscribed several times over (docs/deployment.md).
    parallel_side: str | bool = False

    def _compress_cached(self, y: Tensor, side: dict[str, Tensor], gain: Tensor | None = None,
                         context: Tensor | None = None) -> dict[str, Any]:
        z_hat, z_symbols, z_shape = _quantize_side(self.hyper, side["z"])
        w_hat, w_symbols, w_shape = _quantize_side(self.object, side["w"])
        # GaussianConditionalLatentCodec.compress would also decode y's string to return y_hat (a third of the
        # entropy-coding time); with scales only (no means) y_hat is round(y), so code y directly.
        if gain is not None:
            _check_gain(gain, y)
            y_hat = torch.round(y.to(torch.float64) * gain)  # the symbols; divided by the gain below
        else:
            y_hat = torch.round(y)
        conditional = self.y.gaussian_conditional
        threads = torch.get_num_threads()
        # the integer side is a third of the float64 networks' time: no second thread for it
        mode = self.parallel_side if threads > 1 and self.integer is None else False
        if self.integer is not None:
            z_string = _encode_side(self.hyper, z_symbols, z_shape)
            w_string = _encode_side(self.object, w_symbols, w_shape)
            y_symbols = _int_list(y_hat.long())
            indexes = _int_list(conditional.build_indexes(_scaled(self.integer(z_hat, w_hat, context), gain)))
        elif not mode:
            z_params = self.hyper.h_s(z_hat)
            w_params = self.object.h_s(w_hat)
            z_string = _encode_side(self.hyper, z_symbols, z_shape)
            w_string = _encode_side(self.object, w_symbols, w_shape)
            y_symbols = _int_list(y_hat.long())
            scales = _scaled(self.scales(z_params, w_params, context), gain)
            indexes = _int_list(conditional.build_indexes(scales))
        else:
            pool, inference = _SIDE_POOL.pool(), torch.is_inference_mode_enabled()
            # one torch thread per Python thread for the span (torch's thread count is per process: restored after)
            torch.set_num_threads(1)
            try:
                job = pool.submit(_without_grad, inference, self.object.h_s, w_hat)
                z_params = self.hyper.h_s(z_hat)
                # GIL-bound work while the worker finishes i_s
                z_string = _encode_side(self.hyper, z_symbols, z_shape)
                w_string = _encode_side(self.object, w_symbols, w_shape)
                y_symbols = _int_list(y_hat.long())
                w_params = job.result()
                if mode != "all":
                    torch.set_num_threads(threads)
                scales = _scaled(self.scales(z_params, w_params, context), gain)
                if mode == "all":  # the table lookup is elementwise: two halves of the channels, concatenated
                    half = scales.shape[1] // 2
                    job = pool.submit(_without_grad, inference, _index_list, conditional, scales[:, half:])
                    indexes = _index_list(conditional, scales[:, :half])
                    indexes += job.result()
                else:
                    indexes = _int_list(conditional.build_indexes(scales))
            finally:
                torch.set_num_threads(threads)
        y_string = _tables(conditional).encode_lists(y_symbols, indexes)
        return {
            "strings": {"y": [y_string], "z": [z_string], "w": [w_string]},
            "shape": {"z": z_shape, "w": w_shape, "y": tuple(y.shape[-2:])},
            "y_hat": y_hat if gain is None else (y_hat / gain).to(y.dtype),
        }

    def decompress(self, strings: dict[str, list[bytes]], shape: dict[str, tuple[int, int]],
                   gain: Tensor | None = None, context: Tensor | None = None, **kwargs) -> dict[str, Any]:
        """The three strings (one frame) -> ``y_hat`` (float32: integers, exact; with ``gain`` (see ``compress``)
        ``symbols / gain``, computed in float64).  Same maths as CompressAI's
        ``HyperLatentCodec``/``GaussianConditionalLatentCodec.decompress``, coded through ``RansTables``."""
        if not self.use_cached_tables:
            if gain is not None or context is not None:
                raise ValueError("latent gains and contexts need the cached-table coder (use_cached_tables)")
            z_hat = self.hyper.entropy_bottleneck.decompress(strings["z"], shape["z"])
            w_hat = self.object.entropy_bottleneck.decompress(strings["w"], shape["w"])
            conditional = self.y.gaussian_conditional
            indexes = conditional.build_indexes(self.side_scales(z_hat, w_hat))
            return {"y_hat": conditional.decompress(strings["y"], indexes)}
        if any(len(strings[name]) != 1 for name in ("y", "z", "w")):
            raise ValueError("the codec decodes one frame at a time")
        z_hat = _decompress_side(self.hyper, strings["z"][0], shape["z"])
        w_hat = _decompress_side(self.object, strings["w"][0], shape["w"])
        conditional = self.y.gaussian_conditional
        y_grid = (4 * z_hat.shape[-2], 4 * z_hat.shape[-1])  # h_s upsamples 4x
        if context is not None and tuple(context.shape[-2:]) != y_grid:
            raise ValueError(f"context of shape {tuple(context.shape[-2:])} for y of {y_grid}")
        scales = self.side_scales(z_hat, w_hat, context)
        if tuple(scales.shape[-2:]) != tuple(shape["y"]):
            raise ValueError(f"y shape {tuple(shape['y'])} does not match its side information {tuple(scales.shape[-2:])}")
        if gain is not None:
            _check_gain(gain, scales)
        indexes = conditional.build_indexes(_scaled(scales, gain))
        values = _tables(conditional).decode(strings["y"][0], indexes)
        if gain is not None:
            return {"y_hat": (values.to(torch.float64) / gain).float()}
        return {"y_hat": conditional.dequantize(values)}  # as GaussianConditional.decompress without means: float32


def _scaled(scales: Tensor, gain: Tensor | None) -> Tensor:
    """The scales of ``round(y * gain)``: a Gaussian of scale s, times g, has scale s * g (float64, both ends)."""
    return scales if gain is None else scales * gain


def _check_gain(gain: Tensor, like: Tensor) -> None:
    if gain.dtype != torch.float64 or gain.dim() != 4 or gain.shape[:2] != (1, 1) or gain.shape[-2:] != like.shape[-2:]:
        raise ValueError(f"gain must be a float64 (1, 1, h, w) map on y's grid {tuple(like.shape[-2:])}, "
                         f"got {gain.dtype} {tuple(gain.shape)}")
    if not bool(((gain >= 1.0) & (gain <= 8.0)).all()):  # also NaN; the bitstream's range
        raise ValueError("gain must be a map of gains in [1, 8]")
