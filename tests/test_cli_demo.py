"""`zsp demo` (zsp_ros.demo): its scoring (pure parts) and one short real run (node + camera processes over DDS).

The real run uses a tiny randomly initialised Mask2Former kit with the attribute text encoder
(built from the kit manifest's ``text_encoder.kwargs``), so it checks the plumbing — processes,
lifecycle, add/list services, recording, report and pictures — not segmentation quality.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from node_fixtures import make_attribute_kit

from zsp_ros.cli import demo
from zsp_ros.demo.failure import DemoFailure
from zsp_ros.demo.recording import Recording, parse_camera_log
from zsp_ros.demo.scenes import render_scenes, unseen_categories
from zsp_ros.demo.scoring import evaluate, prediction_in_world_ids

# ------------------------------------------------------------------ pure parts

def test_parse_camera_log_reads_only_sent_lines():
    text = "[INFO] camera up\nSENT 12 500 3\nSENT 12 900000000 0\ngarbage SENT\nSENT 1 2\n"
    assert parse_camera_log(text) == {(12, 500): 3, (12, 900000000): 0}


def test_unseen_categories_from_manifest_or_default():
    from zsp_ros.data.synth_world import DEFAULT_UNSEEN

    got = unseen_categories({}, {"red circle"})                    # no manifest entry: the default split
    assert {c["name"] for c in got} == set(DEFAULT_UNSEEN)
    got = unseen_categories({}, {"Red Triangle"})                  # minus what the kit already holds
    assert {c["name"] for c in got} == set(DEFAULT_UNSEEN) - {"red triangle"}
    assert [c["name"] for c in unseen_categories({"world": {"unseen": ["Red Triangle", "gray dots"]}},
                                                 {"gray dots"})] == ["red triangle"]
    with pytest.raises(DemoFailure, match="not in the synthetic world"):
        unseen_categories({"world": {"unseen": ["chair"]}}, set())


def test_prediction_in_world_ids_maps_names_and_voids_unknown_labels():
    ids = np.array([[1, 1, 2], [3, 3, 0]], np.int32)
    segments = [{"id": 1, "label": "Red Circle"}, {"id": 2, "label": "my mug"}, {"id": 3, "label": "gray dots"}]
    pred, kept = prediction_in_world_ids(ids, segments, {"red circle": 1, "gray dots": 50})
    assert pred.tolist() == [[1, 1, 0], [3, 3, 0]]
    assert kept == [{"id": 1, "category_id": 1}, {"id": 3, "category_id": 50}]


def test_evaluate_scores_before_and_after_and_latency():
    from std_msgs.msg import Header

    from zsp_ros.data.synth_world import DEFAULT_UNSEEN, world_categories
    from zsp_ros.node.messages import panoptic_message
    from zsp_ros.runtime.result import Segment, SegmentationResult

    world = {c["name"]: c for c in world_categories()}
    unseen_ids = {world[n]["id"] for n in DEFAULT_UNSEEN}
    scenes = render_scenes(count=2, size=48, unseen_ids=unseen_ids, seed=3)
    names = {c["id"]: c["name"] for c in world.values()}

    def message(k, version, *, perfect, stamp):
        pan = scenes.panoptic[k]
        segs = [Segment(id=s["id"], category_id=900 + s["id"], name=names[s["category_id"]], score=1.0,
                        isthing=s["isthing"], area=s["area"], bbox=(0, 0, 1, 1))
                for s in scenes.segments[k] if perfect or s["category_id"] not in unseen_ids]
        keep = np.isin(pan, [s.id for s in segs])
        result = SegmentationResult(panoptic=np.where(keep, pan, 0).astype(np.int32), segments=segs, semantic=None,
                                    category_set_version=version)
        header = Header()
        header.stamp.sec, header.stamp.nanosec = stamp, 0
        return panoptic_message(result, header)

    rec = Recording()
    for k in range(2):
        rec.sent[(100 + k, 0)] = k
        rec.sent[(200 + k, 0)] = k
        rec.results.append((100 + k + 0.050, message(k, 1, perfect=False, stamp=100 + k)))
        rec.results.append((200 + k + 0.150, message(k, 2, perfect=True, stamp=200 + k)))
    rec.results.append((999.0, message(0, 2, perfect=True, stamp=999)))        # not a camera frame: ignored
    seen_ids = {c["id"] for c in world.values()} - unseen_ids
    metrics = evaluate(rec, scenes, version_after=2, unseen_ids=unseen_ids, seen_ids=seen_ids)
    assert metrics["unseen_pq_before"] == 0.0 and metrics["unseen_pq_after"] == 100.0
    assert metrics["seen_pq_before"] == 100.0 and metrics["seen_pq_after"] == 100.0
    assert metrics["frames_evaluated"] == {"before": 2, "after": 2}
    assert metrics["latency_ms"]["p50"] == pytest.approx(100.0, abs=0.1)


# ------------------------------------------------------------------ a real, short run

@pytest.mark.timeout(240)
def test_demo_runs_end_to_end_and_writes_its_outputs(tmp_path):
    kit = make_attribute_kit(tmp_path / "kit")
    out = tmp_path / "demo_out"
    args = argparse.Namespace(kit=str(kit), out=str(out), scenes=2, size=0, rate=5.0, before_s=1.0, after_s=1.0,
                              seed=0, deadline_s=170.0)
    assert demo.run(args) == 0, (out / "node.log").read_text() if (out / "node.log").exists() else "no node log"
    report = json.loads((out / "report.json").read_text())
    for key in ("unseen_pq_before", "unseen_pq_after", "add_category_s", "frames_sent", "frames_received"):
        assert key in report
    assert set(report["latency_ms"]) == {"p50", "p90", "p99"} and report["latency_ms"]["p50"] > 0
    assert 0 < report["frames_received"] <= report["frames_sent"]
    assert report["version_after"] == report["version_before"] + 1 == report["category_set_version"]
    assert report["categories_after"] - report["categories_before"] == len(report["unseen_names"]) == 11
    assert report["scene_size"] == 64 and report["provenance"]["command"][:2] == ["zsp", "demo"]
    for name in ("overlay_before.png", "overlay_after.png", "contact_sheet.png", "node.log", "camera.log"):
        assert (out / name).is_file(), name


def test_demo_fails_with_a_reason_when_the_kit_is_missing(tmp_path, capsys):
    args = argparse.Namespace(kit=str(tmp_path / "nope"), out=str(tmp_path / "o"), scenes=2, size=0, rate=5.0,
                              before_s=1.0, after_s=1.0, seed=0, deadline_s=60.0)
    assert demo.run(args) == 1
    assert "zsp demo: FAILED:" in capsys.readouterr().err
