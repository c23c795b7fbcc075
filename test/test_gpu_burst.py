"""The accelerator burst script end to end on CPU with a tiny budget (pack -> train -> model file + JSON)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
import torch
import yaml

from roi_codec_ros.codec import RoiCodec

REPO = Path(__file__).resolve().parents[1]


def test_burst_packs_within_budget_trains_and_writes_a_loadable_model(tmp_path):
    for name in ("a", "b"):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i in range(12):
            rng = np.random.default_rng(i)
            Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)).save(folder / f"{name}{i:02d}.png")
    config = yaml.safe_load((REPO / "configs" / "tiny_test.yaml").read_text())
    config.update(
        sources=[{"path": str(tmp_path / "data" / "a")}, {"path": str(tmp_path / "data" / "b"), "roi": "mixed"}],
        out_dir=str(tmp_path / "state"),
        val_fraction=0.2,
    )
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    pack_dir = tmp_path / "pack"

    def pack(budget_mib: float) -> list[Path]:
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "gpu_burst.py"), "pack", "--config", str(tmp_path / "run.yaml"),
             "--out", str(pack_dir), "--max-mib", str(budget_mib)],
            check=True,
        )
        return sorted(pack_dir.rglob("*.jpg"))

    everything = pack(100.0)
    full_mib = sum(p.stat().st_size for p in pack_dir.rglob("*") if p.is_file()) / (1 << 20)
    assert 18 <= len(everything) <= 24  # the training split of both sources (val images stay out)
    budget_mib = full_mib - 0.15  # less than all images take: the pack must stop at the budget
    packed = pack(budget_mib)
    assert 2 <= len(packed) < len(everything)
    assert sum(p.stat().st_size for p in pack_dir.rglob("*") if p.is_file()) <= budget_mib * (1 << 20)
    assert {p.parent.name for p in packed} == {"00", "01"}  # both sources represented

    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_burst.py"), "run", "--pack", str(pack_dir), "--out", str(out),
         "--minutes", "0.2", "--device", "cpu", "--threads", "1", "--check-frames", "1"],
        check=True,
        timeout=600,
    )
    report = json.loads((out / "burst.json").read_text())
    assert report["steps"] > 0 and report["steps_per_s"] > 0 and report["images_per_s"] > 0
    assert 0.15 * 60 <= report["train_wall_s"] <= 0.2 * 60 + 30
    assert report["val_before"] and report["val_after"]
    assert report["model_mib"] <= 16
    blob = torch.load(out / "model.pt", weights_only=True)
    assert all(v.dtype != torch.float16 for v in blob["state_dict"].values())  # full precision to continue from
    codec = RoiCodec.load(out / "model.pt")
    rgb = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    assert codec.decode(codec.encode(rgb, rate=0.5).data).shape == rgb.shape
    if (REPO / "scripts" / "gpu_check.py").is_file():
        assert report["gpu_check_rc"] == 0
        assert json.loads((out / "gpu_check.json").read_text())
