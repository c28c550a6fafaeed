"""`zsp bench node` on a tiny kit: the JSON it writes has its keys, sane values and its provenance
(a short real run: the Segmenter in this process, then zsp_node in its own process over DDS)."""
from __future__ import annotations

import argparse
import json

import pytest
from node_fixtures import make_attribute_kit


@pytest.mark.timeout(240)
def test_bench_node_writes_its_measurements(tmp_path):
    from zsp_ros.bench import node as bench

    kit = make_attribute_kit(tmp_path / "kit")
    out = tmp_path / "node.json"
    args = argparse.Namespace(out=str(out), kit=str(kit), width=96, height=64, short_side=0, max_long_side=0, frames=4, warmup=1,
                              overload_s=1.0, input_reliability="reliable", threads=1, seed=0, flood_s=1.0,
                              flood_hz=200.0, adds_s=2.0, adds_input_hz=5.0, add_clients=2, busy=False,
                              output_resolution="input", delivery_frames=5, variants=False)
    assert bench.run(args) == 0
    result = json.loads(out.read_text())
    for key in ("e2e_over_forward", "e2e_ms_p50", "forward_ms_p50", "rss_mb", "achieved_rate_hz", "drops_at_2x",
                "forward_inprocess_ms_p50"):
        assert isinstance(result[key], (int, float)), key
    assert result["e2e_over_forward"] == pytest.approx(result["e2e_ms_p50"] / result["forward_ms_p50"], rel=1e-2)
    assert result["transport_ms_p50"] == result["transport_ms"]["p50"] == result["node"]["transport_ms"]["p50"] > 0
    assert result["node_overhead_ms"] == pytest.approx(
        result["e2e_ms_p50"] - result["forward_ms_p50"] - result["transport_ms_p50"], abs=0.02)
    assert result["node_overhead_over_forward"] == pytest.approx(result["node_overhead_ms"] / result["forward_ms_p50"],
                                                                 abs=2e-3)
    assert result["node_overhead_paired_ms"] == pytest.approx(
        result["node"]["e2e_minus_forward_ms"]["p50"] - result["transport_ms_p50"], abs=0.02)
    assert result["id_image_encoding"] == "16UC1" and result["output_hw"] == [64, 96] and result["torch_threads"] == 1
    assert result["delivery"]["reliable/reliable"] == 1.0                    # small frames arrive either way
    assert 0.0 <= result["delivery"]["best_effort/best_effort"] <= 1.0
    assert result["e2e_ms_p50"] > result["forward_ms_p50"] > 0
    assert result["forward_ms_p50"] == result["node"]["node_model_ms"]["p50"]
    assert result["network_input_hw"] == [64, 64] and result["frame_hw"] == [64, 96]
    overload = result["node"]["overload"]
    assert overload["frames_sent"] >= overload["frames_received"] > 0
    assert result["node"]["node_exit_code"] == 0 and result["rss_mb"] > 100
    assert int(result["node"]["node_diagnostics_closed_loop"]["frames_processed"]) >= 5
    assert result["provenance"]["command"][:3] == ["zsp", "bench", "node"] and "machine" in result["provenance"]
    flood = result["node"]["flood"]
    assert flood["frames_sent"] >= flood["frames_received"] > 0 and flood["over_sustainable"] > 0
    adds = result["node"]["adds"]
    assert adds["clients"] == 2 and adds["with_adds"]["changes_ok"] >= 2, adds
    assert adds["with_adds"]["changes_failed"] == 0, adds["with_adds"]["failures"]
    assert adds["no_adds"]["frames_received"] > 0 and result["frames_during_adds_ratio"] == adds["ratio"] > 0
    assert result["cpu_count"] >= 1
