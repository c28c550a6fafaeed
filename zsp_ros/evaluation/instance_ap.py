"""Instance segmentation: mask AP and recall at IoU 0.5 for seen / unseen / HM, by pycocotools.

pycocotools' ``COCOeval`` (iouType "segm", default parameters, maxDets [1, 10, 100]) does
all matching and accumulation. From its accumulated tables, per category:
``AP50 = mean(precision[IoU=0.5, :, k, area=all, maxDets=100])`` over valid recall points and
``Recall@100 = recall[IoU=0.5, k, all, 100]``; categories without ground truth (-1 in the
tables) are left out of means, as COCOeval's own summary does. Results are a standard COCO
results JSON (list of ``{"image_id", "category_id", "segmentation": RLE, "score"}``); as in
detectron2, any "bbox" field is dropped so areas come from the masks.
Results are fractions here; the CLI reports percent.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any

import numpy as np

from zsp_ros.evaluation.errors import EvaluationInputError
from zsp_ros.evaluation.panoptic_quality import harmonic_mean


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def _read_json(path: str | os.PathLike, *, what: str) -> Any:
    """The parsed JSON of ``path``; EvaluationInputError naming the file when missing or invalid."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EvaluationInputError(f"{what} does not exist", file=path) from None
    except json.JSONDecodeError as exc:
        raise EvaluationInputError(f"not valid JSON: {exc}", file=path) from None


def load_gt(gt_json: str | os.PathLike):
    """pycocotools COCO object of an instances JSON; errors name the file."""
    from pycocotools.coco import COCO

    data = _read_json(gt_json, what="ground-truth instances JSON")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key) if isinstance(data, dict) else None, list):
            raise EvaluationInputError(f"not a COCO instances JSON (no '{key}' list)", file=gt_json)
    coco = COCO()
    coco.dataset = data
    with _quiet():
        coco.createIndex()
    return coco


def check_results(results: Any, coco_gt, *, file: str | os.PathLike | None = None) -> list[dict]:
    """Validate a results list against the ground truth; return copies without "bbox"."""
    if not isinstance(results, list):
        raise EvaluationInputError("results must be a JSON list of detections", file=file)
    out = []
    for i, det in enumerate(results):
        image = det.get("image_id") if isinstance(det, dict) else None
        if not isinstance(det, dict) or not {"image_id", "category_id", "segmentation", "score"} <= set(det):
            raise EvaluationInputError(f"detection #{i} lacks image_id, category_id, segmentation or score",
                                       file=file, image=image)
        if image not in coco_gt.imgs:
            raise EvaluationInputError(f"detection #{i} names an image id not in the ground truth",
                                       file=file, image=image)
        if det["category_id"] not in coco_gt.cats:
            raise EvaluationInputError(f"detection #{i} has unknown category id {det['category_id']}",
                                       file=file, image=image)
        seg = det["segmentation"]
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            raise EvaluationInputError(f"detection #{i}: segmentation must be RLE {{size, counts}}",
                                       file=file, image=image)
        im = coco_gt.imgs[image]
        if list(seg["size"]) != [im["height"], im["width"]]:
            raise EvaluationInputError(f"detection #{i}: mask size {list(seg['size'])} (HxW) differs from the "
                                       f"image's {im['height']}x{im['width']}", file=file, image=image)
        out.append({k: v for k, v in det.items() if k != "bbox"})
    return out


def evaluate_instances(gt_json: str | os.PathLike, results: str | os.PathLike | list,
                       split: dict) -> dict[str, Any]:
    """mAP50 and recall100 (percent) for seen / unseen / hm, plus per category.

    ``results``: a results JSON path or the list itself. Only ground-truth categories are
    evaluated; each must be in ``split``.
    """
    from pycocotools.cocoeval import COCOeval

    coco_gt = load_gt(gt_json)
    file = None
    if not isinstance(results, list):
        file = results
        results = _read_json(results, what="results JSON")
    dets = check_results(results, coco_gt, file=file)
    in_split = {c["id"]: c for c in split["categories"]}
    cat_ids = sorted(coco_gt.cats)
    missing = [c for c in cat_ids if c not in in_split]
    if missing:
        raise EvaluationInputError(f"ground-truth category ids {missing} are not in the split file", file=gt_json)

    has_gt = np.array([len(coco_gt.getAnnIds(catIds=[c], iscrowd=False)) > 0 for c in cat_ids])
    if dets:
        with _quiet():
            coco_dt = coco_gt.loadRes(dets)
            ev = COCOeval(coco_gt, coco_dt, "segm")
            ev.params.catIds = cat_ids
            ev.evaluate()
            ev.accumulate()
        t = int(np.flatnonzero(np.isclose(ev.params.iouThrs, 0.5))[0])
        m = ev.params.maxDets.index(100)
        a = ev.params.areaRngLbl.index("all")
        precision = ev.eval["precision"][t, :, :, a, m]          # [R, K]
        recall = ev.eval["recall"][t, :, a, m]                   # [K]
        ap = np.array([p[p > -1].mean() if (p > -1).any() else np.nan for p in precision.T])
        rec = np.where(recall > -1, recall, np.nan)
    else:   # no detection at all: zero wherever there is ground truth
        ap = np.where(has_gt, 0.0, np.nan)
        rec = ap.copy()

    def mean(values: np.ndarray, mask: np.ndarray) -> float | None:
        v = values[mask & ~np.isnan(values)]
        return None if v.size == 0 else 100.0 * float(v.mean())

    seen = np.array([in_split[c]["seen"] for c in cat_ids])
    out: dict[str, Any] = {}
    for key, values in (("mAP50", ap), ("recall100", rec)):
        row = {"all": mean(values, np.ones_like(seen)), "seen": mean(values, seen),
               "unseen": mean(values, ~seen)}
        row["hm"] = harmonic_mean(row["seen"], row["unseen"])
        out[key] = row
    out["per_category"] = [{"id": c, "name": in_split[c]["name"], "seen": bool(in_split[c]["seen"]),
                            "AP50": None if np.isnan(a_) else 100.0 * float(a_),
                            "recall100": None if np.isnan(r_) else 100.0 * float(r_)}
                           for c, a_, r_ in zip(cat_ids, ap, rec)]
    out["detections"] = len(dets)
    return out
