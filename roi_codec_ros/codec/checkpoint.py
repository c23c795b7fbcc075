"""Model files: what a shipped/exported model holds, how it is rebuilt, and how a damaged file is refused.

A model file is a plain dict readable with ``torch.load(weights_only=True)``::

    {"format": "roi_codec_model", "format_version": 2,
     "config": ModelConfig.to_dict(),          # architecture + knob ranges -> rebuild with build_model()
     "state_dict": {...},                      # float tensors may be fp16 (storage only), CDF tables included
     "detector": {"sha256": ..., "name": ...} or None,   # which detector's features it was trained with
     "uses_features": bool,                    # False: trained on zero-filled features only
     "content_sha256": "<hex>",                # version 2: hash of all of the above (``content_sha256``)
     "metadata": {...}}                        # training run, data, steps, results (informational, not hashed)

Loading verifies the content hash (a flipped byte anywhere in the weights is refused, not turned into another
model id) and refuses non-finite weights. Version-1 files (written before the hash existed) still load; their
hash is computed on load and reported as not stored.

The entropy coder's CDF tables are computed once at export (``model.update(force=True)``) and stored, so the
encoder and every decoder use identical integer tables.
"""
from __future__ import annotations

import hashlib
import json
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from roi_codec_ros.files import atomic_path

from .model import ModelConfig, RoiHyperprior, build_model

MODEL_FORMAT = "roi_codec_model"
MODEL_FORMAT_VERSION = 2  # 2: content_sha256 stored; 1: no stored hash (still loaded)
SUPPORTED_FORMAT_VERSIONS = (1, 2)
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "default.pt"
EXPORT_HINT = "export one from a training checkpoint with `roi-codec train --export CHECKPOINT MODEL_OUT`"


class ModelFileError(ValueError):
    """A file is not a usable roi_codec model file; the message (one line) names the file and the reason."""


class DetectorMismatchError(ValueError):
    """The detector feeding a model is not the one it was trained with (raised when strict)."""


class DetectorMismatchWarning(UserWarning):
    """The detector feeding a model is not the one it was trained with."""


