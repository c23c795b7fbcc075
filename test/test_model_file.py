"""Model file integrity: a content hash stored at export and verified on load, non-finite weights refused, one-line
errors for what is not a model file, old (version 1) files still loading, and the detector-match check."""
from __future__ import annotations

import copy
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from roi_codec_ros.codec import (
    DEFAULT_MODEL_PATH,
    DetectorMismatchError,
    DetectorMismatchWarning,
    ModelFileError,
    RoiCodec,
    check_detector_match,
    export_model,
    load_model_file,
)
from roi_codec_ros.codec.checkpoint import content_sha256
from roi_codec_ros.codec.model import LIKELIHOOD_BOUND, reset_likelihood_bounds

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def model_file(tmp_path, random_codec) -> Path:
    return export_model(random_codec.model.cpu(), tmp_path / "model.pt", detector={"sha256": "cd" * 32, "name": "d.pt"})


def _flip_inside_largest_tensor(path: Path) -> None:
    """Flip one byte in the middle of the largest stored tensor (inside its zip record's data, not its header)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_export_stores_a_hash_that_load_verifies(model_file, random_codec):
    model, info = load_model_file(model_file)
    assert info["format_version"] == 2 and info["content_sha256_stored"] is True
    assert info["content_sha256"] == torch.load(model_file, weights_only=True)["content_sha256"]
    assert RoiCodec.load(model_file).model_id == RoiCodec(model).model_id


def _likelihood_bounds(model) -> dict[str, float]:
    return {k: float(v) for k, v in model.state_dict().items() if k.endswith("likelihood_lower_bound.bound")}


def test_fp16_storage_flushes_the_likelihood_floor_which_training_restores(model_file):
    """fp16 flushes CompressAI's 1e-9 likelihood floor to 0 in the file.  Loading for inference keeps the stored 0
    (the model id hashes every buffer); ``reset_likelihood_bounds``, which the training paths call, restores it (a
    zero floor let a likelihood of 0 make the training rate infinite: the long run's divergence)."""
    stored = torch.load(model_file, weights_only=True)["state_dict"]
    assert [float(v) for k, v in stored.items() if k.endswith("likelihood_lower_bound.bound")] == [0.0] * 3
    model, _ = load_model_file(model_file)
    codec_id = RoiCodec(model).model_id
    assert set(_likelihood_bounds(model).values()) == {0.0}
    bottleneck = model.latent_codec.object.entropy_bottleneck.train()
    outlier = torch.full((1, bottleneck.channels, 1, 1), 1e4)  # far in the tail of the side bottleneck
    with torch.no_grad():
        assert float(bottleneck(outlier)[1].min()) == 0.0  # what training saw: log2(0) = -inf
        reset_likelihood_bounds(model)
        likelihood = bottleneck(outlier)[1]
    bounds = _likelihood_bounds(model)
    assert len(bounds) == 3 and all(v == pytest.approx(LIKELIHOOD_BOUND) for v in bounds.values()), bounds
    assert float(likelihood.min()) == pytest.approx(LIKELIHOOD_BOUND) and torch.isfinite(torch.log(likelihood)).all()
    assert RoiCodec.load(model_file).model_id == codec_id  # loading again: the file's id, unchanged


def test_a_flipped_byte_in_the_weights_is_refused_not_a_new_model_id(model_file):
    _flip_inside_largest_tensor(model_file)
    with pytest.raises(ModelFileError, match="damaged model file: content sha256") as info:
        RoiCodec.load(model_file)
    assert "\n" not in str(info.value)


def test_non_finite_weights_are_refused_at_export_and_at_load(tmp_path, random_codec):
    model = copy.deepcopy(random_codec.model).cpu()
    with torch.no_grad():
        model.g_s_convs[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite weights"):
        export_model(model, tmp_path / "nan.pt")
    assert not (tmp_path / "nan.pt").exists()
    # a file written by other means (hash consistent, weights not) is refused at load, not at the first encode
    blob = {"format": "roi_codec_model", "format_version": 2, "config": model.config.to_dict(),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}, "detector": None,
            "uses_features": True, "metadata": {}}
    blob["content_sha256"] = content_sha256(blob)
    torch.save(blob, tmp_path / "nan.pt")
    with pytest.raises(ModelFileError, match="non-finite weights in 1 tensors"):
        load_model_file(tmp_path / "nan.pt")


def test_version_1_files_without_a_hash_still_load_with_the_same_id(model_file):
    blob = torch.load(model_file, weights_only=True)
    v2_id = RoiCodec.load(model_file).model_id
    del blob["content_sha256"]
    blob["format_version"] = 1
    old = model_file.with_name("v1.pt")
    torch.save(blob, old)
    codec = RoiCodec.load(old)
    assert codec.model_id == v2_id
    assert codec.info["content_sha256_stored"] is False and codec.info["content_sha256"] == content_sha256(blob)


def test_unsupported_version_and_damaged_layout(model_file, tmp_path):
    blob = torch.load(model_file, weights_only=True)
    torch.save(dict(blob, format_version=99), tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match="unsupported model file version 99"):
        load_model_file(tmp_path / "future.pt")
    torch.save(dict(blob, state_dict=[1, 2]), tmp_path / "layout.pt")
    with pytest.raises(ModelFileError, match="damaged model file"):
        load_model_file(tmp_path / "layout.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="not a roi_codec model file"):
        load_model_file(truncated)


@pytest.mark.parametrize("path, model_id", [
    (DEFAULT_MODEL_PATH, "6c1fa87e28150486"),
    (REPO / "models" / "default_stage5.pt", "0c766b87c4b97bbd"),
    (REPO / "models" / "nofeat_baseline.pt", "db3e998161f5afb8"),
])
def test_shipped_models_carry_a_verified_hash_and_keep_their_ids(path, model_id):
    model, info = load_model_file(path)
    assert info["content_sha256_stored"] is True
    assert RoiCodec(model, info=info).model_id.startswith(model_id)


def test_detector_match_check():
    trained = {"detector": {"sha256": "12" * 32, "name": "yolov8n_coco.pt"}, "uses_features": True}
    assert check_detector_match(trained, "sha256:" + "12" * 32, strict=True) is None
    assert check_detector_match(trained, "12" * 32, strict=True) is None
    assert check_detector_match(trained, None, strict=True) is None  # no detector: zero features, nothing to compare
    assert check_detector_match({"detector": None}, "sha256:" + "34" * 32, strict=True) is None
    assert check_detector_match(dict(trained, uses_features=False), "sha256:" + "34" * 32, strict=True) is None
    with pytest.warns(DetectorMismatchWarning, match="sha256:121212121212.*yolov8n_coco.pt.*sha256:343434343434"):
        problem = check_detector_match(trained, "sha256:" + "34" * 32)
    assert "features differ" in problem
    with pytest.raises(DetectorMismatchError, match="cannot be compared"):
        check_detector_match(trained, "random-init:yolov8n.yaml:seed=0", strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_detector_match(trained, "sha256:" + "34" * 32, warn=False) is not None


def test_export_writes_whole_files_only(tmp_path, random_codec, monkeypatch):
    """A failing torch.save (full disk) leaves the previous model file and no temporary file."""
    target = export_model(random_codec.model.cpu(), tmp_path / "m.pt")
    before, model_id = target.read_bytes(), RoiCodec.load(target).model_id

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        export_model(random_codec.model.cpu(), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    monkeypatch.undo()
    assert RoiCodec.load(target).model_id == model_id
