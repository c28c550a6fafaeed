"""PQ against hand-computed cases (panopticapi pq_compute definition) and its error messages."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zsp_ros.data.categories import make_split
from zsp_ros.data.coco_format import encode_png, id2rgb
from zsp_ros.evaluation.errors import EvaluationInputError
from zsp_ros.evaluation.panoptic_quality import (
    PQStat,
    evaluate_panoptic,
    harmonic_mean,
    pq_single_image,
    summarize_panoptic,
)

CATS = {1: {"id": 1, "name": "red circle", "isthing": 1}, 2: {"id": 2, "name": "gray bricks", "isthing": 0},
        3: {"id": 3, "name": "blue star", "isthing": 1}, 5: {"id": 5, "name": "green dots", "isthing": 0}}


def gt_segs(*specs):
    """(id, category, iscrowd) -> segments with areas filled in by `pq` from the map."""
    return [{"id": i, "category_id": c, "iscrowd": crowd} for i, c, crowd in specs]


def pq(gt_map, gt_specs, pred_map, pred_specs) -> PQStat:
    gt_map, pred_map = np.array(gt_map), np.array(pred_map)
    segs = gt_segs(*gt_specs)
    for s in segs:
        s["area"] = int((gt_map == s["id"]).sum())
    preds = [{"id": i, "category_id": c} for i, c in pred_specs]
    return pq_single_image(gt_map, pred_map, segs, preds, CATS, image_id=7)


def test_perfect_prediction():
    stat = pq([[1, 1, 2, 2]], [(1, 1, 0), (2, 2, 0)], [[4, 4, 9, 9]], [(4, 1), (9, 2)])
    assert stat.average(CATS) == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2}


def test_empty_prediction_is_all_false_negatives():
    stat = pq([[1, 1, 2, 2]], [(1, 1, 0), (2, 2, 0)], [[0, 0, 0, 0]], [])
    assert (stat[1].fn, stat[2].fn, stat[1].tp, stat[1].fp) == (1, 1, 0, 0)
    assert stat.average(CATS) == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 2}


def test_all_false_positives_and_category_only_in_predictions():
    stat = pq([[1, 1, 2, 2]], [(1, 1, 0), (2, 2, 0)], [[5, 5, 5, 5]], [(5, 3)])
    assert (stat[1].fn, stat[2].fn, stat[3].fp) == (1, 1, 1)
    assert stat.average(CATS) == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 3}
    # Category 1 right, category 2 predicted as 5: PQ = (1 + 0 + 0) / 3 over categories 1, 2, 5.
    stat = pq([[1, 1, 2, 2]], [(1, 1, 0), (2, 2, 0)], [[3, 3, 4, 4]], [(3, 1), (4, 5)])
    avg = stat.average(CATS)
    assert avg["n"] == 3 and avg["pq"] == pytest.approx(1 / 3) and avg["rq"] == pytest.approx(1 / 3)
    assert stat.category_result(5) == {"tp": 0, "fp": 1, "fn": 0, "pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert stat.category_result(3)["pq"] is None                       # absent: not averaged
    assert stat.average([2, 5]) == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 2}


def test_partial_overlap_iou_and_the_strict_half():
    # 10 + 10 pixels; each prediction takes 8 of its segment and 2 of the other: IoU 8/12.
    gt = [[1] * 10 + [2] * 10]
    pred = [[3] * 8 + [4] * 2 + [3] * 2 + [4] * 8]
    stat = pq(gt, [(1, 1, 0), (2, 2, 0)], pred, [(3, 1), (4, 2)])
    avg = stat.average(CATS)
    assert avg["n"] == 2 and avg["pq"] == pytest.approx(2 / 3) and avg["sq"] == pytest.approx(2 / 3)
    assert avg["rq"] == 1.0
    # IoU exactly 0.5 is no match: one FN and one FP -> PQ 0, RQ 0.
    stat = pq([[1, 1, 2]], [(1, 1, 0), (2, 2, 0)], [[3, 0, 4]], [(3, 1), (4, 2)])
    assert (stat[1].tp, stat[1].fn, stat[1].fp) == (0, 1, 1)
    assert stat.category_result(1)["pq"] == 0.0 and stat.category_result(2)["pq"] == 1.0
    # PQ = SQ * RQ on a mixed case: 1 TP (IoU 2/3) + 1 FP in category 1.
    stat = pq([[1, 1, 1, 2, 2, 2]], [(1, 1, 0), (2, 2, 0)], [[3, 3, 7, 7, 4, 4]], [(3, 1), (7, 1), (4, 2)])
    r = stat.category_result(1)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 0)
    assert r["sq"] == pytest.approx(2 / 3) and r["rq"] == pytest.approx(1 / 1.5)
    assert r["pq"] == pytest.approx(r["sq"] * r["rq"])


def test_void_is_left_out_of_the_union_and_mostly_void_predictions_are_not_false_positives():
    # Prediction covers gt segment (2 px) and 2 void px: IoU = 2 / (4 + 2 - 2 - 2) = 1.
    stat = pq([[0, 0, 1, 1]], [(1, 1, 0)], [[7, 7, 7, 7]], [(7, 1)])
    assert stat[1].tp == 1 and stat[1].iou == 1.0
    # A prediction entirely on void is ignored; exactly half on void still counts as FP.
    stat = pq([[0, 0, 0, 1, 1, 1]], [(1, 1, 0)], [[8, 8, 8, 9, 9, 9]], [(8, 3), (9, 1)])
    assert stat.category_result(3)["pq"] is None and stat.average(CATS)["n"] == 1
    stat = pq([[0, 0, 2, 2, 1, 1]], [(1, 1, 0), (2, 2, 0)], [[8, 8, 8, 8, 9, 9]], [(8, 3), (9, 1)])
    assert stat[3].fp == 1 and stat[2].fn == 1


def test_crowd_regions():
    # gt 1: crowd of category 1 (4 px); gt 2: category 2 (4 px).
    gt = [[1, 1, 1, 1, 2, 2, 2, 2]]
    specs = [(1, 1, 1), (2, 2, 0)]
    # 5 (cat 1) lies in the crowd of its own category: ignored, never a match.
    # 6 (cat 2) lies in the crowd of category 1: a false positive of category 2.
    stat = pq(gt, specs, [[5, 5, 5, 6, 7, 7, 7, 7]], [(5, 1), (6, 2), (7, 2)])
    assert (stat[1].tp, stat[1].fp, stat[1].fn) == (0, 0, 0)           # crowd: no FN either
    assert (stat[2].tp, stat[2].fp, stat[2].fn) == (1, 1, 0)
    avg = stat.average(CATS)
    assert avg["n"] == 1 and avg["pq"] == pytest.approx(1 / 1.5) and avg["sq"] == 1.0
    # Void (1/4) + own crowd (2/4) together exceed half: ignored; neither alone would.
    stat = pq([[0, 1, 1, 2, 2, 2]], [(1, 1, 1), (2, 2, 0)], [[5, 5, 5, 5, 6, 6]], [(5, 1), (6, 2)])
    assert stat[1].fp == 0 and stat[2].tp == 1 and stat[2].iou == pytest.approx(2 / 3)
    stat = pq([[0, 1, 1, 2, 2, 2]], [(1, 1, 1), (2, 2, 0)], [[5, 5, 5, 5, 6, 6]], [(5, 3), (6, 2)])
    assert stat[3].fp == 1


def test_summary_groups_percent_and_harmonic_mean():
    split = make_split([{"id": c["id"], "name": c["name"], "isthing": bool(c["isthing"])} for c in CATS.values()],
                       [2])
    stat = pq([[1] * 10 + [2] * 10], [(1, 1, 0), (2, 2, 0)],
              [[3] * 8 + [4] * 2 + [3] * 2 + [4] * 8], [(3, 1), (4, 2)])
    stat += pq([[1, 1, 2, 2]], [(1, 1, 0), (2, 2, 0)], [[0, 0, 0, 0]], [])
    out = summarize_panoptic(stat, CATS, split)
    # Category 1: TP 1 (IoU 2/3), FN 1 -> PQ (2/3)/1.5 = 4/9; same for category 2.
    assert out["PQ"]["all"] == pytest.approx(100 * 4 / 9)
    assert out["PQ"]["seen"] == pytest.approx(100 * 4 / 9) and out["PQ"]["unseen"] == pytest.approx(100 * 4 / 9)
    assert out["PQ"]["hm"] == pytest.approx(100 * 4 / 9)
    assert out["SQ"]["things"] == pytest.approx(100 * 2 / 3) and out["RQ"]["stuff"] == pytest.approx(100 / 1.5)
    assert out["n_categories"] == {"all": 2, "things": 1, "stuff": 1, "seen": 1, "unseen": 1}
    row = next(r for r in out["per_category"] if r["id"] == 3)
    assert row["PQ"] is None and row["TP"] == row["FP"] == row["FN"] == 0
    assert harmonic_mean(60.0, 20.0) == pytest.approx(30.0) and harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(None, 5.0) is None


def _write(tmp: Path, name: str, maps: dict[int, np.ndarray], segments: dict[int, list], with_cats=False):
    folder = tmp / name
    folder.mkdir()
    for image_id, m in maps.items():
        (folder / f"{image_id:06d}.png").write_bytes(encode_png(id2rgb(m)))
    data = {"annotations": [{"image_id": i, "file_name": f"{i:06d}.png", "segments_info": segments[i]}
                            for i in maps]}
    if with_cats:
        data["images"] = [{"id": i, "file_name": f"{i:06d}.png", "height": m.shape[0], "width": m.shape[1]}
                          for i, m in maps.items()]
        data["categories"] = list(CATS.values())
    (tmp / f"{name}.json").write_text(json.dumps(data))
    return tmp / f"{name}.json"


@pytest.fixture
def files(tmp_path):
    m = np.array([[1, 1, 2, 2]] * 2)
    segs = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 4}, {"id": 2, "category_id": 2, "iscrowd": 0, "area": 4}]
    gt = _write(tmp_path, "gt", {1: m}, {1: segs}, with_cats=True)
    split = make_split([{"id": c["id"], "name": c["name"], "isthing": bool(c["isthing"])} for c in CATS.values()], [2])
    return tmp_path, gt, m, split


def test_files_perfect_and_extra_prediction_image(files):
    tmp, gt, m, split = files
    pred = _write(tmp, "pred", {1: m + 10, 2: m}, {1: [{"id": 11, "category_id": 1}, {"id": 12, "category_id": 2}],
                                                  2: []})
    out = evaluate_panoptic(gt, pred, split)
    assert out["PQ"]["all"] == 100.0 and out["PQ"]["hm"] == 100.0


@pytest.mark.parametrize("case, message", [
    ("missing_png", "prediction PNG does not exist"),
    ("size", "is 2x2 (WxH), but the ground truth image is 4x2"),
    ("png_not_json", "segment id 12 is in the PNG but not in segments_info"),
    ("json_not_png", "segment ids [13] are in segments_info but not in the PNG"),
    ("unknown_category", "unknown category id 42"),
    ("no_prediction", "none of the 1 predictions matches one of the 1 ground-truth images by file name"),
])
def test_bad_prediction_names_file_and_image(files, case, message):
    tmp, gt, m, split = files
    segs = [{"id": 11, "category_id": 1}, {"id": 12, "category_id": 2}]
    maps, segments = {1: m + 10}, {1: segs}
    if case == "size":
        maps = {1: (m + 10)[:, :2]}
        segments = {1: segs[:1]}
    elif case == "png_not_json":
        segments = {1: segs[:1]}
    elif case == "json_not_png":
        segments = {1: segs + [{"id": 13, "category_id": 1}]}
    elif case == "unknown_category":
        segments = {1: [segs[0], {"id": 12, "category_id": 42}]}
    elif case == "no_prediction":
        maps, segments = {2: m + 10}, {2: segs}
    pred = _write(tmp, "pred", maps, segments)
    if case == "missing_png":
        (tmp / "pred" / "000001.png").unlink()
    with pytest.raises(EvaluationInputError) as info:
        evaluate_panoptic(gt, pred, split)
    text = str(info.value)
    assert message in text and ("(image 1)" in text or case == "no_prediction")
    assert ("pred" in text) and (str(tmp) in text)
