"""`python -m experiments unseen-holes --data WORLD --out results/unseen_holes.json`: why an unseen
category scores (near) 0 after its exact name is added.

For every ground-truth segment of an unseen category of the world's validation split, after adding the
world's unseen names to the kit through the registry (the service's path):

- the segmenter: the best-overlapping query's mask IoU with the segment (does a mask exist at all?);
- the head: that query's predicted class and its probability of the true class;
- the embeddings: the mean of those queries' embeddings (the REAL unseen embedding) against the bank's
  per-seen-category means, and against the generator's mean for the name (what the head was fitted on).

So a hole is attributed to the segmenter (no mask), to the segmenter's embedding (real embeddings sit
with another category), or to the generator (its fakes sit with another category than the real ones).
The network runs once per image (cached like `zsp bench vocabulary`).
"""
from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from zsp_ros.bench.vocabulary import CachedFrame, GroundTruth, forward_world
from zsp_ros.data.categories import read_split
from zsp_ros.data.coco_format import load_json, panoptic_folder, read_panoptic_png
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.pading.runtime_refit import synthesize_for_ids
from zsp_ros.runtime.registry import build_registry
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads
from zsp_ros.utils.provenance import provenance, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="synthetic world (`zsp synth`); its val split is used")
    parser.add_argument("--out", default="results/unseen_holes.json")
    parser.add_argument("--kit", default=None, help="model kit (default: the embedded kit)")
    parser.add_argument("--val-images", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="registry seed")
    add_threads_argument(parser)


def _ground_truth(data: Path, images: list[dict[str, Any]], gt: dict[str, Any]) -> list[GroundTruth]:
    folder = panoptic_folder(data / "annotations" / "panoptic_val.json", gt)
    by_image = {a["image_id"]: a for a in gt["annotations"]}
    return [GroundTruth(image_id=int(im["id"]), segments=by_image[im["id"]]["segments_info"],
                        ids=read_panoptic_png(folder / by_image[im["id"]]["file_name"], image=im["id"]))
            for im in images]


def _query_masks(frame: CachedFrame) -> torch.Tensor:
    """bool [Q, H, W] masks of every query at the input resolution (logit > 0)."""
    g = frame.geometry
    h, w = g.resized_hw
    m = F.interpolate(frame.mask_logits[None], size=g.padded_hw, mode="bilinear", align_corners=False)[0][:, :h, :w]
    return F.interpolate(m[None], size=g.input_hw, mode="bilinear", align_corners=False)[0] > 0


def diagnose(frames: list[CachedFrame], truths: list[GroundTruth], split: dict[str, Any], snapshot: Any,
             generator: torch.nn.Module, encoder: Any, kit: Any, seed: int) -> dict[str, Any]:
    """Per unseen category: mask IoU, predictions, true-class probability and embedding neighbours."""
    cats = {c["id"]: c for c in split["categories"]}
    names = snapshot.categories.names
    rows: dict[str, list[tuple[float, str, float]]] = defaultdict(list)
    real: dict[str, list[torch.Tensor]] = defaultdict(list)
    for frame, gt in zip(frames, truths):
        masks = _query_masks(frame)
        probs = (frame.query_embeds @ snapshot.weight.T + snapshot.bias).softmax(-1)
        for segment in gt.segments:
            category = cats[segment["category_id"]]
            if category["seen"]:
                continue
            target = torch.from_numpy(gt.ids == segment["id"])
            iou = (masks & target).flatten(1).sum(1).float() / (masks | target).flatten(1).sum(1).float().clamp(min=1)
            q = int(iou.argmax())
            pred = int(probs[q].argmax())
            rows[category["name"]].append((float(iou[q]), names[pred] if pred < len(names) else "no-object",
                                           float(probs[q, names.index(category["name"])])))
            real[category["name"]].append(frame.query_embeds[q])
    bank, bank_ids = kit.bank_embeds.float(), kit.bank_category_ids
    seen_means = {c.name: F.normalize(bank[bank_ids == c.id].mean(0), dim=0) for c in kit.categories}
    out = {}
    for name in sorted(rows):
        ious = np.array([r[0] for r in rows[name]])
        true_p = np.array([r[2] for r in rows[name]])
        real_mean = F.normalize(torch.stack(real[name]).mean(0), dim=0)
        text = torch.from_numpy(np.asarray(encoder.encode([name]), dtype=np.float32))
        fake = synthesize_for_ids(generator, text, [10 ** 6], per_category=500, seed=seed, embed_dim=kit.embed_dim)
        fake_mean = F.normalize(fake.mean(0), dim=0)

        def nearest(v: torch.Tensor) -> list[tuple[str, float]]:
            return sorted(((n, round(float(v @ m), 3)) for n, m in seen_means.items()), key=lambda t: -t[1])[:3]

        out[name] = {"segments": len(ious), "best_query_iou_median": round(float(np.median(ious)), 3),
                     "best_query_iou_over_0.5": round(float(np.mean(ious > 0.5)), 3),
                     "true_class_probability_median": round(float(np.median(true_p)), 4),
                     "predicted": Counter(r[1] for r in rows[name]).most_common(5),
                     "cos_real_mean_to_generated_mean": round(float(real_mean @ fake_mean), 3),
                     "real_mean_nearest_seen": nearest(real_mean), "generated_mean_nearest_seen": nearest(fake_mean)}
    return out


def run(args: argparse.Namespace) -> int:
    args.threads = apply_threads(args.threads)
    data = Path(args.data)
    split = read_split(data / "split.json")
    gt = load_json(data / "annotations" / "panoptic_val.json", what="panoptic annotation file")
    images = gt["images"][:args.val_images] if args.val_images else gt["images"]
    with Segmenter.from_kit(resolve_kit(args.kit), semantic=False) as segmenter:
        kit, encoder = segmenter.registry.kit, segmenter.registry.text_encoder
        frames = forward_world(segmenter, data, images)
        truths = _ground_truth(data, images, gt)
        registry = build_registry(kit, text_encoder=encoder, seed=args.seed, warm_up=False, writer_nice=None)
        try:
            unseen = [c for c in split["categories"] if not c["seen"]]
            registry.add([c["name"] for c in unseen], isthing=[bool(c["isthing"]) for c in unseen])
            result = diagnose(frames, truths, split, registry.snapshot, registry.generator, encoder, kit, args.seed)
        finally:
            registry.close()
    for name, r in result.items():
        print(f"{name:<14} IoU {r['best_query_iou_median']:.2f}  p(true) {r['true_class_probability_median']:.3f}  "
              f"cos(real, generated) {r['cos_real_mean_to_generated_mean']:.2f}  real~{r['real_mean_nearest_seen'][0]}"
              f"  generated~{r['generated_mean_nearest_seen'][0]}  predicted {r['predicted'][:3]}")
    write_json(args.out, {"experiment": "unseen-holes", "data": str(data), "images": len(images), "seed": args.seed,
                          "threads": args.threads, "categories": result, "provenance": provenance()})
    return 0
