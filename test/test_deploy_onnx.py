"""ONNX export of the transforms (issue 13): the graphs compute what PyTorch computes; the entropy side stays ours."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")  # torch's TorchScript-based exporter writes through it
ort = pytest.importorskip("onnxruntime")

from roi_codec_ros.codec import RoiCodec  # noqa: E402
from roi_codec_ros.codec.bitstream import unpack_frame  # noqa: E402
from roi_codec_ros.deploy.onnx_check import compare_with_torch, run, session  # noqa: E402
from roi_codec_ros.deploy.onnx_export import export_onnx, main  # noqa: E402

H, W = 83, 150


@pytest.fixture(scope="module")
def exported(tmp_path_factory, random_codec):
    return export_onnx(random_codec, tmp_path_factory.mktemp("onnx"), H, W)


def test_graphs_match_pytorch(exported, random_codec):
    errors = compare_with_torch(random_codec, exported, H, W)
    assert set(errors) == {"analysis[0]", "analysis[1]", "analysis[2]", "synthesis[0]"}
    for name, err in errors.items():
        assert err["max_rel"] < 1e-4, (name, err)
    # the feature maps may have any size (the detector's letterbox decides it); the frame size is baked in
    errors = compare_with_torch(random_codec, exported, H, W, feature_sizes=[(7, 13), (4, 7), (2, 4)])
    assert max(err["max_rel"] for err in errors.values()) < 1e-4, errors


def test_onnx_synthesis_decodes_a_real_stream(exported, random_codec):
    """A stream from the codec: CompressAI decodes y_hat (float64 side), the ONNX graph synthesises the pixels."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    data = random_codec.encode(image, rate=0.8).data
    header, strings = unpack_frame(data)
    y_hat = random_codec._coder.decompress({k: [v] for k, v in strings.items()}, {"z": header.z_shape, "w": header.w_shape, "y": header.y_shape})["y_hat"].float()
    embedding = random_codec.model.rate_embedding(torch.tensor([header.rate]))
    (x_hat,) = run(session(exported["synthesis"]), {"y_hat": y_hat, "embedding": embedding})
    assert x_hat.shape == (1, 3, 128, 192)  # dynamic size: exported from other example shapes
    pixels = np.clip(x_hat[0, :, :H, :W], 0, 1).transpose(1, 2, 0) * 255.0
    reference = random_codec.decode(data).astype(np.float64)
    assert np.abs(np.round(pixels) - reference).max() <= 1.0


def test_cli_writes_the_graphs_and_meta(tmp_path, capsys):
    assert main(["export-onnx", "--model", "random", "--size", "64x96", "--out", str(tmp_path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "check synthesis[0]" in out
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["frame"] == [64, 96] and meta["padded"] == [64, 128]
    assert meta["model_id"] == RoiCodec.random(seed=0).model_id
    assert (tmp_path / "analysis.onnx").stat().st_size > 0 and (tmp_path / "synthesis.onnx").stat().st_size > 0
    assert main(["export-onnx", "--model", "random", "--size", "bad", "--out", str(tmp_path)]) == 1
