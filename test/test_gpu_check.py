"""scripts/gpu_check.py runs on the CPU (there is no GPU in CI): the JSON holds every figure the GPU run records."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--frames", "2", "--model", "random",
         "--sizes", "108x192,75x124", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["cross_device_ok"] is True and report["environment"]["device"] == "cpu"
    assert set(report["sizes"]) == {"192x108", "124x75"}
    for variants in report["sizes"].values():
        assert "fp32" in variants
        for name, entry in variants.items():
            assert entry["encode_fps"] > 0 and entry["decode_fps"] > 0 and entry["bytes"] > 0
            assert entry["device_encoded_cpu_decoded"]["ok"] and entry["cpu_encoded_device_decoded"]["ok"]
        # on the CPU the fp32 "device" decode is the CPU's exact decode: identical pixels
        assert variants["fp32"]["pixels_vs_cpu_decode"]["max_abs"] == 0
        assert variants["fp32"]["cpu_encoded_device_decoded"]["pixels_vs_cpu_decode"]["max_abs"] == 0


def test_gpu_check_refuses_cuda_without_a_gpu(tmp_path):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: nothing to refuse")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(tmp_path / "x.json")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 2 and "CUDA is not available" in result.stderr
    assert not (tmp_path / "x.json").exists()
