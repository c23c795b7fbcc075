"""Optional OpenVINO encoder backend: a valid stream that the torch decoder decodes, close to torch's encoder."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("onnx")

from roi_codec_ros.codec import RoiCodec  # noqa: E402
from roi_codec_ros.deploy.openvino_backend import use_openvino  # noqa: E402


def test_openvino_analysis_gives_a_stream_close_to_torchs():
    torch_codec = RoiCodec.random(seed=0, analysis_precision="fp32")
    ov_codec = use_openvino(RoiCodec.random(seed=0, analysis_precision="fp32"))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:160]
    image = np.clip(np.stack([xx * 1.5, yy * 2.0, (xx + yy)], -1) + rng.normal(0, 6, (96, 160, 3)), 0, 255).astype(np.uint8)
    a, b = ov_codec.encode(image, rate=0.7), torch_codec.encode(image, rate=0.7)
    decoded_a, decoded_b = torch_codec.decode(a.data), torch_codec.decode(b.data)
    assert decoded_a.shape == image.shape
    # fp32 in both: the same symbols up to a rare rounding flip, so nearly the same size and pixels
    assert abs(a.num_bytes - b.num_bytes) <= 0.02 * b.num_bytes + 8
    assert np.abs(decoded_a.astype(int) - decoded_b.astype(int)).mean() < 0.5
    assert ov_codec.decode(a.data).tobytes() == decoded_a.tobytes()  # the decoder is torch's either way

