"""zsp_ros.evaluation.predict: any segmenter -> COCO panoptic PNGs + JSON (what `zsp segment`,
`zsp bench runtime` and training's predict_panoptic write)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from zsp_ros.data.coco_format import read_panoptic_png
from zsp_ros.evaluation.predict import CocoPanopticWriter, Frame, predict_coco_panoptic, segments_info


@dataclass
class _Seg:
    id: int
    category_id: int
    score: float
    area: int
    bbox: tuple[int, int, int, int]


@dataclass
class _Result:
    panoptic: np.ndarray
    segments: list


class _Segmenter:
    """Left half segment 1 (category 5), a 2x2 corner segment 300 (category 9, id above 255)."""

    def segment(self, image):
        h, w = image.shape[:2]
        ids = np.zeros((h, w), np.int32)
        ids[:, : w // 2] = 1
        ids[:2, -2:] = 300
        return _Result(ids, [_Seg(1, 5, 0.9, int((ids == 1).sum()), (0, 0, w // 2, h)),
                             _Seg(300, 9, 0.5, 4, (w - 2, 0, 2, 2))])


def _frames():
    return [Frame(image_id=i + 1, png_name=f"f{i}.png", image=np.zeros((6, 8 + i, 3), np.uint8),
                  file_name=f"f{i}.jpg") for i in range(2)]


def test_predict_writes_pngs_and_json(tmp_path):
    writer = CocoPanopticWriter(tmp_path / "pan", record_images=True)
    seen = []
    n = predict_coco_panoptic(_Segmenter(), _frames(), writer, category_id_of={5: 50, 9: 90},
                              on_result=lambda f, r: seen.append(f.image_id))
    assert n == 2 and seen == [1, 2]
    path = writer.write_json(tmp_path / "pred.json", info={"description": "t"}, categories=[{"id": 50}],
                             indent=2)
    text = path.read_text()
    doc = json.loads(text)
    assert text.endswith("\n") and list(doc) == ["info", "images", "annotations", "categories"]
    assert doc["images"][1] == {"id": 2, "file_name": "f1.jpg", "height": 6, "width": 9}
    ann = doc["annotations"][0]
    assert ann["file_name"] == "f0.png"
    assert ann["segments_info"] == [{"id": 1, "category_id": 50, "iscrowd": 0, "bbox": [0, 0, 4, 6], "area": 24,
                                     "score": 0.9},
                                    {"id": 300, "category_id": 90, "iscrowd": 0, "bbox": [6, 0, 2, 2], "area": 4,
                                     "score": 0.5}]
    ids = read_panoptic_png(tmp_path / "pan" / "f0.png")
    assert np.array_equal(ids, _Segmenter().segment(np.zeros((6, 8, 3), np.uint8)).panoptic)


def test_writer_without_images_and_compact(tmp_path):
    writer = CocoPanopticWriter(tmp_path / "pan", atomic=True)
    predict_coco_panoptic(_Segmenter(), _frames()[:1], writer)
    doc = json.loads(writer.write_json(tmp_path / "p.json").read_text())
    assert list(doc) == ["annotations"]
    assert doc["annotations"][0]["segments_info"][1]["category_id"] == 9
    assert [p.name for p in (tmp_path / "pan").iterdir()] == ["f0.png"]     # no temporary file left


def test_record_images_needs_the_record(tmp_path):
    writer = CocoPanopticWriter(tmp_path, record_images=True)
    with pytest.raises(ValueError, match="images record"):
        writer.add(image_id=1, png_name="a.png", panoptic=np.zeros((2, 2), np.int32), segments_info=[])
    assert segments_info([]) == []
