"""The outcome rules of experiments/thing_errors_study.py on hand-made maps."""
from __future__ import annotations

import numpy as np

from experiments.thing_errors_study import classify, raw_mask_iou


def _box(shape, y0, y1, x0, x1):
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_every_outcome_on_a_hand_made_scene():
    shape = (20, 40)
    gt = np.zeros(shape, dtype=np.int32)
    pred = np.zeros(shape, dtype=np.int32)
    boxes = {1: (0, 8, 0, 8), 2: (0, 8, 10, 18), 3: (0, 8, 20, 28), 4: (10, 18, 0, 8), 5: (10, 18, 10, 18),
             6: (10, 18, 20, 28)}
    for gid, b in boxes.items():
        gt[_box(shape, *b)] = gid
    gt_segments = {1: {"name": "red star", "area": 64}, 2: {"name": "red star", "area": 64},
                   3: {"name": "red star", "area": 64}, 4: {"name": "red star", "area": 64},
                   5: {"name": "red star", "area": 64}, 6: {"name": "red star", "area": 64}}
    pred[_box(shape, 0, 8, 0, 8)] = 11                     # exact, right name
    pred[_box(shape, 0, 8, 10, 18)] = 12                   # exact, wrong shape
    pred[_box(shape, 0, 8, 20, 28)] = 13                   # exact, wrong colour
    pred[_box(shape, 10, 18, 0, 8)] = 14                   # exact, stuff
    pred[_box(shape, 10, 12, 10, 18)] = 15                 # IoU 0.25 only
    names = {11: ("red star", True), 12: ("red cross", True), 13: ("blue star", True),
             14: ("grass", False), 15: ("red star", True)}
    raw = np.stack([_box(shape, 10, 17, 10, 18), _box(shape, 0, 1, 0, 1)])   # finds gt 5 (IoU 7/8), not 6
    raw_iou = raw_mask_iou(gt, list(gt_segments), raw)
    assert raw_iou[5] == 7 / 8 and raw_iou[6] == 0.0
    records = {r["outcome"]: r for r in classify(gt, gt_segments, pred, names, raw_iou)}
    assert set(records) == {"tp", "wrong_shape", "wrong_colour", "stuff_label", "dropped", "no_mask"}
    assert records["wrong_shape"]["predicted"] == "red cross"
    assert records["dropped"]["best_iou"] == 0.25 and records["no_mask"]["predicted"] is None
