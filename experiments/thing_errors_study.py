"""Study: why are seen thing objects missed? Sort every ground-truth thing segment of the validation
split by what the kit predicted over it.

    python -m experiments.thing_errors_study --kit KIT --data WORLD --out results/x.json

For each ground-truth segment of a seen thing category, the predicted segment with the highest IoU
(any category) decides: ``tp`` (IoU > 0.5, right category), ``wrong_shape`` / ``wrong_colour`` /
``wrong_both`` (IoU > 0.5, wrong category: which attribute of the name differs), ``stuff_label`` (IoU > 0.5
with a stuff segment), ``dropped`` (no predicted segment overlaps it at IoU > 0.5, but one of the
network's raw query masks does: the query was filtered out by its class score or the overlap rule)
or ``no_mask`` (no raw query mask either: the network did not localise it). Counts are also split
by object area (pixels). Deterministic.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from zsp_ros.data.categories import read_split
from zsp_ros.data.coco_format import load_json, read_panoptic_png, read_png
from zsp_ros.inference.preprocess import preprocess
from zsp_ros.inference.resize import masks_to_resized
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.utils.provenance import provenance

AREA_BINS = (0, 64, 144, 256, 10 ** 9)      # pixels: < 8x8, < 12x12, < 16x16, larger


def _overlaps(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt ids, pred ids, intersection pixels) of every (gt segment, pred segment) pair that touch."""
    base = int(pred.max()) + 1
    pairs, counts = np.unique(gt.astype(np.int64) * base + pred, return_counts=True)
    return pairs // base, pairs % base, counts


def raw_mask_iou(gt: np.ndarray, gt_ids: list[int], raw_masks: np.ndarray) -> dict[int, float]:
    """Best IoU of each ground-truth segment with any raw query mask: raw_masks bool [Q,H,W]."""
    if not gt_ids:
        return {}
    gt_masks = (gt.reshape(1, -1) == np.asarray(gt_ids)[:, None]).astype(np.float32)   # [G, HW]
    raw = raw_masks.reshape(raw_masks.shape[0], -1).astype(np.float32)                # [Q, HW]
    inter = gt_masks @ raw.T                                                          # [G, Q]
    union = gt_masks.sum(1)[:, None] + raw.sum(1)[None, :] - inter
    return dict(zip(gt_ids, (inter / np.maximum(union, 1)).max(1).tolist()))


def classify(gt: np.ndarray, gt_segments: dict[int, dict], pred: np.ndarray,
             pred_names: dict[int, tuple[str, bool]], raw_iou: dict[int, float]) -> list[dict[str, Any]]:
    """One record per ground-truth segment in ``gt_segments`` ({id: {"name", "area"}}): outcome + area.

    gt, pred: int [H,W] panoptic id maps; pred_names: {pred id: (category name, isthing)};
    raw_iou: {gt id: best IoU with any raw query mask} (`raw_mask_iou`).
    """
    gids, pids, inter = _overlaps(gt, pred)
    gt_area = dict(zip(*np.unique(gt, return_counts=True)))
    pred_area = dict(zip(*np.unique(pred, return_counts=True)))
    best: dict[int, tuple[float, int]] = {}
    for g, p, i in zip(gids.tolist(), pids.tolist(), inter.tolist()):
        if p == 0 or g not in gt_segments:
            continue
        iou = i / (gt_area[g] + pred_area[p] - i)
        if iou > best.get(g, (0.0, 0))[0]:
            best[g] = (iou, p)
    records = []
    for g, seg in gt_segments.items():
        iou, p = best.get(g, (0.0, 0))
        predicted = pred_names[p][0] if p else None
        if iou <= 0.5:
            outcome = "dropped" if raw_iou.get(g, 0.0) > 0.5 else "no_mask"
        else:
            name, isthing = pred_names[p]
            if not isthing:
                outcome = "stuff_label"
            elif name == seg["name"]:
                outcome = "tp"
            else:
                colour_ok, shape_ok = (a == b for a, b in zip(name.split(), seg["name"].split()))
                outcome = "wrong_both" if not (colour_ok or shape_ok) else \
                    "wrong_shape" if colour_ok else "wrong_colour"
        records.append({"name": seg["name"], "area": int(seg["area"]), "outcome": outcome,
                        "best_iou": round(float(iou), 3), "predicted": predicted})
    return records


def main(argv: list[str] | None = None) -> int:
    import torch


    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="world directory (zsp synth)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    split = read_split(args.data / "split.json")
    by_id = {c["id"]: c for c in split["categories"]}
    gt_json = load_json(args.data / "annotations" / "panoptic_val.json", what="panoptic annotation file")
    images = {im["id"]: im for im in gt_json["images"]}
    annotations = gt_json["annotations"][:args.limit] if args.limit else gt_json["annotations"]
    records: list[dict[str, Any]] = []
    with Segmenter.from_kit(args.kit) as segmenter:
        for ann in annotations:
            im = images[ann["image_id"]]
            rgb = read_png(args.data / "images" / "val" / im["file_name"], what="image", mode="RGB")
            gt = read_panoptic_png(args.data / "annotations" / "panoptic_val" / ann["file_name"])
            things = {s["id"]: {"name": by_id[s["category_id"]]["name"], "area": s["area"]}
                      for s in ann["segments_info"]
                      if by_id[s["category_id"]]["isthing"] and by_id[s["category_id"]]["seen"]}
            result = segmenter.segment(rgb)
            names = {s.id: (s.name, s.isthing) for s in result.segments}
            x, geometry = preprocess(rgb, short_side=segmenter.short_side, max_long_side=segmenter.max_long_side,
                                     size_divisibility=segmenter.size_divisibility)
            mask_logits, _ = segmenter.backend.infer(x)
            raw = masks_to_resized(torch.as_tensor(mask_logits)[0], geometry)              # [Q, rh, rw]
            if tuple(raw.shape[-2:]) != gt.shape:
                raise ValueError("thing_errors_study expects the network input at the image size (synthetic world)")
            raw_iou = raw_mask_iou(gt, list(things), raw.gt(0).numpy())
            records += classify(gt, things, result.panoptic, names, raw_iou)
    outcomes = ["tp", "wrong_shape", "wrong_colour", "wrong_both", "stuff_label", "dropped", "no_mask"]
    total = Counter(r["outcome"] for r in records)
    by_area = {}
    for lo, hi in zip(AREA_BINS[:-1], AREA_BINS[1:]):
        c = Counter(r["outcome"] for r in records if lo <= r["area"] < hi)
        by_area[f"{lo}-{hi}"] = {"segments": sum(c.values()), **{o: c[o] for o in outcomes}}
    by_shape = {}
    for shape in sorted({r["name"].split()[-1] for r in records}):
        c = Counter(r["outcome"] for r in records if r["name"].split()[-1] == shape)
        by_shape[shape] = {"segments": sum(c.values()), **{o: c[o] for o in outcomes}}
    confusions = Counter(f'{r["name"].split()[-1]} -> {r["predicted"].split()[-1]}'
                         for r in records if r["outcome"] == "wrong_shape")
    summary = {"segments": len(records), **{o: total[o] for o in outcomes},
               "by_area_pixels": by_area, "by_shape": by_shape,
               "wrong_shape_true_to_predicted": dict(confusions.most_common())}
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "kit": str(args.kit), "data": str(args.data),
                                    "images": len(annotations), "provenance": provenance()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
