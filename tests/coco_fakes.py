"""COCO-layout folders made from a tiny synthetic world (helpers only, no tests here).

``coco_tree(world, root)`` links the synthetic world's files to the names of
zsp_ros/data/coco_layout.py (train2017/, annotations/panoptic_train2017.json, ...), so the
real-COCO loaders and ``zsp data`` run on data made here (categories stay the world's; pass
the world's split.json as ``split_file``).

``coco_panoptic_tree(world, root)`` makes the panoptic part of COCO with *real COCO panoptic
category ids*: every world category is given a COCO category of the same seen / unseen status
under the ZSP split (and the same thing / stuff kind), cycling when the world has more, so the
real ``--protocol zsp`` split file applies unchanged.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

LINKS = {  # COCO layout path -> synthetic world path
    "train2017": "images/train", "val2017": "images/val",
    "train2014": "images/train", "val2014": "images/val",
    "panoptic_train2017": "annotations/panoptic_train", "panoptic_val2017": "annotations/panoptic_val",
    "coco_stuff/annotations_detectron2/train2017": "annotations/semantic_train",
    "coco_stuff/annotations_detectron2/val2017": "annotations/semantic_val",
}
COPIES = {
    "annotations/panoptic_train2017.json": "annotations/panoptic_train.json",
    "annotations/panoptic_val2017.json": "annotations/panoptic_val.json",
    "annotations/instances_train2014.json": "annotations/instances_train.json",
    "annotations/instances_val2014.json": "annotations/instances_val.json",
}
PANOPTIC_LINKS = {k: v for k, v in LINKS.items() if k.startswith(("train2017", "val2017", "panoptic_"))}


def coco_tree(world: Path, root: Path) -> Path:
    """Make ``root`` a COCO-layout view of ``world``; returns ``root``."""
    for dst, src in LINKS.items():
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        os.symlink((world / src).resolve(), root / dst)
    for dst, src in COPIES.items():
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world / src, root / dst)
    return root


def world_to_coco_ids(world_split: dict[str, Any], coco_split: dict[str, Any]) -> dict[int, int]:
    """World category id -> COCO category id of the same (seen, isthing) group, cycling in order."""
    groups: dict[tuple[bool, bool], list[int]] = {}
    for c in coco_split["categories"]:
        groups.setdefault((bool(c["seen"]), bool(c["isthing"])), []).append(int(c["id"]))
    used: dict[tuple[bool, bool], int] = {}
    mapping = {}
    for c in world_split["categories"]:
        key = (bool(c["seen"]), bool(c["isthing"]))
        if key not in groups:                     # no COCO category of that kind: keep seen status
            key = next(k for k in groups if k[0] == key[0])
        n = used.get(key, 0)
        mapping[int(c["id"])] = groups[key][n % len(groups[key])]
        used[key] = n + 1
    return mapping


def coco_panoptic_tree(world: Path, root: Path, *, split: str = "zsp") -> Path:
    """Make ``root`` the panoptic part of a COCO folder from ``world``, with COCO ids of ``split``.

    The PNGs and images are linked (panoptic PNGs hold segment ids, not category ids, so only
    the JSONs change); annotations/panoptic_{train,val}2017.json carry the 133 COCO panoptic
    categories. Returns ``root``.
    """
    from zsp_ros.data.coco_real import load_category_list, load_coco_split

    mapping = world_to_coco_ids(json.loads((world / "split.json").read_text()), load_coco_split(split))
    categories = [{"id": c["id"], "name": c["name"], "isthing": int(c["isthing"])}
                  for c in load_category_list("coco_panoptic")]
    for dst, src in PANOPTIC_LINKS.items():
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        os.symlink((world / src).resolve(), root / dst)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for part in ("train", "val"):
        data = json.loads((world / f"annotations/panoptic_{part}.json").read_text())
        data.pop("info", None)                    # the world's segmentations_folder is not ours
        data["categories"] = categories
        for ann in data["annotations"]:
            for seg in ann["segments_info"]:
                seg["category_id"] = mapping[int(seg["category_id"])]
        (root / f"annotations/panoptic_{part}2017.json").write_text(json.dumps(data))
    return root
