"""Message builders of the node (pure functions): result -> messages and back, with empty and
degenerate inputs."""
from __future__ import annotations

import numpy as np
import pytest

from zsp_ros.kit.category_set import Category, CategorySet
from zsp_ros.node.messages import (
    category_set_from_message,
    category_set_message,
    color_mask_message,
    diagnostic_message,
    overlay_message,
    panoptic_from_message,
    panoptic_message,
    segments_consistent,
    semantic_message,
)
from zsp_ros.node.output_buffers import OutputBuffers
from zsp_ros.node.raw_image import image_to_numpy
from zsp_ros.runtime.result import Segment, SegmentationResult


def _header(sec=1_700_000_000, nanosec=123, frame_id="cam"):
    from std_msgs.msg import Header
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def _result():
    pan = np.zeros((5, 7), np.int32)
    pan[0:2, 1:4] = 1            # thing, 6 px, bbox (1, 0, 3, 2)
    pan[3:5, 0:7] = 2            # stuff, 14 px
    segments = [Segment(id=1, category_id=11, name="red circle", score=0.75, isthing=True, area=6, bbox=(1, 0, 3, 2)),
                Segment(id=2, category_id=70000, name="gray bricks", score=0.5, isthing=False, area=14,
                        bbox=(0, 3, 7, 2))]
    semantic = np.full((5, 7), 11, np.int32)
    return SegmentationResult(panoptic=pan, segments=segments, semantic=semantic, category_set_version=4,
                              timings_ms={"preprocess": 1.5, "model": 20.25, "postprocess": 3.0, "total": 24.75})


def test_panoptic_message_round_trip():
    result, header = _result(), _header()
    msg = panoptic_message(result, header)
    assert msg.header == header and msg.id_image.header == header
    assert msg.id_image.encoding == "16UC1" and (msg.id_image.height, msg.id_image.width) == (5, 7)
    assert msg.id_image.step == 14 and len(msg.id_image.data) == 70
    assert msg.category_set_version == 4
    assert (msg.preprocess_ms, msg.model_ms, msg.postprocess_ms) == (1.5, 20.25, 3.0)
    ids, segments = panoptic_from_message(msg)
    np.testing.assert_array_equal(ids, result.panoptic)
    assert segments == [{"id": 1, "category_id": 11, "label": "red circle", "score": 0.75, "isthing": True,
                         "area": 6, "bbox": [1, 0, 3, 2]},
                        {"id": 2, "category_id": 70000, "label": "gray bricks", "score": 0.5, "isthing": False,
                         "area": 14, "bbox": [0, 3, 7, 2]}]
    assert segments_consistent(ids, segments) == []


def test_id_image_encoding_option_and_fallback_for_large_ids():
    result = _result()
    wide = panoptic_message(result, _header(), encoding="32SC1")
    assert wide.id_image.encoding == "32SC1"
    np.testing.assert_array_equal(panoptic_from_message(wide)[0], result.panoptic)
    big = _result()
    big.panoptic[big.panoptic == 2] = 70000
    big.segments[1] = Segment(id=70000, category_id=5, name="x", score=0.5, isthing=False, area=14, bbox=(0, 3, 7, 2))
    fallback = panoptic_message(big, _header())                 # asked 16UC1; 70000 does not fit
    assert fallback.id_image.encoding == "32SC1"
    np.testing.assert_array_equal(panoptic_from_message(fallback)[0], big.panoptic)
    with pytest.raises(ValueError, match="16UC1, 32SC1"):
        panoptic_message(result, _header(), encoding="mono8")


def test_outputs_reuse_their_buffers_across_frames():
    buffers = OutputBuffers()
    result = _result()
    first = panoptic_message(result, _header(), buffers=buffers)
    data = first.id_image.data
    mask = color_mask_message(result, _header(), buffers=buffers)
    sem = semantic_message(result.semantic, _header(), buffers=buffers)
    result.panoptic[0, 0] = 1
    second = panoptic_message(result, _header(frame_id="next"), buffers=buffers)
    assert second.id_image.data is data and buffers.allocations == 3          # id image, colour mask, semantic
    assert second.id_image.header.frame_id == "next" and panoptic_from_message(second)[0][0, 0] == 1
    assert color_mask_message(result, _header(), buffers=buffers) is mask
    assert semantic_message(result.semantic, _header(), buffers=buffers) is sem and buffers.allocations == 3


