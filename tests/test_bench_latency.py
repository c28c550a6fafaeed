"""`zsp bench latency`: the JSON has the documented keys, for one backend and for the CPU side-by-side mode."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    import torch

    from tests.runtime_fakes import make_real_kit

    torch.set_num_threads(1)
    return make_real_kit(tmp_path_factory.mktemp("kit"))


def test_single_backend_record(kit, tmp_path):
    from zsp_ros.cli.main import main

    out = tmp_path / "latency.json"
    assert main(["bench", "latency", "--backend", "onnxruntime", "--device", "cpu", "--size", "64x64", "--kit",
                 str(kit), "--repeats", "3", "--warmup", "1", "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"backend", "device", "model_ms_p50", "e2e_ms_p50", "fps", "memory", "versions", "device_name"} <= set(report)
    assert report["backend"] == "onnxruntime" and report["device"] == "cpu" and report["size_hw"] == [64, 64]
    assert 0 < report["model_ms_p50"] and report["fps"] == pytest.approx(1000 / report["e2e_ms_p50"], rel=1e-2)
    assert report["model_ms"]["n"] == 3 and report["versions"]["onnxruntime"]
    assert report["backend_info"]["input_hw"] == [64, 64] and "provenance" in report


def test_compare_puts_torch_and_onnxruntime_side_by_side(kit, tmp_path):
    from zsp_ros.cli.main import main

    out = tmp_path / "compare.json"
    assert main(["bench", "latency", "--compare", "--kit", str(kit), "--repeats", "2",
                 "--warmup", "1", "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "compare" and report["device"] == "cpu" and set(report["backends"]) == {"torch", "onnxruntime"}
    assert report["size_hw"] == [64, 96]          # no --size: the kit's own size for 480x640 frames (rule 64 / 96)
    for name, record in report["backends"].items():
        assert record["backend"] == name and record["model_ms_p50"] > 0 and record["e2e_ms_p50"] > 0
    assert report["max_abs_diff"]["mask_logits"] < 1e-3 and report["max_abs_diff"]["query_embeds"] < 1e-3
    assert report["onnxruntime_speedup"]["model"] > 0
