"""The category palette: fixed colours per id (written down, so a change is deliberate), void black,
distinct neighbours, and the colour mask painted into a caller's buffer; overlay label layout."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from zsp_ros.drawing.overlay import draw_overlay, enlargement, label_font_px
from zsp_ros.drawing.palette import category_color, category_colors, paint_color_mask


def test_colours_are_fixed_per_id():
    # Written down once: the palette may not drift between versions (rviz users learn the colours).
    assert category_color(1).tolist() == [85, 131, 242] and category_color(7).tolist() == [91, 242, 85]
    assert category_color(0).tolist() == [0, 0, 0]
    many = category_colors(np.arange(1, 201))
    assert np.array_equal(many[6], category_color(7)) and many.dtype == np.uint8
    assert len({tuple(c) for c in many[:50]}) == 50                    # the first 50 ids all differ
    gaps = np.abs(many[1:50].astype(int) - many[:49].astype(int)).sum(axis=1)
    assert gaps.min() > 60                                             # neighbouring ids look different


def test_color_mask_into_a_buffer():
    pan = np.array([[0, 1, 1], [2, 2, 9]], np.int32)                  # id 9 has no record: black
    segs = [SimpleNamespace(id=1, category_id=7), SimpleNamespace(id=2, category_id=3)]
    out = np.full((2, 3, 3), 55, np.uint8)
    assert paint_color_mask(pan, segs, out=out) is out
    assert out[0, 0].tolist() == [0, 0, 0] and out[1, 2].tolist() == [0, 0, 0]
    assert (out[0, 1] == category_color(7)).all() and (out[1, 0] == category_color(3)).all()
    with pytest.raises(ValueError, match="out must be uint8"):
        paint_color_mask(pan, segs, out=np.zeros((2, 3), np.uint8))
    assert paint_color_mask(np.zeros((1, 1), np.int32), []).tolist() == [[[0, 0, 0]]]


def test_labels_scale_stay_inside_and_do_not_overlap():
    assert enlargement(128, 128, 480) == 4 and enlargement(480, 640, 480) == 1 and enlargement(10, 10, 0) == 1
    assert label_font_px(480, 640) == 17 and label_font_px(64, 64) == 10 and label_font_px(4000, 4000) == 48
    image = np.zeros((128, 128, 3), np.uint8)
    pan = np.zeros((128, 128), np.int32)
    for k in range(8):                                                 # 8 thin stripes: centres 16 px apart
        pan[16 * k:16 * k + 16, :] = k + 1
    segs = [SimpleNamespace(id=k + 1, category_id=k + 1, name=f"category number {k}", score=0.9, isthing=False)
            for k in range(8)]
    out = draw_overlay(image, pan, segs, outlines=False, alpha=0.0, min_side=480)
    assert out.shape == (512, 512, 3)
    label = (out == 0).all(axis=2)                                     # black label boxes (alpha 0: image is black)
    white = (out == 255).all(axis=2)                                   # text
    assert white.any() and not white[:, :2].any() and not white[:, -2:].any()
    rows = np.flatnonzero(white.any(axis=1))
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)       # one run of text rows per label
    assert 4 <= len(runs) <= 8                                         # stacked or skipped, never on top of another
    assert label.any()
