"""A segmenter run's evaluation: its model from RUN_DIR, COCO panoptic predictions, PQ against the world.

    RUN_DIR/eval/panoptic_val.json + panoptic_val/   predictions (COCO panoptic)
    RUN_DIR/eval/metrics_panoptic.json               `zsp eval panoptic` numbers (percent)
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from zsp_ros.data.categories import read_split
from zsp_ros.evaluation.panoptic_quality import evaluate_panoptic
from zsp_ros.model.build import build_mask2former, load_config
from zsp_ros.training import checkpoint, distributed
from zsp_ros.training.panoptic_predict import predict_panoptic
from zsp_ros.utils.provenance import write_json


def load_run_model(run_dir: Path, *, device: str | torch.device = "cpu"
                   ) -> tuple[torch.nn.Module, list[dict]]:
    """The trained model of a run directory (config.yaml + categories.json + weights)."""

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    categories = json.loads((run_dir / "categories.json").read_text())
    model = build_mask2former(cfg["model"], num_classes=len(categories))
    checkpoint.load_weights(run_dir / "segmenter.safetensors", model)
    return model.to(device).eval(), categories


def score_panoptic(pred_json: Path, *, data_dir: Path, split: str, subset_dir: Path | None = None
                   ) -> dict[str, Any]:
    """PQ metrics (percent) of COCO panoptic predictions against ``DATA/annotations/panoptic_<split>``.

    With ``subset_dir``, only the predicted images are scored (a ground-truth JSON restricted to
    them is written there), for runs that predicted the first N images."""

    gt_json = Path(data_dir) / "annotations" / f"panoptic_{split}.json"
    if subset_dir is not None:
        gt = json.loads(gt_json.read_text())
        keep = {a["image_id"] for a in json.loads(Path(pred_json).read_text())["annotations"]}
        gt["images"] = [im for im in gt["images"] if im["id"] in keep]
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
        gt.setdefault("info", {})["segmentations_folder"] = str(
            (gt_json.parent / f"panoptic_{split}").resolve())
        gt_json = Path(subset_dir) / f"gt_panoptic_{split}_first{len(keep)}.json"
        gt_json.write_text(json.dumps(gt))
    return evaluate_panoptic(gt_json, pred_json, read_split(Path(data_dir) / "split.json"))


def evaluate_run(run_dir: Path, *, data_dir: Path, device: str = "auto", split: str = "val",
                 limit: int | None = None) -> dict[str, Any]:
    """Predict ``split`` with the run's final weights, write COCO panoptic predictions and
    ``metrics_panoptic.json`` under RUN_DIR/eval/; return the metrics (percent)."""

    dev = distributed.pick_device(device)
    model, categories = load_run_model(run_dir, device=dev)
    out = Path(run_dir) / "eval"
    t0 = time.perf_counter()
    pred_json = predict_panoptic(model, data_dir=data_dir, categories=categories, out_dir=out,
                                 split=split, device=dev, limit=limit)
    seconds = time.perf_counter() - t0
    metrics = score_panoptic(pred_json, data_dir=data_dir, split=split,
                             subset_dir=out if limit is not None else None)
    metrics["prediction_seconds"] = round(seconds, 2)
    metrics["images"] = len(json.loads(pred_json.read_text())["annotations"])
    write_json(out / "metrics_panoptic.json", metrics)
    pq = {k: "n/a" if v is None else f"{v:.1f}" for k, v in metrics["PQ"].items()}
    print(f"panoptic {split}: PQ all {pq['all']}  seen {pq['seen']}  unseen {pq['unseen']}  "
          f"things {pq['things']}  stuff {pq['stuff']}  ({metrics['images']} images, "
          f"{seconds:.1f} s) -> {out / 'metrics_panoptic.json'}")
    return metrics
