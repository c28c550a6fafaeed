"""Panoptic quality (PQ, SQ, RQ) exactly as the COCO panoptic API (panopticapi ``pq_compute``).

Definition, per image (ids from the PNGs, categories from the JSONs):
- Predicted segment areas are counted from the prediction PNG; ground-truth areas are taken
  from the ground-truth JSON (as panopticapi does). Id 0 is void.
- A (ground truth, prediction) pair of the same category, ground truth not crowd, matches
  when IoU > 0.5 with ``union = area_pred + area_gt - intersection - (pred ∩ void)``.
- An unmatched non-crowd ground-truth segment is a false negative; crowd ground truth is
  never matched and never a false negative.
- An unmatched prediction is a false positive unless more than half of it lies on void plus
  the crowd region of its own category.
Per category ``PQ = Σ IoU / (TP + FP/2 + FN/2)``, ``SQ = Σ IoU / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``;
an average runs over the categories with TP + FP + FN > 0, so a category that appears only in
predictions counts with PQ 0. Averages over no category are ``None`` (panopticapi would
divide by zero). Results are fractions here; the CLI reports percent.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from zsp_ros.data.coco_format import load_json, panoptic_folder, rgb2id
from zsp_ros.evaluation.errors import EvaluationInputError
from zsp_ros.evaluation.pairing import category_map, pair_annotations

VOID = 0
OFFSET = 256 * 256 * 256


@dataclass
class CategoryStat:
    """Accumulated matches of one category: summed IoU of true positives and the counts."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __iadd__(self, other: CategoryStat) -> CategoryStat:
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


class PQStat:
    """category id -> CategoryStat, with the panopticapi averaging rule."""

    def __init__(self) -> None:
        self.per_category: dict[int, CategoryStat] = {}

    def __getitem__(self, category_id: int) -> CategoryStat:
        return self.per_category.setdefault(int(category_id), CategoryStat())

    def __iadd__(self, other: PQStat) -> PQStat:
        for cid, stat in other.per_category.items():
            target = self[cid]
            target += stat
        return self

    def category_result(self, category_id: int) -> dict[str, Any]:
        """{"pq", "sq", "rq", "tp", "fp", "fn"} of one category; pq/sq/rq None if TP+FP+FN = 0."""
        s = self.per_category.get(category_id, CategoryStat())
        out: dict[str, Any] = {"tp": s.tp, "fp": s.fp, "fn": s.fn}
        denom = s.tp + 0.5 * s.fp + 0.5 * s.fn
        if denom == 0:
            return {**out, "pq": None, "sq": None, "rq": None}
        return {**out, "pq": s.iou / denom, "sq": s.iou / s.tp if s.tp else 0.0, "rq": s.tp / denom}

    def average(self, category_ids: Iterable[int]) -> dict[str, Any]:
        """Mean pq/sq/rq over those of ``category_ids`` with TP+FP+FN > 0; ``n`` counts them."""
        results = [self.category_result(c) for c in category_ids]
        counted = [r for r in results if r["pq"] is not None]
        if not counted:
            return {"pq": None, "sq": None, "rq": None, "n": 0}
        n = len(counted)
        return {"pq": sum(r["pq"] for r in counted) / n, "sq": sum(r["sq"] for r in counted) / n,
                "rq": sum(r["rq"] for r in counted) / n, "n": n}