def model_fingerprint(model: RoiHyperprior) -> str:
    """sha256 (hex) of the architecture and every parameter/buffer as float32: the decoder-compatibility id."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        t = tensor.detach().cpu()
        t = t.float() if t.is_floating_point() else t
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


def content_sha256(blob: Mapping[str, Any]) -> str:
    """sha256 (hex) of what a model file's behaviour depends on: config, detector record, uses_features, and every
    stored tensor's name, dtype, shape and bytes exactly as stored (fp16 stays fp16). Metadata is not included."""
    header = {"config": blob["config"], "detector": blob.get("detector"), "uses_features": blob.get("uses_features", True)}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in sorted(blob["state_dict"].items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def export_model(
    model: RoiHyperprior,
    path: str | Path,
    *,
    fp16: bool = True,
    detector: dict[str, Any] | None = None,
    uses_features: bool = True,
    metadata: dict[str, Any] | None = None,
    update_tables: bool = True,
) -> Path:
    """Write a deployable model file (CDF tables updated and included; fp16 storage by default; content hash).

    ``uses_features=False`` marks a model trained with zero-filled detector features only (the feature-free
    baseline): its codec then ignores features it is given, because its projections never learned them.
    The file is written whole or not at all (temporary file + rename); non-finite weights are refused.
    ``update_tables=False`` keeps the CDF tables the model holds (a model loaded from a file and extended: its tables
    stay those computed from the weights before fp16 storage, so its frames stay byte-identical).
    """
    if update_tables:
        model.update(force=True)
    state = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu()
        state[name] = t.half() if (fp16 and t.is_floating_point()) else t.clone()
    bad = _non_finite(state)
    if bad:
        raise ValueError(f"not exporting {path}: non-finite weights in {len(bad)} tensors (e.g. {bad[0]})"
                         + (" after fp16 conversion (values beyond fp16 range)" if fp16 else ""))
    blob = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": state,
        "detector": detector,
        "uses_features": bool(uses_features),
        "metadata": metadata or {},
    }
    blob["content_sha256"] = content_sha256(blob)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def _pickle_strings(path: Path) -> set[str]:
    """String constants in a torch zip file's pickle, read without unpickling anything (empty if unreadable)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None:
                return set()
            data = archive.read(name)
        return {arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)}
    except Exception:  # noqa: BLE001 - this is only a hint for the error message
        return set()


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


TRAINING_CHECKPOINT_KEYS = {"model", "optimizer", "step"}


def _read_blob(path: Path) -> dict:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read means "not a model file"; say why in one line
        if TRAINING_CHECKPOINT_KEYS <= _pickle_strings(path):
            raise ModelFileError(f"{path} is a training checkpoint, not a model file; {EXPORT_HINT}") from exc
        raise ModelFileError(f"{path} is not a roi_codec model file (unreadable: {_one_line(exc)})") from exc
    if isinstance(blob, dict) and TRAINING_CHECKPOINT_KEYS <= set(blob):
        step = blob.get("step")
        raise ModelFileError(f"{path} is a training checkpoint (step {step}), not a model file; {EXPORT_HINT}")
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        what = f"a {type(blob).__name__}" if not isinstance(blob, dict) else f"a dict with keys {sorted(map(str, blob))[:6]}"
        raise ModelFileError(f"{path} is not a roi_codec model file (it holds {what}); {EXPORT_HINT}")
    version = blob.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelFileError(f"{path}: unsupported model file version {version!r} (this package reads "
                             f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))})")
    state = blob.get("state_dict")
    if not isinstance(blob.get("config"), dict) or not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelFileError(f"{path}: damaged model file (config or state_dict missing or of the wrong type)")
    return blob


def load_model_file(path: str | Path) -> tuple[RoiHyperprior, dict[str, Any]]:
    """Rebuild a model from a model file; returns (model in float32, eval mode, on CPU; the file's dict sans weights).

    Raises FileNotFoundError for a missing file and ModelFileError (a ValueError, one-line message) for a file that
    is not a model file, a damaged one (content hash mismatch, unbuildable config, wrong tensors) or one with
    non-finite weights. The returned info holds ``content_sha256`` and ``content_sha256_stored`` (False for
    version-1 files, whose hash is computed here).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"codec model file not found: {path}")
    blob = _read_blob(path)
    try:
        computed = content_sha256(blob)
    except Exception as exc:  # noqa: BLE001 - a config that cannot be hashed is a damaged file
        raise ModelFileError(f"{path}: damaged model file ({_one_line(exc)})") from exc
    stored = blob.get("content_sha256")
    if blob["format_version"] >= 2 and stored != computed:
        raise ModelFileError(f"{path}: damaged model file: content sha256 {computed[:16]}... differs from the "
                             f"stored {str(stored)[:16]}... (the file was changed after export)")
    bad = _non_finite(blob["state_dict"])
    if bad:
        raise ModelFileError(f"{path}: non-finite weights in {len(bad)} tensors (e.g. {bad[0]}); the model "
                             "was saved from a diverged run")
    try:
        model = build_model(ModelConfig.from_dict(blob["config"]))
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
        model.load_state_dict(state)  # CompressionModel resizes the CDF buffers to the stored tables
        for part in model.entropy_models():
            if part.integer is not None:
                part.integer.check()  # integers float32 would not sum exactly: refused, not decoded wrongly
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: damaged model file ({_one_line(exc)})") from exc
    model.eval()
    info = {k: v for k, v in blob.items() if k != "state_dict"}
    info["content_sha256"] = computed
    info["content_sha256_stored"] = stored is not None
    return model, info


def check_detector_match(
    model_info: Mapping[str, Any], detector_id: str | None, *, strict: bool = False, warn: bool = True
) -> str | None:
    """Compare the detector a model was trained with (``model_info["detector"]["sha256"]``) with the one that
    will feed it features (``detector_id``: ``"sha256:<hex>"``, a bare hex digest, another id, or None = no
    detector). Returns None when they match or nothing is to be checked (no detector, a model trained without
    features or without a detector record); otherwise the problem as one sentence, which is also raised as
    DetectorMismatchError when ``strict`` and else emitted as a DetectorMismatchWarning when ``warn``.
    """
    record = model_info.get("detector")
    trained = record.get("sha256") if isinstance(record, Mapping) else None
    if detector_id is None or not trained or not model_info.get("uses_features", True):
        return None
    given = detector_id[len("sha256:"):] if detector_id.startswith("sha256:") else detector_id
    if given == trained:
        return None
    name = f" ({record.get('name')})" if record.get("name") else ""
    if len(given) == 64 and all(c in "0123456789abcdef" for c in given):
        problem = (f"the model was trained with the features of detector sha256:{trained[:12]}...{name} but is fed "
                   f"by sha256:{given[:12]}...: its features differ, so the ROI quality and rate will be off")
    else:
        problem = (f"the model was trained with the features of detector sha256:{trained[:12]}...{name} but is fed "
                   f"by {detector_id!r}, whose weights cannot be compared")
    if strict:
        raise DetectorMismatchError(problem)
    if warn:
        warnings.warn(problem, DetectorMismatchWarning, stacklevel=2)
    return problem
