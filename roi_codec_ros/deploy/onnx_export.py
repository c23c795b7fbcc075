"""``roi-codec export-onnx``: the codec's analysis and synthesis transforms as ONNX graphs.

Two graphs, fp32 (TensorRT builds fp16 engines from them, see docs/deployment.md):

- ``analysis.onnx`` (encoder, static frame size): ``x`` (1,3,Hp,Wp) RGB in [0,1], replicate-padded to a multiple of
  64 at the bottom/right; ``mask_alpha`` (1,1,Hp,Wp) the weighted ROI mask ``(1-m)*u_alpha + m`` (ones without an
  ROI); ``embedding`` (1,bins) the rate's soft one-hot; ``f8``, ``f16``, ``f32`` the detector's frame-aligned neck
  maps (1,C,h,w), any h, w (zeros of shape (1,C,1,1) without a detector) -> ``y`` (1,M,Hp/16,Wp/16), ``z`` and
  ``w`` (the side latents at Hp/64, Wp/64).  Exactly ``RoiHyperprior.analysis`` + ``object_features`` +
  ``latent_codec.analyse_side``; the frame size (valid region inside the padding) is baked in.
- ``synthesis.onnx`` (decoder, any size): ``y_hat`` (1,M,h,w), ``embedding`` -> ``x_hat`` (1,3,16h,16w), not yet
  clamped or cropped.

The entropy side stays in CompressAI: ``RoiCodec._coder.compress(y, side={"z": z, "w": w})`` codes what the
analysis graph gives (in float64), and ``decompress`` gives the ``y_hat`` for the synthesis graph.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from roi_codec_ros.codec import RoiCodec, RoiHyperprior
from roi_codec_ros.codec.api import padded_size


def transforms_copy(codec: RoiCodec) -> RoiHyperprior:
    """The codec's model as an fp32 CPU copy in the default memory layout (the codec itself is left as it is)."""
    model = copy.deepcopy(codec.model).float().cpu().eval()
    for part in (model.g_a_convs, model.fusion_proj, model.g_s_convs):
        part.to(memory_format=torch.contiguous_format)
    return model


class AnalysisGraph(nn.Module):
    """Encoder transforms for one frame size: (x, mask_alpha, embedding, f8, f16, f32) -> (y, z, w)."""

    def __init__(self, model: RoiHyperprior, height: int, width: int):
        super().__init__()
        self.model = model
        self.valid = (int(height), int(width))

    def forward(self, x: Tensor, mask_alpha: Tensor, embedding: Tensor, f8: Tensor, f16: Tensor, f32: Tensor):
        features = [f8, f16, f32]
        y = self.model.analysis(x, mask_alpha, features, embedding, self.valid)
        side = self.model.latent_codec.analyse_side(y, self.model.object_features(features, y, self.valid))
        return y, side["z"], side["w"]


class SynthesisGraph(nn.Module):
    """Decoder transform: (y_hat, embedding) -> x_hat (padded size, unclamped)."""

    def __init__(self, model: RoiHyperprior):
        super().__init__()
        self.model = model

    def forward(self, y_hat: Tensor, embedding: Tensor) -> Tensor:
        return self.model.synthesis(y_hat, embedding)


