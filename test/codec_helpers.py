"""Helpers shared by tests that compare decodes across processes and thread counts."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DECODE_STREAM = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from roi_codec_ros.codec import RoiCodec
    decoder = RoiCodec.random(seed=0).stream_decoder()
    images = [decoder.decode(open(path, "rb").read()) for path in sys.argv[1:]]
    np.save(sys.argv[1] + ".npy", np.stack(images))
    """
)


def check_stream_decodes_alike(tmp_path: Path, codec, frames: list[bytes]) -> None:
    """The frames of one stream of ``RoiCodec.random(seed=0)`` (``codec``) decode to the same pixels in a fresh process
    at one thread as here at one and two threads."""
    paths = []
    for i, data in enumerate(frames):
        paths.append(tmp_path / f"{i}.rcb")
        paths[-1].write_bytes(data)
    result = subprocess.run([sys.executable, "-c", DECODE_STREAM, *map(str, paths)], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stderr[-2000:]
    other_process = np.load(str(paths[0]) + ".npy")
    for threads in (1, 2):
        decoder = codec.stream_decoder()
        here = np.stack([decode_with_threads(decoder, data, threads) for data in frames])
        assert hashlib.sha1(here.tobytes()).hexdigest() == hashlib.sha1(other_process.tobytes()).hexdigest()


def decode_with_threads(decoder, data: bytes, threads: int) -> np.ndarray:
    """``decoder.decode(data)`` (a codec or a stream decoder) with torch set to ``threads``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return decoder.decode(data)
    finally:
        torch.set_num_threads(before)
