"""The demo's pictures, drawn with zsp_ros.drawing and written to the output folder.

Contract of `write_pictures(out, recording, scenes, version_after=)`: for every scene with a node
overlay both before and after the add (the latest of each phase), it writes
``scene_<k>_before.png`` and ``scene_<k>_after.png`` (the node's overlays as received);
``overlay_before.png`` / ``overlay_after.png``, copies of the pair of the scene with the most
unseen pixels; and ``contact_sheet.png`` (per scene: camera image | ground truth | before add |
after add, zsp_ros.drawing.contact_sheet at scale 2). It returns ``{"overlay_scene": k,
"scenes_with_pairs": [k, ...]}`` and raises ``DemoFailure`` when no scene has both overlays.
The ground truth is drawn by zsp_ros.drawing.overlay (`ground_truth_overlay`).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zsp_ros.data.synth_world import world_categories
from zsp_ros.demo.failure import DemoFailure
from zsp_ros.demo.recording import Recording, phase, stamp
from zsp_ros.demo.scenes import SceneSet
from zsp_ros.drawing.contact_sheet import contact_sheet
from zsp_ros.drawing.overlay import annotation_overlay
from zsp_ros.node.image_conversion import to_rgb8

COLUMNS = ["camera", "ground truth", "before add", "after add"]


def ground_truth_overlay(image: np.ndarray, pan: np.ndarray, segments: list[dict]) -> np.ndarray:
    """uint8 [H,W,3]: a scene's ground truth drawn like the node's overlays (labels "name 1.00")."""
    return annotation_overlay(image, pan, segments, {c["id"]: c for c in world_categories()}, labels=True)


def write_pictures(out: Path, recording: Recording, scenes: SceneSet, *, version_after: int) -> dict[str, Any]:
    """Before/after overlays per scene (latest of each phase) and the contact sheet; what was written."""
    latest: dict[tuple[int, str], Any] = {}
    for _, msg in recording.results:               # oldest first: the last one of each phase wins
        key = stamp(msg)
        if key in recording.sent and key in recording.overlays:
            latest[(recording.sent[key], phase(msg.category_set_version, version_after))] = recording.overlays[key]
    rows, captions, written = [], [], []
    for k in range(len(scenes.images)):
        pair = [latest.get((k, p)) for p in ("before", "after")]
        if any(p is None for p in pair):
            continue
        before, after = (to_rgb8(p) for p in pair)
        Image.fromarray(before).save(out / f"scene_{k}_before.png")
        Image.fromarray(after).save(out / f"scene_{k}_after.png")
        written.append(k)
        rows.append([scenes.images[k], ground_truth_overlay(scenes.images[k], scenes.panoptic[k], scenes.segments[k]),
                     before, after])
        captions.append(f"scene {k}: {scenes.unseen_pixels[k]} unseen pixels")
    if not written:
        raise DemoFailure("no scene has overlays both before and after the add (overlay topic silent?)")
    best = max(written, key=lambda k: scenes.unseen_pixels[k])
    shutil.copyfile(out / f"scene_{best}_before.png", out / "overlay_before.png")
    shutil.copyfile(out / f"scene_{best}_after.png", out / "overlay_after.png")
    contact_sheet(rows, captions, COLUMNS).save(out / "contact_sheet.png")
    return {"overlay_scene": best, "scenes_with_pairs": written}
