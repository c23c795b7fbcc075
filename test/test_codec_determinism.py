"""Decoding is deterministic: the same bytes give the same pixels in another process, with another thread count
(1 vs 2), and twice in a row in the same process; for the untrained test model and for the shipped default model
(whose trained GDN weights exposed oneDNN's thread-dependent 1x1 convolution, fixed by ChannelMatmulGDN).

The exact decoder of today (channels-last synthesis, cached rANS tables) gives the pixels of the earlier path
(contiguous synthesis, CompressAI's own entropy calls): the other process decodes with that earlier path."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from codec_helpers import decode_with_threads  # noqa: E402

from roi_codec_ros.codec import DEFAULT_MODEL_PATH, RoiCodec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

DECODE_IN_SUBPROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from roi_codec_ros.codec import RoiCodec
    # the earlier path: contiguous synthesis weights and y_hat, CompressAI's compress/decompress calls
    options = dict(channels_last_synthesis=False)
    codec = RoiCodec.random(seed=0, **options) if sys.argv[1] == "random" else RoiCodec.load(sys.argv[1], **options)
    codec._coder.use_cached_tables = False
    for path in sys.argv[2:]:
        np.save(path + ".npy", codec.decode(open(path, "rb").read()))
    print(torch.get_num_threads())
    """
)


MODELS = ["random"] + (["default"] if DEFAULT_MODEL_PATH.is_file() else [])


def load(model: str) -> RoiCodec:
    return RoiCodec.random(seed=0) if model == "random" else RoiCodec.load(model)


@pytest.fixture(scope="module", params=MODELS)
def model(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, model):
    rng = np.random.default_rng(7)
    h, w = 83, 150  # odd sizes: padding and cropping are part of the path
    image = np.zeros((h, w, 3), np.uint8)
    image[...] = (np.linspace(0, 255, w)[None, :, None] * np.array([1.0, 0.5, 0.2])).astype(np.uint8)
    image[20:60, 40:120] = rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.float32)
    mask[10:70, 30:130] = 1.0
    codec = load(model)
    frames = [codec.encode(image, roi_mask=mask, rate=rate, roi_weight=8.0).data for rate in (0.2, 0.9)]
    folder = tmp_path_factory.mktemp("determinism")
    paths = []
    for i, data in enumerate(frames):
        paths.append(folder / f"frame{i}.rcb")
        paths[-1].write_bytes(data)
    return paths


def test_decode_is_bit_exact_across_processes_and_thread_counts(encoded, model):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-c", DECODE_IN_SUBPROCESS, model, *map(str, encoded)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1"
    codec = load(model)
    assert codec.precision == "exact" and codec.channels_last_synthesis and codec._coder.use_cached_tables
    for path in encoded:
        other_process = np.load(str(path) + ".npy")
        two_threads = decode_with_threads(codec, path.read_bytes(), 2)
        one_thread = decode_with_threads(codec, path.read_bytes(), 1)
        assert other_process.dtype == np.uint8 and other_process.shape == (83, 150, 3)
        # the same SHA-1 of the pixels: earlier path at 1 thread in another process, today's at 1 and 2 threads
        digests = {hashlib.sha1(a.tobytes()).hexdigest() for a in (other_process, one_thread, two_threads)}
        assert len(digests) == 1, digests


def test_decoding_the_same_bytes_twice_is_identical(encoded, model):
    codec = load(model)
    for path in encoded:
        data = path.read_bytes()
        first, second = codec.decode(data), codec.decode(data)
        assert np.array_equal(first, second)


def test_the_frames_differ(encoded, model):
    # guards against a vacuous pass: the two rates really give different streams and pictures
    a, b = (p.read_bytes() for p in encoded)
    assert a != b
    codec = load(model)
    assert not np.array_equal(codec.decode(a), codec.decode(b))
