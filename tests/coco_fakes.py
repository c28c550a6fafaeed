"""A COCO-layout folder made from a tiny synthetic world (helpers only, no tests here).

``coco_tree(world, root)`` links the synthetic world's files to the names of
zsp_ros/data/coco_layout.py (train2017/, annotations/panoptic_train2017.json, ...), so the
real-COCO loaders and ``zsp data`` run on data made here.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

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


def coco_tree(world: Path, root: Path) -> Path:
    """Make ``root`` a COCO-layout view of ``world``; returns ``root``."""
    for dst, src in LINKS.items():
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        os.symlink((world / src).resolve(), root / dst)
    for dst, src in COPIES.items():
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world / src, root / dst)
    return root
