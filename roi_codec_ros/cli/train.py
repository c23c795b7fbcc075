"""``roi-codec train --config exp.yaml`` (resumes automatically) and ``roi-codec train --export ckpt out.pt``."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="roi-codec train", description=__doc__)
    parser.add_argument("--config", help="experiment YAML (see roi_codec_ros/training/config.py for every key)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys (YAML values)")
    parser.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "MODEL_OUT"), help="export a training checkpoint (or re-export a model file, e.g. a run's fp32 candidate) as a deployable model file")
    parser.add_argument("--fp32", action="store_true", help="export with fp32 storage (default fp16)")
    args = parser.parse_args(argv[1:])

    if args.export:
        try:
            return _export(*args.export, fp16=not args.fp32)
        except ValueError as exc:
            print(f"roi-codec train --export: {exc}", file=sys.stderr)
            return 1
    if not args.config:
        parser.error("--config is required (or --export)")
    import yaml

    from roi_codec_ros.training.config import TrainConfig
    from roi_codec_ros.training.trainer import train

    with open(args.config) as f:
        data = yaml.safe_load(f) or {}
    for item in args.set:
        key, _, value = item.partition("=")
        data[key] = yaml.safe_load(value)
    train(TrainConfig.from_dict(data))
    return 0


def _export(checkpoint: str, out: str, fp16: bool) -> int:
    import torch

    from roi_codec_ros.codec.checkpoint import MODEL_FORMAT
    from roi_codec_ros.codec.model import build_model
    from roi_codec_ros.training.config import TrainConfig
    from roi_codec_ros.training.trainer import export_trained

    try:
        # a training checkpoint holds optimiser and RNG state that weights_only loading does not promise to read;
        # it is the user's own file (their run), not a downloaded model
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ValueError(f"training checkpoint not found: {checkpoint}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one line, not a traceback
        raise ValueError(f"{checkpoint} is not a training checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if isinstance(state, dict) and state.get("format") == MODEL_FORMAT:
        return _reexport(checkpoint, out, fp16)
    if not isinstance(state, dict) or not {"model", "config", "step"} <= set(state):
        raise ValueError(f"{checkpoint} is not a training checkpoint (expected the last.pt of a `roi-codec train` run)")
    cfg = TrainConfig.from_dict(state["config"])
    model = build_model(cfg.model_config)
    # the weight average when the run keeps one: what its validation scored and its candidates export
    weights = "ema" if state.get("ema") is not None else "model"
    model.load_state_dict(state[weights])
    export_trained(model, cfg, out, state["step"], fp16=fp16)
    print(f"exported {out} (step {state['step']}, {'weight average' if weights == 'ema' else 'weights'})")
    return 0


def _reexport(model_file: str, out: str, fp16: bool) -> int:
    """A model file (e.g. a run's fp32 candidate ``best_model.pt``) written again, with fp16 storage by default:
    the same weights, detector and metadata, a new content hash."""
    from roi_codec_ros.codec.checkpoint import export_model, load_model_file

    model, info = load_model_file(model_file)  # verifies its hash and weights
    metadata = {**info.get("metadata", {}), "exported_from": str(model_file)}
    export_model(model, out, fp16=fp16, detector=info.get("detector"), uses_features=info.get("uses_features", True),
                 metadata=metadata)
    print(f"exported {out} (from the model file {model_file}, step {metadata.get('steps', '?')})")
    return 0
