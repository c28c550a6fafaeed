"""The demo's scene set and the categories the kit has never seen.

Contract:

- `unseen_categories(manifest, kit_names)`: the synthetic-world categories (world dicts, world
  order) to add to the kit: the manifest's ``world.unseen`` names, else the world's default unseen
  split, minus what the kit already holds; a name not in the world raises ``DemoFailure``.
- `render_scenes(count=, size=, unseen_ids=, seed=)`: a deterministic (given the seed) `SceneSet`
  of ``count`` synthetic-world scenes of ``size`` x ``size`` pixels, each with at least
  ``min_unseen_fraction`` of its pixels on unseen categories; ``DemoFailure`` when ``max_tries``
  renders do not give enough.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zsp_ros.data.synth_render import render_scene
from zsp_ros.data.synth_world import DEFAULT_UNSEEN, world_categories
from zsp_ros.demo.failure import DemoFailure


@dataclass
class SceneSet:
    """Rendered scenes with COCO-style ground truth.

    images: uint8 [N,H,W,3]; panoptic: int32 [N,H,W] segment ids (0 = void);
    segments: per scene [{"id", "category_id", "iscrowd", "area", "isthing"}]; unseen_pixels: [N].
    """
    images: np.ndarray
    panoptic: np.ndarray
    segments: list[list[dict]]
    unseen_pixels: list[int]


def render_scenes(*, count: int, size: int, unseen_ids: set[int], seed: int, min_unseen_fraction: float = 0.05,
                  max_tries: int = 2000) -> SceneSet:
    """``count`` synthetic-world scenes (all categories), each with >= ``min_unseen_fraction`` unseen pixels."""
    cats = world_categories()
    things = [c for c in cats if c["isthing"]]
    stuff = [c for c in cats if not c["isthing"]]
    images, pans, segs, unseen_px = [], [], [], []
    for attempt in range(max_tries):
        scene = render_scene(np.random.default_rng([seed, attempt]), height=size, width=size, things=things,
                             stuff=stuff)
        pan = (scene.segment_map + 1).astype(np.int32)                       # -1 (void) -> 0
        areas = np.bincount(pan.ravel(), minlength=len(scene.segments) + 1)
        info = [{"id": i + 1, "category_id": s["category_id"], "iscrowd": 0, "area": int(areas[i + 1]),
                 "isthing": s["isthing"]} for i, s in enumerate(scene.segments)]
        unseen = sum(s["area"] for s in info if s["category_id"] in unseen_ids)
        if unseen < min_unseen_fraction * size * size:
            continue
        images.append(scene.image)
        pans.append(pan)
        segs.append(info)
        unseen_px.append(int(unseen))
        if len(images) == count:
            return SceneSet(np.stack(images), np.stack(pans), segs, unseen_px)
    raise DemoFailure(f"could not render {count} scenes with unseen categories in {max_tries} tries")


def unseen_categories(manifest: dict, kit_names: set[str]) -> list[dict]:
    """The world categories the kit has never seen, in world order: the manifest's
    ``world.unseen`` names when recorded, else the synthetic world's default unseen split,
    minus anything the kit already holds."""
    declared = (manifest.get("world") or {}).get("unseen") or list(DEFAULT_UNSEEN)
    by_name = {c["name"].casefold(): c for c in world_categories()}
    missing = [n for n in declared if n.casefold() not in by_name]
    if missing:
        raise DemoFailure(f"the kit names unseen categories that are not in the synthetic world: {missing}")
    wanted = {n.casefold() for n in declared} - {n.casefold() for n in kit_names}
    return [c for c in world_categories() if c["name"].casefold() in wanted]