def pq_single_image(pan_gt: np.ndarray, pan_pred: np.ndarray, gt_segments: Sequence[dict],
                    pred_segments: Sequence[dict], categories: dict[int, Any], *,
                    image_id: Any = None, gt_file: str | os.PathLike | None = None,
                    pred_file: str | os.PathLike | None = None) -> PQStat:
    """Match one image. ``pan_gt``/``pan_pred``: int [H, W] segment ids (0 void).

    gt_segments: COCO segments_info ({"id", "category_id", "iscrowd", "area"}), areas trusted.
    pred_segments: {"id", "category_id"}; their areas are counted from ``pan_pred``.
    categories: the known category ids (a dict or set). Raises EvaluationInputError naming
    the file and image for a size mismatch, a PNG id missing from the JSON or the reverse,
    or an unknown category.
    """
    if pan_gt.shape != pan_pred.shape:
        raise EvaluationInputError(
            f"prediction PNG is {pan_pred.shape[1]}x{pan_pred.shape[0]} (WxH), ground truth "
            f"{pan_gt.shape[1]}x{pan_gt.shape[0]}", file=pred_file, image=image_id)
    gt_segms = {int(s["id"]): dict(s) for s in gt_segments}
    pred_segms = {int(s["id"]): dict(s) for s in pred_segments}
    if len(pred_segms) != len(pred_segments):
        raise EvaluationInputError("segments_info lists a segment id twice", file=pred_file, image=image_id)
    for seg_id, seg in gt_segms.items():
        if seg["category_id"] not in categories:
            raise EvaluationInputError(f"ground-truth segment {seg_id} has unknown category id "
                                       f"{seg['category_id']}", file=gt_file, image=image_id)

    # Predicted areas from the PNG; every PNG id must be in the JSON and the reverse.
    labels, counts = np.unique(pan_pred, return_counts=True)
    unlisted = set(pred_segms)
    for label, count in zip(labels.tolist(), counts.tolist()):
        if label == VOID:
            continue
        if label not in pred_segms:
            raise EvaluationInputError(f"segment id {label} is in the PNG but not in segments_info",
                                       file=pred_file, image=image_id)
        pred_segms[label]["area"] = count
        unlisted.discard(label)
        if pred_segms[label]["category_id"] not in categories:
            raise EvaluationInputError(f"segment {label} has unknown category id "
                                       f"{pred_segms[label]['category_id']}", file=pred_file, image=image_id)
    if unlisted:
        raise EvaluationInputError(f"segment ids {sorted(unlisted)} are in segments_info but not in the PNG",
                                   file=pred_file, image=image_id)
    gt_labels = set(np.unique(pan_gt).tolist()) - {VOID}
    if gt_labels - set(gt_segms):
        raise EvaluationInputError(f"segment ids {sorted(gt_labels - set(gt_segms))} are in the PNG but "
                                   "not in segments_info", file=gt_file, image=image_id)

    # Intersections of every (gt id, pred id) pair present.
    joint = pan_gt.astype(np.uint64) * np.uint64(OFFSET) + pan_pred.astype(np.uint64)
    pairs, inter = np.unique(joint, return_counts=True)
    gt_pred_map = {(int(p // OFFSET), int(p % OFFSET)): int(n) for p, n in zip(pairs.tolist(), inter.tolist())}

    stat = PQStat()
    gt_matched, pred_matched = set(), set()
    for (gt_label, pred_label), intersection in gt_pred_map.items():
        if gt_label not in gt_segms or pred_label not in pred_segms:
            continue
        gt_seg, pred_seg = gt_segms[gt_label], pred_segms[pred_label]
        if gt_seg.get("iscrowd", 0) == 1 or gt_seg["category_id"] != pred_seg["category_id"]:
            continue
        union = pred_seg["area"] + gt_seg["area"] - intersection - gt_pred_map.get((VOID, pred_label), 0)
        iou = intersection / union
        if iou > 0.5:
            stat[gt_seg["category_id"]].tp += 1
            stat[gt_seg["category_id"]].iou += iou
            gt_matched.add(gt_label)
            pred_matched.add(pred_label)

    crowd_by_category: dict[int, int] = {}
    for gt_label, gt_seg in gt_segms.items():
        if gt_label in gt_matched:
            continue
        if gt_seg.get("iscrowd", 0) == 1:
            crowd_by_category[gt_seg["category_id"]] = gt_label
            continue
        stat[gt_seg["category_id"]].fn += 1

    for pred_label, pred_seg in pred_segms.items():
        if pred_label in pred_matched:
            continue
        ignored = gt_pred_map.get((VOID, pred_label), 0)
        if pred_seg["category_id"] in crowd_by_category:
            ignored += gt_pred_map.get((crowd_by_category[pred_seg["category_id"]], pred_label), 0)
        if ignored / pred_seg["area"] > 0.5:
            continue
        stat[pred_seg["category_id"]].fp += 1
    return stat


def _read_ids(path: Path, *, image_id: Any, what: str, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                raise EvaluationInputError(f"{what} PNG has mode {im.mode}; want RGB", file=path, image=image_id)
            rgb = np.asarray(im)
    except FileNotFoundError:
        raise EvaluationInputError(f"{what} PNG does not exist", file=path, image=image_id) from None
    except OSError as exc:
        raise EvaluationInputError(f"{what} PNG cannot be read: {exc}", file=path, image=image_id) from None
    if size is not None and rgb.shape[:2] != size:
        raise EvaluationInputError(f"{what} PNG is {rgb.shape[1]}x{rgb.shape[0]} (WxH), but the ground "
                                   f"truth image is {size[1]}x{size[0]}", file=path, image=image_id)
    return rgb2id(rgb)


def _load_panoptic(path: str | os.PathLike, what: str) -> dict:
    try:
        data = load_json(path, what=f"{what} panoptic JSON")
    except (FileNotFoundError, ValueError) as exc:
        raise EvaluationInputError(str(exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise EvaluationInputError("not a COCO panoptic JSON (no 'annotations' list)", file=path)
    for ann in data["annotations"]:
        if "image_id" not in ann or "file_name" not in ann or "segments_info" not in ann:
            raise EvaluationInputError("an annotation lacks image_id, file_name or segments_info",
                                       file=path, image=ann.get("image_id"))
    return data


def _renamed(pan_pred: np.ndarray, segments: Sequence[dict], mapping: dict[int, int | None], *,
             image_id: Any, pred_file: Path) -> tuple[np.ndarray, list[dict], int]:
    """Segments with ground-truth category ids (``mapping``); those mapped to None become void. Returns
    (id map, segments, segments dropped)."""
    kept, dropped = [], []
    for seg in segments:
        cid = int(seg["category_id"])
        if cid not in mapping:
            raise EvaluationInputError(f"segment {seg['id']} has category id {cid}, which the prediction JSON's "
                                       "categories do not list", file=pred_file, image=image_id)
        if mapping[cid] is None:
            dropped.append(int(seg["id"]))
        else:
            kept.append({**seg, "category_id": mapping[cid]})
    if dropped:
        pan_pred = np.where(np.isin(pan_pred, dropped), VOID, pan_pred)
    return pan_pred, kept, len(dropped)


def pq_compute(gt_json: str | os.PathLike, pred_json: str | os.PathLike, *,
               gt_folder: str | os.PathLike | None = None,
               pred_folder: str | os.PathLike | None = None,
               match_names: bool = False) -> tuple[PQStat, dict[int, dict], dict[str, Any]]:
    """Accumulate PQ statistics over every ground-truth image; return (stats, gt categories by id, matching).

    Folders default to the COCO convention (see ``zsp_ros.data.coco_format.panoptic_folder``).
    Every ground-truth image needs a prediction, paired by file name, else by image_id
    (zsp_ros.evaluation.pairing); extra predictions are ignored, as in panopticapi. With
    ``match_names``, predicted categories count as the ground-truth category of the same name
    (`pairing.category_map`); segments of names the ground truth lacks are left out.
    ``matching``: {"images": {"by", "pairs"}, "categories": category_map's report plus
    "dropped_segments"} (categories only with ``match_names``).
    """
    gt = _load_panoptic(gt_json, "ground-truth")
    pred = _load_panoptic(pred_json, "prediction")
    if not isinstance(gt.get("categories"), list):
        raise EvaluationInputError("ground-truth panoptic JSON has no 'categories'", file=gt_json)
    categories = {int(c["id"]): c for c in gt["categories"]}
    gt_dir = panoptic_folder(gt_json, gt, gt_folder)
    pred_dir = panoptic_folder(pred_json, pred, pred_folder)
    sizes = {im["id"]: (int(im["height"]), int(im["width"])) for im in gt.get("images", [])}
    pairs, paired_by = pair_annotations(gt, pred, pred_file=pred_json)
    matching: dict[str, Any] = {"images": {"by": paired_by, "pairs": len(pairs)}}
    mapping: dict[int, int | None] | None = None
    if match_names:
        mapping, report = category_map(gt["categories"], pred.get("categories") or [], pred_file=pred_json)
        matching["categories"] = {**report, "dropped_segments": 0}
    stat = PQStat()
    for gt_ann, pred_ann in pairs:
        image_id = gt_ann["image_id"]
        gt_file, pred_file = gt_dir / gt_ann["file_name"], pred_dir / pred_ann["file_name"]
        pan_gt = _read_ids(gt_file, image_id=image_id, what="ground-truth", size=sizes.get(image_id))
        pan_pred = _read_ids(pred_file, image_id=image_id, what="prediction", size=pan_gt.shape[:2])
        pred_segments = pred_ann["segments_info"]
        if mapping is not None:
            pan_pred, pred_segments, dropped = _renamed(pan_pred, pred_segments, mapping, image_id=image_id,
                                                        pred_file=pred_file)
            matching["categories"]["dropped_segments"] += dropped
        stat += pq_single_image(pan_gt, pan_pred, gt_ann["segments_info"], pred_segments,
                                categories, image_id=image_id, gt_file=gt_file, pred_file=pred_file)
    return stat, categories, matching


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """2ab / (a + b); 0 when both are 0; None when either is None."""
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def summarize_panoptic(stat: PQStat, categories: dict[int, dict], split: dict) -> dict[str, Any]:
    """The metrics JSON: PQ/SQ/RQ (percent) for all, things, stuff, seen, unseen, hm; per category.

    ``split`` is a split.json dict; every ground-truth category must be listed in it.
    """
    in_split = {c["id"]: c for c in split["categories"]}
    missing = sorted(set(categories) - set(in_split))
    if missing:
        raise EvaluationInputError(f"ground-truth category ids {missing} are not in the split file")
    ids = list(categories)
    groups = {"all": ids,
              "things": [c for c in ids if bool(categories[c].get("isthing", in_split[c]["isthing"]))],
              "stuff": [c for c in ids if not bool(categories[c].get("isthing", in_split[c]["isthing"]))],
              "seen": [c for c in ids if in_split[c]["seen"]],
              "unseen": [c for c in ids if not in_split[c]["seen"]]}
    averages = {name: stat.average(group) for name, group in groups.items()}
    out: dict[str, Any] = {}
    for metric in ("pq", "sq", "rq"):
        row = {name: _pct(avg[metric]) for name, avg in averages.items()}
        row["hm"] = harmonic_mean(row["seen"], row["unseen"])
        out[metric.upper()] = row
    out["n_categories"] = {name: avg["n"] for name, avg in averages.items()}
    out["per_category"] = []
    for cid in ids:
        r = stat.category_result(cid)
        out["per_category"].append({"id": cid, "name": in_split[cid]["name"],
                                    "isthing": bool(in_split[cid]["isthing"]), "seen": in_split[cid]["seen"],
                                    "PQ": _pct(r["pq"]), "SQ": _pct(r["sq"]), "RQ": _pct(r["rq"]),
                                    "TP": r["tp"], "FP": r["fp"], "FN": r["fn"]})
    return out


def evaluate_panoptic(gt_json: str | os.PathLike, pred_json: str | os.PathLike, split: dict, *,
                      gt_folder: str | os.PathLike | None = None,
                      pred_folder: str | os.PathLike | None = None, match_names: bool = False) -> dict[str, Any]:
    """``pq_compute`` + ``summarize_panoptic``: the full metrics dict (percent) plus ``matching`` (how
    images and, with ``match_names``, categories were paired)."""
    stat, categories, matching = pq_compute(gt_json, pred_json, gt_folder=gt_folder, pred_folder=pred_folder,
                                            match_names=match_names)
    return {**summarize_panoptic(stat, categories, split), "matching": matching}
