"""Seen-class PQ of a segmenter's checkpoints on the validation split and on training images.

    python -m experiments.learning_curve --run RUN_DIR --checkpoints DIR [DIR ...] --data WORLD \
        --out results/segmenter_learning_curve.json [--train-images 300] [--thresholds 0.8 0.3]

Answers "why is seen PQ low?" with measurements: if PQ on training images is as low as on
validation images and still rising from checkpoint to checkpoint, the network is under-trained
(more iterations help); if training PQ is high and validation PQ low, it over-fits. Every
``model_NNNNNNN.safetensors`` found in the given folders is scored with the run's config and
categories, Mask2Former panoptic inference at each threshold (overlap 0.8), the COCO-exact PQ.
Training images are the first N of ``panoptic_train.json`` (seen categories are scored; images
with unseen segments count only through their seen segments).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from zsp_ros.inference.postprocess import DEFAULT_OBJECT_MASK_THRESHOLD
from zsp_ros.model.build import build_mask2former, load_config
from zsp_ros.training import checkpoint
from zsp_ros.training.panoptic_predict import predict_panoptic
from zsp_ros.training.segmenter_eval import score_panoptic
from zsp_ros.utils.provenance import provenance, write_json


def _checkpoints(folders: list[Path]) -> list[tuple[int, Path]]:
    found = {}
    for folder in folders:
        for path in folder.glob("model_*.safetensors"):
            match = re.fullmatch(r"model_(\d+)\.safetensors", path.name)
            if match:
                found[int(match.group(1))] = path
    return sorted(found.items())


def score(model: torch.nn.Module, categories: list[dict], *, data: Path, split: str, limit: int | None,
          threshold: float, work: Path) -> dict[str, Any]:
    """Predict ``split`` (first ``limit`` images) and return PQ/SQ/RQ (percent) of all/things/stuff/seen."""

    pred_json = predict_panoptic(model, data_dir=data, categories=categories, out_dir=work, split=split,
                                 object_mask_threshold=threshold, limit=limit)
    metrics = score_panoptic(pred_json, data_dir=data, split=split, subset_dir=work)
    keep = json.loads(pred_json.read_text())["annotations"]
    return {m: {g: metrics[m][g] for g in ("all", "things", "stuff", "seen")} for m in ("PQ", "SQ", "RQ")} | {
        "images": len(keep)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run directory (config.yaml, categories.json)")
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="folders of model_*.safetensors")
    parser.add_argument("--data", type=Path, required=True, help="world directory")
    parser.add_argument("--train-images", type=int, default=300)
    parser.add_argument("--val-images", type=int, default=None, help="default: all")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[DEFAULT_OBJECT_MASK_THRESHOLD])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)


    cfg = load_config(args.run / "config.yaml")
    categories = json.loads((args.run / "categories.json").read_text())
    found = _checkpoints(args.checkpoints)
    if not found:
        raise SystemExit(f"learning_curve: no model_NNNNNNN.safetensors in {', '.join(map(str, args.checkpoints))}")
    rows = []
    t0 = time.perf_counter()
    for iteration, path in found:
        model = build_mask2former(cfg["model"], num_classes=len(categories))
        checkpoint.load_weights(path, model)
        model.eval()
        row: dict[str, Any] = {"iteration": iteration, "weights": str(path)}
        for threshold in args.thresholds:
            for split, limit in (("val", args.val_images), ("train", args.train_images)):
                with tempfile.TemporaryDirectory() as work:
                    row[f"{split}@{threshold}"] = score(model, categories, data=args.data, split=split, limit=limit,
                                                        threshold=threshold, work=Path(work))
        rows.append(row)
        summary = "  ".join(f"{k} PQs {v['PQ']['seen']:.1f}" for k, v in row.items() if "@" in k)
        print(f"iteration {iteration}: {summary}", flush=True)
    write_json(args.out, {"run": str(args.run), "data": str(args.data), "curve": rows,
                          "seconds": round(time.perf_counter() - t0, 1),
                          "provenance": provenance(sys.argv)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
