"""Overlay drawing: void untouched, segments coloured, outlines on borders, labels written."""
from __future__ import annotations

import numpy as np
import pytest

from zsp_ros.drawing.overlay import boundaries, category_color, draw_overlay, segment_colors
from zsp_ros.runtime.result import Segment


def _seg(i, cat, thing=True):
    return Segment(id=i, category_id=cat, name=f"c{cat}", score=0.9, isthing=thing, area=0, bbox=(0, 0, 1, 1))


def test_void_untouched_segments_coloured_and_outlined():
    image = np.full((40, 60, 3), 100, np.uint8)
    pan = np.zeros((40, 60), np.int32)
    pan[5:25, 5:30] = 1
    pan[5:25, 30:55] = 2
    segs = [_seg(1, 3), _seg(2, 4, thing=False)]
    out = draw_overlay(image, pan, segs, labels=False)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert (out[pan == 0] == 100).all()                                 # void keeps the image
    assert (out[10, 10] != out[10, 40]).any()                            # two segments, two colours
    assert (out[5, 10] == 255).all() and (out[10, 29] == 255).all()      # outline on the borders
    assert not (out[15, 15] == 255).all()                                # not inside
    plain = draw_overlay(image, pan, segs, labels=False, outlines=False)
    assert not (plain == 255).all(-1).any()


def test_labels_are_drawn():
    image = np.zeros((60, 120, 3), np.uint8)
    pan = np.zeros((60, 120), np.int32)
    pan[10:50, 10:110] = 1
    with_labels = draw_overlay(image, pan, [_seg(1, 3)], outlines=False)
    without = draw_overlay(image, pan, [_seg(1, 3)], outlines=False, labels=False)
    assert (with_labels != without).any()
    assert (with_labels[pan == 0] == 0).all()                            # label stays inside the segment here


def test_colours_are_stable_and_things_differ_per_instance():
    a = segment_colors([_seg(1, 3), _seg(2, 3), _seg(3, 3, thing=False)])
    b = segment_colors([_seg(1, 3), _seg(2, 3), _seg(3, 3, thing=False)])
    assert np.array_equal(a, b) and a.dtype == np.uint8
    assert (a[0] != a[1]).any()                                          # two instances of one thing category
    assert np.array_equal(a[2], category_color(3))                      # stuff: the category colour
    assert segment_colors([]).shape == (0, 3)


def test_boundaries_and_errors():
    ids = np.array([[1, 1, 2], [1, 1, 2], [0, 0, 0]])
    edge = boundaries(ids)
    assert edge[0, 1] and edge[0, 2] and edge[1, 0] and not edge[0, 0]
    with pytest.raises(ValueError, match="does not match image"):
        draw_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.int32), [])
    with pytest.raises(ValueError, match="uint8"):
        draw_overlay(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.int32), [])
    out = draw_overlay(np.zeros((1, 1, 3), np.uint8), np.ones((1, 1), np.int32), [_seg(1, 2)])
    assert out.shape == (1, 1, 3)
