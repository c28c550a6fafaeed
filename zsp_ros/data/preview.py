"""Contact sheets of a COCO panoptic dataset: each image beside its annotation overlay.

Works on any COCO panoptic JSON + PNG folder (the synthetic world, or predictions written in
the same format). The drawing is zsp_ros.drawing's: `annotation_overlay` (the package palette,
white segment borders, each segment's "name 1.00" at its centre) enlarged ``scale`` times, and
`contact_sheet` (one captioned row per image: image | annotation). The PNG is written to ``out``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from zsp_ros.data.coco_format import load_json, panoptic_folder, read_panoptic_png, read_png
from zsp_ros.drawing.contact_sheet import contact_sheet
from zsp_ros.drawing.overlay import annotation_overlay


def write_panoptic_preview(panoptic_json: str | os.PathLike, image_root: str | os.PathLike,
                           out: str | os.PathLike, *, count: int = 8, scale: int = 3,
                           panoptic_root: str | os.PathLike | None = None) -> Path:
    """Contact sheet of the first ``count`` images of a COCO panoptic JSON, written as PNG to ``out``."""
    data = load_json(panoptic_json, what="panoptic JSON")
    folder = panoptic_folder(panoptic_json, data, panoptic_root)
    categories = {c["id"]: c for c in data["categories"]}
    images = {im["id"]: im for im in data["images"]}
    rows, captions = [], []
    for ann in data["annotations"][:count]:
        im = images[ann["image_id"]]
        image = read_png(Path(image_root) / im["file_name"], what="image", image=im["id"], mode="RGB")
        pan = read_panoptic_png(folder / ann["file_name"], image=im["id"])
        big = np.repeat(np.repeat(image, scale, 0), scale, 1)
        rows.append([big, annotation_overlay(image, pan, ann["segments_info"], categories, scale=scale)])
        captions.append(f"image {im['id']}  ({im['file_name']})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(rows, captions, ["image", "annotation"], scale=1).save(out)
    return out


def write_world_preview(root: str | os.PathLike, *, split: str = "val", count: int = 8,
                        out: str | os.PathLike | None = None, scale: int = 3) -> Path:
    """Contact sheet of a synthetic world's split (default DIR/preview.png)."""
    root = Path(root)
    return write_panoptic_preview(root / "annotations" / f"panoptic_{split}.json", root / "images" / split,
                                  out if out is not None else root / "preview.png", count=count, scale=scale)