def example_inputs(model: RoiHyperprior, height: int, width: int, feature_sizes: Sequence[tuple[int, int]] | None = None):
    """Inputs of the right shapes (random image/mask/features, rate 0.5) for export and checks."""
    cfg = model.config
    ph, pw = padded_size(height, width, RoiHyperprior.PAD_MULTIPLE)
    generator = torch.Generator().manual_seed(0)
    sizes = feature_sizes or [(max(1, height // s), max(1, width // s)) for s in (8, 16, 32)]
    analysis = {
        "x": torch.rand(1, 3, ph, pw, generator=generator),
        "mask_alpha": torch.rand(1, 1, ph, pw, generator=generator).clamp_min(0.2),
        "embedding": model.rate_embedding(torch.tensor([0.5])),
        **{name: torch.randn(1, c, *hw, generator=generator) for name, c, hw in zip(("f8", "f16", "f32"), cfg.feature_channels, sizes)},
    }
    synthesis = {
        "y_hat": torch.round(torch.randn(1, cfg.M, ph // 16, pw // 16, generator=generator) * 3),
        "embedding": model.rate_embedding(torch.tensor([0.5])),
    }
    return analysis, synthesis


def _export(module: nn.Module, inputs: dict[str, Tensor], outputs: list[str], path: Path, dynamic: dict, opset: int) -> None:
    args = tuple(inputs.values())
    # TorchScript-based exporter: plain Conv/ConvTranspose/MatMul/Resize graphs, dynamic axes by name
    torch.onnx.export(
        module, args, str(path), input_names=list(inputs), output_names=outputs, dynamic_axes=dynamic,
        opset_version=opset, dynamo=False, do_constant_folding=True,
    )


def export_onnx(codec: RoiCodec, out_dir: str | Path, height: int, width: int, opset: int = 17) -> dict[str, Path]:
    """Write ``analysis.onnx`` (for frames of height x width) and ``synthesis.onnx`` (any size) into ``out_dir``;
    returns their paths (and ``meta.json``: shapes, model id, how to feed the graphs)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = transforms_copy(codec)
    analysis_inputs, synthesis_inputs = example_inputs(model, height, width)
    paths = {"analysis": out / "analysis.onnx", "synthesis": out / "synthesis.onnx", "meta": out / "meta.json"}
    feature_axes = {name: {2: f"{name}_h", 3: f"{name}_w"} for name in ("f8", "f16", "f32")}
    with torch.no_grad():
        _export(AnalysisGraph(model, height, width), analysis_inputs, ["y", "z", "w"], paths["analysis"], feature_axes, opset)
        _export(SynthesisGraph(model), synthesis_inputs, ["x_hat"], paths["synthesis"],
                {"y_hat": {2: "y_h", 3: "y_w"}, "x_hat": {2: "x_h", 3: "x_w"}}, opset)
    ph, pw = padded_size(height, width, RoiHyperprior.PAD_MULTIPLE)
    meta = {
        "model_id": codec.model_id,
        "frame": [height, width],
        "padded": [ph, pw],
        "opset": opset,
        "analysis": {k: list(v.shape) for k, v in analysis_inputs.items()},
        "synthesis": {"y_hat": ["1", codec.config.M, "h", "w"], "embedding": [1, codec.config.rate_bins]},
        "notes": "x: RGB/255 replicate-padded bottom/right; mask_alpha = (1-m)*u_alpha + m; embedding = soft one-hot "
                 "of the rate (RoiHyperprior.rate_embedding); feature maps any spatial size; entropy coding stays in "
                 "CompressAI (RoiCodec._coder, float64 on the CPU).",
    }
    paths["meta"].write_text(json.dumps(meta, indent=1))
    return paths


def main(argv: list[str] | None = None) -> int:
    """``roi-codec export-onnx [--model PATH] [--size HxW] --out DIR [--check]``; argv[0] may be the sub-command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export-onnx":
        argv = argv[1:]
    p = argparse.ArgumentParser(prog="roi-codec export-onnx", description="write analysis.onnx and synthesis.onnx")
    p.add_argument("--model", default=None, help="model file (default: the shipped model; 'random' = untrained test model)")
    p.add_argument("--size", default="375x1242", help="frame HxW the analysis graph is built for (default 375x1242)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--check", action="store_true", help="run both graphs in ONNX Runtime and compare with PyTorch")
    args = p.parse_args(argv)
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
        codec = RoiCodec.load(args.model)
        paths = export_onnx(codec, args.out, h, w, opset=args.opset)
    except (ValueError, FileNotFoundError, OSError, ImportError) as exc:
        print(f"roi-codec export-onnx: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.check:
        from .onnx_check import compare_with_torch

        for name, err in compare_with_torch(codec, paths, h, w).items():
            print(f"check {name}: max |onnxruntime - torch| = {err['max_abs']:.3g} (relative to range {err['max_rel']:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