def test_color_mask_is_the_category_palette_without_text():
    from zsp_ros.drawing.palette import category_color

    result = _result()
    msg = color_mask_message(result, _header())
    assert msg.encoding == "rgb8" and (msg.height, msg.width) == (5, 7)
    out = image_to_numpy(msg)
    assert (out[2] == 0).all()                                               # void: black
    assert (out[0:2, 1:4] == category_color(11)).all() and (out[3:5] == category_color(70000)).all()
    assert len({tuple(px) for px in out.reshape(-1, 3)}) == 3                # 2 categories + void: no text, no edges


def test_panoptic_message_of_an_empty_result():
    empty = SegmentationResult(panoptic=np.zeros((1, 1), np.int32), segments=[], semantic=None,
                               category_set_version=1, timings_ms={})
    msg = panoptic_message(empty, _header())
    ids, segments = panoptic_from_message(msg)
    assert ids.tolist() == [[0]] and segments == [] and msg.model_ms == 0.0


def test_segments_consistent_names_every_fault():
    ids = _result().panoptic
    good = panoptic_from_message(panoptic_message(_result(), _header()))[1]
    assert segments_consistent(ids, good[:1]) == ["ids [2] are in the image but not in segments"]
    wrong = [dict(good[0], area=5), dict(good[1], bbox=[0, 3, 7, 1])]
    problems = segments_consistent(ids, wrong)
    assert problems == ["segment 1: area 5 but 6 pixels", "segment 2: bbox [0, 3, 7, 1] but measured [0, 3, 7, 2]"]
    assert segments_consistent(ids, [*good, dict(good[0], id=9)]) == ["segment 9 has no pixels"]
    assert "repeat" in segments_consistent(ids, [*good, good[0]])[0]


def test_semantic_message_uses_16_bit_ids_and_widens_when_needed():
    header = _header()
    small = semantic_message(np.array([[1, 65535]], np.int32), header)
    assert small.encoding == "16UC1" and image_to_numpy(small).tolist() == [[1, 65535]]
    assert small.header == header
    big = semantic_message(np.array([[1, 70000]], np.int64), header)
    assert big.encoding == "32SC1" and image_to_numpy(big).tolist() == [[1, 70000]]
    with pytest.raises(ValueError, match=r"\[H,W\]"):
        semantic_message(np.zeros((2, 2, 1), np.int32), header)


def test_overlay_message_colours_segments_only():
    result = _result()
    image = np.full((5, 7, 3), 40, np.uint8)
    msg = overlay_message(image, result, _header(), labels=False)
    assert msg.encoding == "rgb8"
    out = image_to_numpy(msg)
    assert out.shape == (5, 7, 3)
    assert (out[2] == 40).all()                      # void row untouched
    assert not (out[0:2, 1:4] == 40).all()           # segment pixels coloured
    big = image_to_numpy(overlay_message(image, result, _header(), labels=False, min_side=20))
    assert big.shape == (20, 28, 3) and (big[8:12] == 40).all()               # enlarged 4x (nearest)


def test_category_set_message_round_trip():
    cats = CategorySet((Category(1, "red circle", True), Category(7, "grass", False),
                        Category(8, "purple star", True, origin="added")), version=3, text_encoder="minilm-l6-v2")
    msg = category_set_message(cats, _header(frame_id=""))
    assert msg.version == 3 and msg.text_encoder == "minilm-l6-v2"
    assert [c.origin for c in msg.categories] == [msg.categories[0].ORIGIN_SEEN] * 2 + [msg.categories[0].ORIGIN_ADDED]
    assert category_set_from_message(msg) == cats.to_dict()
    assert category_set_message(CategorySet((), version=0)).categories == []


def test_diagnostic_message():
    from diagnostic_msgs.msg import DiagnosticStatus

    msg = diagnostic_message(name="n", hardware_id="cpu", level="warn", summary="s",
                             values={"rate_hz": 12.34567, "frames": 3, "kit": "/k"})
    (status,) = msg.status
    assert status.level == DiagnosticStatus.WARN and status.message == "s" and status.hardware_id == "cpu"
    assert [(kv.key, kv.value) for kv in status.values] == [("rate_hz", "12.346"), ("frames", "3"), ("kit", "/k")]
    with pytest.raises(ValueError, match="level must be one of"):
        diagnostic_message(name="n", hardware_id="", level="bad", summary="", values={})
