"""Semantic mIoU / hIoU / pAcc against hand-computed confusion matrices, and bad input."""
from __future__ import annotations

import numpy as np
import pytest

from zsp_ros.data.categories import make_split
from zsp_ros.data.coco_format import encode_png
from zsp_ros.evaluation.errors import EvaluationInputError
from zsp_ros.evaluation.semantic_iou import ConfusionMatrix, evaluate_semantic, summarize_semantic

CATS = [{"id": 1, "name": "red circle", "isthing": True}, {"id": 2, "name": "blue star", "isthing": True},
        {"id": 3, "name": "gray bricks", "isthing": False}]


def test_hand_computed_confusion():
    split = make_split(CATS, [2])                      # class index 1 unseen
    conf = ConfusionMatrix(3)
    gt = np.array([[0, 0], [1, 255]], dtype=np.uint8)
    pred = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    conf.update(gt, pred)
    iou, count = conf.per_class()
    # class 0: TP 1, GT 2, pred 1 -> 1/2; class 1: TP 1, GT 1, pred 2 -> 1/2; class 2 absent -> NaN.
    assert iou[0] == 0.5 and iou[1] == 0.5 and np.isnan(iou[2])
    assert count.tolist() == [2, 1, 0]
    out = summarize_semantic(conf, split["categories"])
    assert out["mIoU"] == {"all": 50.0, "seen": 50.0, "unseen": 50.0}
    assert out["hIoU"] == 50.0 and out["pAcc"] == pytest.approx(200 / 3)
    # A class predicted but absent from the ground truth is left out of the mean (detectron2).
    conf2 = ConfusionMatrix(3)
    conf2.update(np.array([[0, 0]], np.uint8), np.array([[0, 2]], np.uint8))
    out2 = summarize_semantic(conf2, split["categories"])
    assert out2["mIoU"]["all"] == 50.0 and out2["mIoU"]["unseen"] is None and out2["hIoU"] is None
    # "No prediction" (255) is a miss of the ground-truth class.
    conf3 = ConfusionMatrix(3)
    conf3.update(np.array([[0, 0, 2, 2]], np.uint8), np.array([[0, 255, 2, 2]], np.uint8))
    iou3, _ = conf3.per_class()
    assert iou3[0] == 0.5 and iou3[2] == 1.0 and conf3.pixel_accuracy() == 0.75


def test_seen_unseen_and_harmonic():
    split = make_split(CATS, [2])
    conf = ConfusionMatrix(3)
    conf.update(np.array([[0, 1, 2, 2]], np.uint8), np.array([[0, 0, 2, 2]], np.uint8))
    out = summarize_semantic(conf, split["categories"])
    # IoU: class 0 = 1/2, class 1 = 0, class 2 = 1; seen = (0.5 + 1) / 2 = 0.75, unseen = 0.
    assert out["mIoU"]["seen"] == 75.0 and out["mIoU"]["unseen"] == 0.0 and out["hIoU"] == 0.0
    assert out["mIoU"]["all"] == pytest.approx(50.0)
    assert [r["IoU"] for r in out["per_category"]] == [50.0, 0.0, 100.0]


def _folder(path, arrays):
    path.mkdir()
    for name, a in arrays.items():
        (path / name).write_bytes(encode_png(np.asarray(a, dtype=np.uint8)))
    return path


def test_folders_and_errors(tmp_path):
    split = make_split(CATS, [2])
    gt = _folder(tmp_path / "gt", {"000001.png": [[0, 1], [2, 255]], "000002.png": [[2, 2], [2, 2]]})
    good = _folder(tmp_path / "good", {"000001.png": [[0, 1], [2, 0]], "000002.png": [[2, 2], [2, 2]]})
    out = evaluate_semantic(gt, good, split)
    assert out["mIoU"]["all"] == 100.0 and out["pAcc"] == 100.0 and out["images"] == 2

    missing = _folder(tmp_path / "missing", {"000001.png": [[0, 1], [2, 0]]})
    with pytest.raises(EvaluationInputError, match=r"missing/000002.png \(image 000002\): prediction PNG does not"):
        evaluate_semantic(gt, missing, split)
    small = _folder(tmp_path / "small", {"000001.png": [[0, 1]], "000002.png": [[2, 2], [2, 2]]})
    with pytest.raises(EvaluationInputError, match=r"small/000001.png \(image 000001\): prediction is 2x1"):
        evaluate_semantic(gt, small, split)
    bad = _folder(tmp_path / "bad", {"000001.png": [[0, 7], [2, 0]], "000002.png": [[2, 2], [2, 2]]})
    with pytest.raises(EvaluationInputError, match=r"bad/000001.png \(image 000001\): prediction has class index 7"):
        evaluate_semantic(gt, bad, split)
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    (rgb / "000001.png").write_bytes(encode_png(np.zeros((2, 2, 3), np.uint8)))
    with pytest.raises(EvaluationInputError, match="want 8-bit single channel"):
        evaluate_semantic(gt, rgb, split)
    with pytest.raises(EvaluationInputError, match="folder does not exist"):
        evaluate_semantic(gt, tmp_path / "nowhere", split)
