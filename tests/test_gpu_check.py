"""tools/gpu_check.sh --dry-run: the GPU check's script, models, comparison and JSON, on the CPU (what CI runs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "ZSP_PYTHON": sys.executable}          # the interpreter running the tests


def test_gpu_check_dry_run_writes_a_complete_report(tmp_path):
    out = tmp_path / "gpu_dry.json"
    done = subprocess.run([str(ROOT / "tools" / "gpu_check.sh"), "--dry-run", "--out", str(out)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["device"] == "cpu" and report["input_hw"] == [64, 64]
    names = [n["network"] for n in report["networks"]]
    assert len(names) == 2 and names[1].startswith("mask2former_r50")
    for network in report["networks"]:
        eager = network["variants"]["eager_fp32"]
        # the backend path on the CPU is the reference computation itself: equal to rounding
        assert eager["vs_cpu_fp32"]["finite"] and eager["vs_cpu_fp32"]["embed_cosine_min"] > 0.9999
        assert eager["vs_cpu_fp32"]["mask_max_abs_diff_rel"] < 1e-4
        assert eager["ms"]["n"] == 2 and eager["ms"]["p50"] > 0
        assert network["variants"]["fast_fp16"] == {"skipped": "dry run: CUDA only"}
    onnx = report["onnxruntime"]
    assert "skipped" in onnx or onnx["vs_cpu_fp32"]["embed_cosine_min"] > 0.999
    assert {"torch", "numpy"} <= set(report["versions"]) and "provenance" in report


def test_gpu_check_without_cuda_says_so():
    import torch

    if torch.cuda.is_available():
        return
    done = subprocess.run([str(ROOT / "tools" / "gpu_check.sh")], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr
