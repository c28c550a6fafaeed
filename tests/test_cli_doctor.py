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


def test_doctor_kit_checks_a_kit_end_to_end_and_fails_by_name(tmp_path, capsys):
    """`zsp doctor --kit`: one line per check; exit 1 with the failing check named (a changed file,
    an encoder that embeds the kit's names differently) and later checks that need it not tried."""
    import shutil

    from node_fixtures import make_attribute_kit

    from zsp_ros.cli.main import main

    kit = make_attribute_kit(tmp_path / "a")
    assert main(["doctor", "--kit", str(kit), "--probe", "red triangle"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "[ok] kit files", "[ok] network", "[ok] head", "[ok] text encoder", "[ok] generator", "[ok] thresholds",
        "[ok] input size", "[ok] bank", "[ok] add a category"]
    assert "source real" in lines[7] and "added 'red triangle'" in lines[8]

    bad_encoder = tmp_path / "b"
    shutil.copytree(kit, bad_encoder)
    manifest = json.loads((bad_encoder / "manifest.json").read_text())
    names = manifest["text_encoder"]["kwargs"]["names"]
    manifest["text_encoder"]["kwargs"]["names"] = names[1:] + names[:1]      # same vocabulary, other vectors?
    manifest["categories"][0]["name"], manifest["categories"][1]["name"] = (manifest["categories"][1]["name"],
                                                                            manifest["categories"][0]["name"])
    (bad_encoder / "manifest.json").write_text(json.dumps(manifest))
    assert main(["doctor", "--kit", str(bad_encoder), "--probe", "red triangle"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] text encoder:" in out
    assert "[FAIL] add a category: not tried" in out

    corrupt = tmp_path / "c"
    shutil.copytree(kit, corrupt)
    data = bytearray((corrupt / "head.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (corrupt / "head.safetensors").write_bytes(bytes(data))
    assert main(["doctor", "--kit", str(corrupt)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("[FAIL] kit files:") and "head.safetensors is corrupt" in out[0]
