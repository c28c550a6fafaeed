"""`zsp doctor --json` run as a user runs it (the console script in the venv) tells the truth."""
from __future__ import annotations

import glob
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ZSP = Path(sys.executable).parent / "zsp"


@pytest.fixture(scope="module")
def report() -> dict:
    assert ZSP.exists(), f"{ZSP} missing: run tools/setup_env.sh (installs the console script)"
    out = subprocess.run([str(ZSP), "doctor", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_report_shape(report):
    assert report["python"] == sys.version.split()[0]
    for name, item in report["components"].items():
        if item["present"]:
            assert item["version"], name
        else:                                   # a missing piece says why and what it disables
            assert item["error"] and item["disables"], name


@pytest.mark.parametrize("name", ["torch", "rclpy", "zsp_msgs"])
def test_required_components_present(report, name):
    assert report["components"][name]["present"] is True, report["components"][name]


def test_rclpy_has_lifecycle(report):
    assert "lifecycle" in report["components"]["rclpy"]["version"]


def test_tensorrt_reported_truthfully(report):
    item = report["components"]["tensorrt"]
    if importlib.util.find_spec("tensorrt") is None:   # this machine and CI: not installable
        assert item["present"] is False
        assert "tensorrt" in item["error"]
        assert "TensorRT backend" in item["disables"]
    else:
        assert item["present"] is True and item["version"]


def test_cuda_reported_truthfully(report):
    version = report["components"]["torch"]["version"]
    if not glob.glob("/dev/nvidia[0-9]*"):              # no GPU device node: no CUDA
        assert "no CUDA device" in version, version
    else:
        assert "CUDA" in version and "no CUDA device" not in version, version
