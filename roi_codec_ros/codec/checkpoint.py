"""Model files: what a shipped/exported model holds and how it is rebuilt.

A model file is a plain dict readable with ``torch.load(weights_only=True)``::

    {"format": "roi_codec_model", "format_version": 1,
     "config": ModelConfig.to_dict(),          # architecture + knob ranges -> rebuild with build_model()
     "state_dict": {...},                      # float tensors may be fp16 (storage only), CDF tables included
     "detector": {"sha256": ..., "name": ...} or None,   # which detector's features it was trained with
     "metadata": {...}}                        # training run, data, steps, results (informational)

The entropy coder's CDF tables are computed once at export (``model.update(force=True)``) and stored, so the
encoder and every decoder use identical integer tables.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .model import ModelConfig, RoiHyperprior, build_model

MODEL_FORMAT = "roi_codec_model"
MODEL_FORMAT_VERSION = 1
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "default.pt"


def model_fingerprint(model: RoiHyperprior) -> str:
    """sha256 (hex) of the architecture and every parameter/buffer as float32: the decoder-compatibility id."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        t = tensor.detach().cpu()
        t = t.float() if t.is_floating_point() else t
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


def export_model(
    model: RoiHyperprior,
    path: str | Path,
    *,
    fp16: bool = True,
    detector: dict[str, Any] | None = None,
    uses_features: bool = True,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a deployable model file (CDF tables updated and included; fp16 storage by default).

    ``uses_features=False`` marks a model trained with zero-filled detector features only (the feature-free
    baseline): its codec then ignores features it is given, because its projections never learned them.
    """
    model.update(force=True)
    state = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu()
        state[name] = t.half() if (fp16 and t.is_floating_point()) else t.clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "config": model.config.to_dict(),
            "state_dict": state,
            "detector": detector,
            "uses_features": bool(uses_features),
            "metadata": metadata or {},
        },
        path,
    )
    return path


def load_model_file(path: str | Path) -> tuple[RoiHyperprior, dict[str, Any]]:
    """Rebuild a model from a model file; returns (model in float32, eval mode, on CPU; the file's dict sans weights)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"codec model file not found: {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a roi_codec model file (training checkpoints are exported with `roi-codec train --export`)")
    if blob.get("format_version") != MODEL_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported model file version {blob.get('format_version')}")
    model = build_model(ModelConfig.from_dict(blob["config"]))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
    model.load_state_dict(state)  # CompressionModel resizes the CDF buffers to the stored tables
    model.eval()
    info = {k: v for k, v in blob.items() if k != "state_dict"}
    return model, info
