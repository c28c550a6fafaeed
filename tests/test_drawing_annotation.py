"""zsp_ros.drawing: ground-truth overlays (annotation_overlay) and the contact sheet."""
from __future__ import annotations

import numpy as np
import pytest

from zsp_ros.drawing.contact_sheet import contact_sheet
from zsp_ros.drawing.overlay import AnnotatedSegment, annotation_overlay, draw_overlay

CATEGORIES = {7: {"id": 7, "name": "cup", "isthing": 1}, 9: {"id": 9, "name": "wall", "isthing": 0}}


def _scene():
    image = np.full((30, 40, 3), 90, np.uint8)
    pan = np.zeros((30, 40), np.int64)
    pan[:, 20:] = 1
    pan[5:15, 5:15] = 2
    return image, pan, [{"id": 1, "category_id": 9}, {"id": 2, "category_id": 7}]


def test_compact_ids_draw_like_draw_overlay():
    image, pan, info = _scene()
    records = [AnnotatedSegment(id=1, category_id=9, name="wall", isthing=False),
               AnnotatedSegment(id=2, category_id=7, name="cup", isthing=True)]
    assert np.array_equal(annotation_overlay(image, pan, info, CATEGORIES), draw_overlay(image, pan, records))


def test_large_coco_ids_are_renumbered_and_scale_enlarges():
    image, pan, info = _scene()
    big = np.where(pan == 1, 3226956, np.where(pan == 2, 16777215, 0))         # real COCO-style ids
    big_info = [{"id": 3226956, "category_id": 9}, {"id": 16777215, "category_id": 7}]
    assert np.array_equal(annotation_overlay(image, big, big_info, CATEGORIES),
                          annotation_overlay(image, pan, info, CATEGORIES))
    out = annotation_overlay(image, pan, info, CATEGORIES, scale=3, labels=False)
    assert out.shape == (90, 120, 3) and (out[:3, :3] == 90).all()            # void keeps the image
    with pytest.raises(ValueError, match="scale"):
        annotation_overlay(image, pan, info, CATEGORIES, scale=0)


def test_contact_sheet_layout_and_errors():
    tile = np.zeros((10, 12, 3), np.uint8)
    sheet = contact_sheet([[tile, tile, tile], [tile, tile, tile]], ["a", "b"], ["x", "y", "z"], scale=2)
    assert sheet.mode == "RGB" and sheet.size == (3 * (24 + 6) + 6, 18 + 2 * (20 + 18 + 6))
    with pytest.raises(ValueError, match="at least one row"):
        contact_sheet([], [], ["x"])
    with pytest.raises(ValueError, match="captions"):
        contact_sheet([[tile]], [], ["x"])
