"""Score a classifier head on cached segmenter outputs: panoptic, semantic and instance views.

A head is ``weight`` [K+1, E] and ``bias`` [K+1] over a category list (row k = categories[k],
row K = no object); the categories are any subset of the world's (split.json), in any order.
For every image of a `zsp_ros.training.val_cache.ValCache`:

    class_logits = query_embeds @ W.T + b                                   [Q, K+1]
    masks        = mask logits upsampled (bilinear) to the padded input, padding cropped
    panoptic     = zsp_ros.inference.postprocess.panoptic_inference            (Mask2Former)
    semantic     = argmax_k semantic_inference (sum_q p_q(k) sigmoid(m_q))   (every pixel labelled)
    instance     = instance_inference(topk=100, stuff classes dropped)       (RLE, COCO results)

and the metrics come from zsp_ros.evaluation: PQ/SQ/RQ exactly as panopticapi
(`pq_single_image` per image on the same id maps a PNG round trip would give, then
`summarize_panoptic`), mIoU/hIoU from a confusion matrix over the split's categories, and
COCOeval mask AP50 / Recall@100. All metrics are percent, for all / seen / unseen / hm.

The three views are derived from the ONE panoptic (ZSP-protocol) segmenter; the paper trains
separate semantic (ZSS) and instance (ZSI) models, which this benchmark does not.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zsp_ros.data.categories import read_split
from zsp_ros.data.coco_format import load_json, panoptic_folder, read_panoptic_png, read_png
from zsp_ros.evaluation.instance_ap import evaluate_instances
from zsp_ros.evaluation.panoptic_quality import PQStat, pq_single_image, summarize_panoptic
from zsp_ros.evaluation.semantic_iou import ConfusionMatrix, summarize_semantic
from zsp_ros.inference.postprocess import (
    DEFAULT_OBJECT_MASK_THRESHOLD,
    DEFAULT_OVERLAP_THRESHOLD,
    instance_inference,
    panoptic_inference,
    semantic_inference,
)
from zsp_ros.inference.preprocess import Geometry
from zsp_ros.inference.resize import masks_to_resized
from zsp_ros.training.val_cache import ValCache

VIEWS = ("panoptic", "semantic", "instance")


class HeadEvaluator:
    """Ground truth of one split, loaded once; `evaluate` scores any number of heads.

    Args:
        cache: the segmenter's outputs over the split (its ``data`` and ``split`` name the ground truth).
        data_dir: the world folder (default: ``cache.data``).
        object_mask_threshold, overlap_threshold: Mask2Former panoptic thresholds.
        instance_topk: instances kept per image (Mask2Former: 100).
    """

    def __init__(self, cache: ValCache, *, data_dir: str | Path | None = None,
                 object_mask_threshold: float = DEFAULT_OBJECT_MASK_THRESHOLD,
                 overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
                 instance_topk: int = 100) -> None:

        self.cache = cache
        self.data_dir = Path(data_dir or cache.data)
        self.split = read_split(self.data_dir / "split.json")
        self.object_mask_threshold = float(object_mask_threshold)
        self.overlap_threshold = float(overlap_threshold)
        self.instance_topk = int(instance_topk)
        ann_dir = self.data_dir / "annotations"
        self.panoptic_json = ann_dir / f"panoptic_{cache.split}.json"
        gt = load_json(self.panoptic_json, what="panoptic annotation file")
        folder = panoptic_folder(self.panoptic_json, gt, None)
        by_image = {a["image_id"]: a for a in gt["annotations"]}
        self.gt_categories = {int(c["id"]): c for c in gt["categories"]}
        self.gt_segments, self.gt_panoptic = [], []
        for image_id in cache.image_ids.tolist():
            if image_id not in by_image:
                raise ValueError(f"{self.panoptic_json}: no annotation for cached image {image_id}")
            ann = by_image[image_id]
            self.gt_segments.append(ann["segments_info"])
            self.gt_panoptic.append(read_panoptic_png(folder / ann["file_name"], image=image_id))
        self._semantic_gt: list[np.ndarray] | None = None
        self.split_index = {int(c["id"]): i for i, c in enumerate(self.split["categories"])}

    # ------------------------------------------------------------------ helpers
    def _semantic_ground_truth(self) -> list[np.ndarray]:

        if self._semantic_gt is None:
            folder = self.data_dir / "annotations" / f"semantic_{self.cache.split}"
            self._semantic_gt = [read_png(folder / Path(name).with_suffix(".png").name, what="semantic label",
                                          image=image_id, mode="L")
                                 for name, image_id in zip(self.cache.file_names, self.cache.image_ids.tolist())]
        return self._semantic_gt

    def _check_head(self, weight: torch.Tensor, bias: torch.Tensor, categories: Sequence[dict]) -> None:
        k = len(categories)
        if tuple(weight.shape) != (k + 1, self.cache.embed_dim) or tuple(bias.shape) != (k + 1,):
            raise ValueError(f"head must be weight [{k + 1}, {self.cache.embed_dim}] and bias [{k + 1}] for "
                             f"{k} categories, got {tuple(weight.shape)} and {tuple(bias.shape)}")
        unknown = [c["id"] for c in categories if int(c["id"]) not in self.split_index]
        if unknown:
            raise ValueError(f"head categories {unknown} are not in {self.data_dir / 'split.json'}")

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, weight: torch.Tensor, bias: torch.Tensor, categories: Sequence[dict], *,
                 views: Sequence[str] = ("panoptic",), limit: int | None = None) -> dict[str, Any]:
        """Metrics of the head (weight [K+1, E], bias [K+1], row k = ``categories[k]`` {id, isthing}).

        Returns ``{"panoptic": summarize_panoptic(...), "semantic": {...}, "instance": {...},
        "images": N, "seconds": s}`` for the requested ``views``.
        """
        import time


        bad = [v for v in views if v not in VIEWS]
        if bad:
            raise ValueError(f"unknown views {bad}; choose from {', '.join(VIEWS)}")
        weight, bias = torch.as_tensor(weight).float(), torch.as_tensor(bias).float()
        self._check_head(weight, bias, categories)
        t0 = time.perf_counter()
        cache = self.cache
        ids = torch.tensor([int(c["id"]) for c in categories], dtype=torch.int64)
        isthing = torch.tensor([bool(c["isthing"]) for c in categories])
        to_split = torch.tensor([self.split_index[int(c["id"])] for c in categories], dtype=torch.int64)
        stat = PQStat()
        conf = ConfusionMatrix(len(self.split["categories"])) if "semantic" in views else None
        semantic_gt = self._semantic_ground_truth() if "semantic" in views else None
        detections: list[dict] = []
        n = len(cache) if limit is None else min(limit, len(cache))
        for i in range(n):
            h, w = (int(v) for v in cache.image_hw[i])
            geometry = Geometry(input_hw=(h, w), resized_hw=(h, w), padded_hw=tuple(cache.padded_hw))
            logits = torch.addmm(bias, cache.query_embeds[i], weight.t())                  # [Q, K+1]
            masks = masks_to_resized(cache.mask_logits[i], geometry)                       # [Q, h, w]
            image_id = int(cache.image_ids[i])
            if "panoptic" in views:
                id_map, segments = panoptic_inference(logits, masks, isthing=isthing,
                                                      object_mask_threshold=self.object_mask_threshold,
                                                      overlap_threshold=self.overlap_threshold)
                pred = [{"id": s["id"], "category_id": int(ids[s["class_index"]])} for s in segments]
                stat += pq_single_image(self.gt_panoptic[i], id_map.numpy(), self.gt_segments[i], pred,
                                        self.gt_categories, image_id=image_id)
            if conf is not None:
                label = to_split[semantic_inference(logits, masks).argmax(0)].numpy().astype(np.uint8)
                conf.update(semantic_gt[i], label, image=image_id)
            if "instance" in views and bool(isthing.any()):
                detections += self._instances(logits, masks, isthing, ids, image_id)
        out: dict[str, Any] = {"images": n}
        if "panoptic" in views:        # with ``limit``: the scored images only
            out["panoptic"] = summarize_panoptic(stat, self.gt_categories, self.split)
        if conf is not None:
            out["semantic"] = summarize_semantic(conf, self.split["categories"])
        if "instance" in views:
            out["instance"] = self._instance_metrics(detections, n)
        out["seconds"] = round(time.perf_counter() - t0, 2)
        return out

    def _instances(self, logits: torch.Tensor, masks: torch.Tensor, isthing: torch.Tensor, ids: torch.Tensor,
                   image_id: int) -> list[dict]:
        from pycocotools import mask as mask_utils

        inst = instance_inference(logits, masks, topk=self.instance_topk, isthing=isthing)
        if inst["masks"].shape[0] == 0:
            return []
        binary = np.asfortranarray(inst["masks"].permute(1, 2, 0).numpy().astype(np.uint8))   # [h, w, T]
        rles = mask_utils.encode(binary)
        return [{"image_id": image_id, "category_id": int(ids[c]), "score": float(s),
                 "segmentation": {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}}
                for r, c, s in zip(rles, inst["class_index"].tolist(), inst["scores"].tolist())]

    def _instance_metrics(self, detections: list[dict], n: int) -> dict[str, Any]:
        import json
        import tempfile


        gt_json = self.data_dir / "annotations" / f"instances_{self.cache.split}.json"
        if n < len(self.cache):          # score only the images that were predicted
            gt = json.loads(gt_json.read_text())
            keep = set(self.cache.image_ids[:n].tolist())
            gt["images"] = [im for im in gt["images"] if im["id"] in keep]
            gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(gt, f)
            try:
                return evaluate_instances(f.name, detections, self.split)
            finally:
                Path(f.name).unlink(missing_ok=True)
        return evaluate_instances(gt_json, detections, self.split)


def load_head(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight float32 [K+1, E], bias float32 [K+1]) of a head.safetensors file."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    if "weight" not in tensors or "bias" not in tensors:
        raise ValueError(f"{path}: a head file holds 'weight' and 'bias', found {sorted(tensors)}")
    return tensors["weight"].float(), tensors["bias"].float()


def headline(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The numbers a table shows: PQ/SQ/RQ seen/unseen/hm (+ mIoU, hIoU, mAP50, recall100 if present)."""
    out: dict[str, float | None] = {}
    pan = metrics.get("panoptic")
    if pan:
        for m in ("PQ", "SQ", "RQ"):
            for g in ("seen", "unseen", "hm"):
                out[f"{m}.{g}"] = pan[m][g]
    sem = metrics.get("semantic")
    if sem:
        for g in ("seen", "unseen"):
            out[f"mIoU.{g}"] = sem["mIoU"][g]
        out["hIoU"] = sem["hIoU"]
    ins = metrics.get("instance")
    if ins:
        for m in ("mAP50", "recall100"):
            for g in ("seen", "unseen", "hm"):
                out[f"{m}.{g}"] = ins[m][g]
    return out
