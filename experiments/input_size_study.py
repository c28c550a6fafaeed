"""Study: does the segmenter miss small things for lack of resolution? Evaluate a kit at several
test-time input sizes (the image is upsampled before the network, as a larger camera frame would be).

    python -m experiments.input_size_study --kit KIT --data WORLD --short-sides 128 160 192 --out results/x.json

If seen-thing PQ rises with the input size while stuff stays put, the objects are too small for the
network at its training resolution (results/segmenter_investigation.md). Deterministic (no sampling).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from zsp_ros.data.categories import read_split
from zsp_ros.data.coco_format import load_json
from zsp_ros.evaluation.panoptic_quality import evaluate_panoptic
from zsp_ros.evaluation.predict import predict_world_images
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.utils.provenance import provenance


def evaluate_at(kit: Path, data: Path, short_side: int, limit: int | None, threads: int) -> dict[str, Any]:
    """Seen-category panoptic metrics of ``kit`` on the world's validation split at one input size."""
    import torch


    torch.set_num_threads(threads)
    split = read_split(data / "split.json")
    gt = load_json(data / "annotations" / "panoptic_val.json", what="panoptic annotation file")
    images = gt["images"][:limit] if limit else gt["images"]
    keep = {im["id"] for im in images}
    png_name = {a["image_id"]: a["file_name"] for a in gt["annotations"]}
    world = {c["name"].casefold(): c["id"] for c in split["categories"]}
    with Segmenter.from_kit(kit, short_side=short_side, max_long_side=short_side * 4) as segmenter, \
            tempfile.TemporaryDirectory(prefix="zsp_test_scale_") as tmp:
        sub_gt = Path(tmp) / "gt.json"
        sub_gt.write_text(json.dumps({**gt, "images": images,
                                      "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}))
        world_id_of = {c.id: world[c.name.casefold()] for c in segmenter.registry.list()}
        t0 = time.perf_counter()
        pred = predict_world_images(segmenter, data, images, png_name, Path(tmp) / "pred", world_id_of)
        seconds = time.perf_counter() - t0
        metrics = evaluate_panoptic(sub_gt, pred, split, gt_folder=data / "annotations" / "panoptic_val")
    seen = [c for c in metrics["per_category"] if c["seen"]]
    by_shape: dict[str, list[float]] = {}
    for c in seen:
        if c["isthing"]:
            by_shape.setdefault(c["name"].split()[-1], []).append(c["PQ"])
    groups = {"things": [c for c in seen if c["isthing"]], "stuff": [c for c in seen if not c["isthing"]]}
    return {"short_side": short_side, "images": len(images), "seconds": round(seconds, 1),
            "PQ_seen": metrics["PQ"]["seen"], "SQ_seen": metrics["SQ"]["seen"], "RQ_seen": metrics["RQ"]["seen"],
            **{f"PQ_seen_{g}": round(float(np.mean([c["PQ"] for c in cs])), 2) for g, cs in groups.items()},
            "things_TP_FP_FN": [int(sum(c[k] for c in groups["things"])) for k in ("TP", "FP", "FN")],
            "PQ_seen_things_by_shape": {s: round(float(np.mean(v)), 1) for s, v in sorted(by_shape.items())}}


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="world directory (zsp synth)")
    parser.add_argument("--short-sides", type=int, nargs="+", default=[128, 160, 192])
    parser.add_argument("--limit", type=int, default=None, help="first N validation images only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    rows = []
    for side in args.short_sides:
        rows.append(evaluate_at(args.kit, args.data, side, args.limit, args.threads))
        print(json.dumps(rows[-1]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "kit": str(args.kit), "data": str(args.data),
                                    "provenance": provenance()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
