"""`python -m experiments mask-bound`: the panoptic quality a perfect network would reach at Mask2Former's mask stride.

Mask2Former predicts masks at stride 4 (``mask_features`` are H/4 x W/4) and upsamples them
bilinearly before panoptic inference. On a small-image world (128 x 128: 32 x 32 masks) that
resolution could cap PQ regardless of training. This benchmark measures the cap: every
ground-truth segment's binary mask [H,W] is averaged over stride x stride cells (the best a
stride-s mask can say: the covered fraction), upsampled back exactly as the runtime does
(bilinear, align_corners=False), and the panoptic map is formed as in Mask2Former's panoptic
inference with every score 1 (each pixel goes to the highest upsampled probability, kept where
that probability is >= 0.5). The resulting map is scored against the ground truth with the
project's COCO-exact PQ. Categories are the ground truth's own, so RQ < 100 only when a segment
is lost or split by the resolution.

JSON: ``PQ``/``SQ``/``RQ`` (percent; all, things, stuff, seen, unseen) per stride, with images,
segments and provenance.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from zsp_ros.data.categories import read_split
from zsp_ros.data.coco_format import rgb2id
from zsp_ros.evaluation.panoptic_quality import PQStat, pq_single_image, summarize_panoptic
from zsp_ros.utils.provenance import provenance, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="world directory (zsp synth) or any COCO-panoptic layout "
                                                      "with split.json")
    parser.add_argument("--split", default="val", help="annotations/panoptic_SPLIT.json (default val)")
    parser.add_argument("--strides", type=int, nargs="+", default=[4, 2, 8], help="mask strides to test")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--out", required=True, help="JSON file to write")


def through_stride(ids: np.ndarray, segment_ids: list[int], stride: int) -> np.ndarray:
    """The panoptic map a perfect stride-``stride`` mask predictor gives.

    Args:
        ids: int [H,W] ground-truth segment ids (0 void); H and W need not divide by ``stride``.
        segment_ids: the ids to carry through (their order breaks ties, as query order does).
        stride: mask stride in pixels.

    Returns:
        int64 [H,W] ids from ``segment_ids`` (0 where no mask reaches 0.5).
    """
    import torch
    import torch.nn.functional as F

    h, w = ids.shape
    if not segment_ids:
        return np.zeros((h, w), np.int64)
    ph, pw = -(-h // stride) * stride, -(-w // stride) * stride           # pad as the network input is
    # the padding repeats the border: a network is free to extend a mask into the padding, so the
    # bound must not punish segments that touch the image border
    padded = np.pad(ids, ((0, ph - h), (0, pw - w)), mode="edge")
    masks = torch.from_numpy(padded[None] == np.asarray(segment_ids)[:, None, None]).float()
    low = F.avg_pool2d(masks[None], stride)[0]                             # [n, ph/s, pw/s] covered fraction
    up = F.interpolate(low[None], size=(ph, pw), mode="bilinear", align_corners=False)[0, :, :h, :w]
    best, winner = up.max(0)
    out = torch.as_tensor(segment_ids)[winner]
    return torch.where(best >= 0.5, out, 0).numpy()


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    data = Path(args.data)
    gt_json = data / "annotations" / f"panoptic_{args.split}.json"
    if not gt_json.is_file():
        raise SystemExit(f"python -m experiments mask-bound: {gt_json} not found (make a world with `zsp synth`)")
    gt = json.loads(gt_json.read_text())
    split = read_split(data / "split.json")
    categories = {c["id"]: c for c in gt["categories"]}
    folder = data / "annotations" / f"panoptic_{args.split}"
    annotations = gt["annotations"][: args.limit] if args.limit else gt["annotations"]
    t0 = time.perf_counter()
    results = {}
    for stride in args.strides:
        stat = PQStat()
        for ann in annotations:
            ids = rgb2id(np.asarray(Image.open(folder / ann["file_name"]).convert("RGB")))
            segs = ann["segments_info"]
            pred = through_stride(ids, [s["id"] for s in segs], stride)
            present = set(np.unique(pred).tolist()) - {0}
            pred_segments = [{"id": s["id"], "category_id": s["category_id"]} for s in segs if s["id"] in present]
            stat += pq_single_image(ids, pred, segs, pred_segments, categories, image_id=ann["image_id"])
        summary = summarize_panoptic(stat, categories, split)
        results[f"stride_{stride}"] = {k: summary[k] for k in ("PQ", "SQ", "RQ")}
        pq = summary["PQ"]
        print(f"stride {stride}: PQ all {pq['all']:.1f}  things {pq['things']:.1f}  stuff {pq['stuff']:.1f}  "
              f"seen {pq['seen']:.1f}")
    report = {"benchmark": "mask-bound", "data": str(data), "split": args.split, "images": len(annotations),
              "segments": sum(len(a["segments_info"]) for a in annotations), "results": results,
              "seconds": round(time.perf_counter() - t0, 1), "provenance": provenance()}
    write_json(Path(args.out), report)
    print(f"-> {args.out}")
    return 0
