"""Scoring a demo recording against the scenes' ground truth.

Contract:

- `prediction_in_world_ids(ids, segments, world_by_name)`: a predicted id map and its segments
  (``{"id", "label"}``, as zsp_ros.node.messages.panoptic_from_message gives them) in synthetic-world
  category ids, matched by name (case-insensitive); segments with unknown names become void (0).
- `evaluate(recording, scenes, version_after=, unseen_ids=, seen_ids=)`: over the results of
  camera frames only (others are ignored), PQ in percent (zsp_ros.evaluation.panoptic_quality,
  rounded to 0.01; None when no category of the group occurs) of the unseen and the seen
  categories before and after the add, the frames evaluated per phase and the latency camera
  stamp -> result arrival {p50, p90, p99} in ms (None without frames).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from zsp_ros.data.synth_world import world_categories
from zsp_ros.demo.recording import Recording, phase, stamp
from zsp_ros.demo.scenes import SceneSet
from zsp_ros.evaluation.panoptic_quality import PQStat, pq_single_image
from zsp_ros.node.messages import panoptic_from_message


def prediction_in_world_ids(ids: np.ndarray, segments: list[dict], world_by_name: dict[str, int]
                            ) -> tuple[np.ndarray, list[dict]]:
    """Map predicted segments to world category ids by name; unknown names become void."""
    keep, out = [], ids.copy()
    for s in segments:
        cid = world_by_name.get(s["label"].casefold())
        if cid is None:
            out[out == s["id"]] = 0
        else:
            keep.append({"id": s["id"], "category_id": cid})
    return out, keep


def evaluate(recording: Recording, scenes: SceneSet, *, version_after: int, unseen_ids: set[int],
             seen_ids: set[int]) -> dict[str, Any]:
    """PQ before/after (percent), latencies and counts from a recording."""
    world = world_categories()
    by_name = {c["name"].casefold(): c["id"] for c in world}
    known = {c["id"] for c in world}
    stats = {"before": PQStat(), "after": PQStat()}
    latencies, per_phase = [], {"before": 0, "after": 0}
    for arrival, msg in recording.results:
        key = stamp(msg)
        if key not in recording.sent:
            continue
        k = recording.sent[key]
        latencies.append((arrival - (key[0] + key[1] * 1e-9)) * 1e3)
        which = phase(msg.category_set_version, version_after)
        per_phase[which] += 1
        ids, segments = panoptic_from_message(msg)
        pred, pred_segments = prediction_in_world_ids(ids, segments, by_name)
        stats[which] += pq_single_image(scenes.panoptic[k], pred, scenes.segments[k], pred_segments, known)

    def pq(stat: Any, ids: set[int]) -> float | None:
        value = stat.average(sorted(ids))["pq"]
        return None if value is None else round(100.0 * value, 2)

    lat = np.asarray(latencies, dtype=np.float64)
    return {
        "unseen_pq_before": pq(stats["before"], unseen_ids), "unseen_pq_after": pq(stats["after"], unseen_ids),
        "seen_pq_before": pq(stats["before"], seen_ids), "seen_pq_after": pq(stats["after"], seen_ids),
        "frames_evaluated": per_phase,
        "latency_ms": {f"p{q}": (round(float(np.percentile(lat, q)), 1) if lat.size else None) for q in (50, 90, 99)},
    }
