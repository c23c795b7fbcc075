"""``roi-codec train --config exp.yaml`` (resumes automatically) and ``roi-codec train --export ckpt out.pt``."""
from __future__ import annotations

import argparse

import torch


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="roi-codec train", description=__doc__)
    parser.add_argument("--config", help="experiment YAML (see roi_codec_ros/training/config.py for every key)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys (YAML values)")
    parser.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "MODEL_OUT"), help="export a training checkpoint as a deployable model file")
    parser.add_argument("--fp32", action="store_true", help="export with fp32 storage (default fp16)")
    args = parser.parse_args(argv[1:])

    if args.export:
        return _export(*args.export, fp16=not args.fp32)
    if not args.config:
        parser.error("--config is required (or --export)")
    import yaml

    from .config import TrainConfig
    from .trainer import train

    with open(args.config) as f:
        data = yaml.safe_load(f) or {}
    for item in args.set:
        key, _, value = item.partition("=")
        data[key] = yaml.safe_load(value)
    train(TrainConfig.from_dict(data))
    return 0


def _export(checkpoint: str, out: str, fp16: bool) -> int:
    from roi_codec_ros.codec.model import build_model

    from .config import TrainConfig
    from .trainer import export_trained

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(state["config"])
    model = build_model(cfg.model_config)
    model.load_state_dict(state["model"])
    export_trained(model, cfg, out, state["step"], fp16=fp16)
    print(f"exported {out} (step {state['step']})")
    return 0
