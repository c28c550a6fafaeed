"""Instance mAP50 / Recall@100 through pycocotools COCOeval, hand-computed cases, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from zsp_ros.data.categories import make_split
from zsp_ros.evaluation.errors import EvaluationInputError
from zsp_ros.evaluation.instance_ap import evaluate_instances

H = W = 8
CATS = [{"id": 1, "name": "red circle", "isthing": True}, {"id": 2, "name": "blue star", "isthing": True}]
SPLIT = make_split(CATS, [2])


def rle(y0, x0, y1, x1, h=H, w=W):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": [h, w], "counts": r["counts"].decode("ascii")}


@pytest.fixture
def gt(tmp_path):
    anns = [(1, 1, rle(0, 0, 4, 4)), (1, 2, rle(4, 4, 8, 8)), (2, 1, rle(0, 4, 4, 8)), (2, 1, rle(4, 0, 8, 4))]
    data = {"images": [{"id": i, "file_name": f"{i:06d}.png", "height": H, "width": W} for i in (1, 2)],
            "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "segmentation": s,
                             "area": float(mask_utils.area(s)), "bbox": list(mask_utils.toBbox(s)), "iscrowd": 0}
                            for k, (i, c, s) in enumerate(anns)],
            "categories": [{"id": c["id"], "name": c["name"]} for c in CATS]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def det(image, cat, seg, score):
    return {"image_id": image, "category_id": cat, "segmentation": seg, "score": score}


def test_perfect_seen_missing_unseen(gt):
    out = evaluate_instances(gt, [det(1, 1, rle(0, 0, 4, 4), 0.9), det(2, 1, rle(0, 4, 4, 8), 0.8),
                                  det(2, 1, rle(4, 0, 8, 4), 0.7)], SPLIT)
    assert out["mAP50"] == {"all": 50.0, "seen": 100.0, "unseen": 0.0, "hm": 0.0}
    assert out["recall100"] == {"all": 50.0, "seen": 100.0, "unseen": 0.0, "hm": 0.0}


def test_false_positive_ranked_first_halves_ap(gt, tmp_path):
    # Category 2 (one GT): FP at 0.9, TP (IoU 12/16 = 0.75 > 0.5) at 0.8 -> precision 1/2 at every recall.
    dets = [det(1, 2, rle(0, 0, 2, 2), 0.9), det(1, 2, rle(4, 4, 8, 7), 0.8)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(dets))
    out = evaluate_instances(gt, path, SPLIT)
    assert out["mAP50"]["unseen"] == pytest.approx(50.0) and out["recall100"]["unseen"] == 100.0
    assert out["mAP50"]["seen"] == 0.0
    # Category 1 (three GTs), one found at top score: precision 1 up to recall 1/3 -> 34 of 101 points.
    out = evaluate_instances(gt, [det(1, 1, rle(0, 0, 4, 4), 0.9)], SPLIT)
    assert out["mAP50"]["seen"] == pytest.approx(100 * 34 / 101)
    assert out["recall100"]["seen"] == pytest.approx(100 / 3)
    assert out["mAP50"]["hm"] == 0.0


def test_no_detections_and_a_bbox_field_is_harmless(gt):
    out = evaluate_instances(gt, [], SPLIT)
    assert out["mAP50"] == {"all": 0.0, "seen": 0.0, "unseen": 0.0, "hm": 0.0}
    d = det(1, 2, rle(4, 4, 8, 8), 0.5)
    d["bbox"] = [0, 0, 1, 1]
    assert evaluate_instances(gt, [d], SPLIT)["mAP50"]["unseen"] == pytest.approx(100.0)


@pytest.mark.parametrize("bad, message", [
    (det(9, 1, rle(0, 0, 4, 4), 0.9), "(image 9): detection #0 names an image id not in the ground truth"),
    (det(1, 7, rle(0, 0, 4, 4), 0.9), "(image 1): detection #0 has unknown category id 7"),
    (det(2, 1, rle(0, 0, 4, 4, h=4), 0.9), "(image 2): detection #0: mask size [4, 8] (HxW) differs"),
    ({"image_id": 1, "category_id": 1, "score": 0.3}, "(image 1): detection #0 lacks"),
])
def test_bad_results_name_file_and_image(gt, tmp_path, bad, message):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([bad]))
    with pytest.raises(EvaluationInputError) as info:
        evaluate_instances(gt, path, SPLIT)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_missing_files(gt, tmp_path):
    with pytest.raises(EvaluationInputError, match="results JSON does not exist"):
        evaluate_instances(gt, tmp_path / "none.json", SPLIT)
    with pytest.raises(EvaluationInputError, match="ground-truth instances JSON does not exist"):
        evaluate_instances(tmp_path / "none.json", [], SPLIT)
    with pytest.raises(EvaluationInputError, match=r"category ids \[2\] are not in the split"):
        evaluate_instances(gt, [], make_split(CATS[:1], []))
