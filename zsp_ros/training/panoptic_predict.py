"""Run a trained segmenter over a COCO panoptic split and write COCO panoptic predictions.

Output (the layout `zsp eval panoptic --pred` reads, panopticapi's convention):

    OUT/panoptic_<split>.json   {"info": {...thresholds}, "annotations": [{"image_id", "file_name",
                                 "segments_info": [{"id", "category_id", "isthing", "score", "area"}]}],
                                 "categories": [...the training categories...]}   (compact JSON)
    OUT/panoptic_<split>/NAME.png  segment ids as R + 256 G + 256² B (0 = void)

Files are written by `zsp_ros.evaluation.predict.CocoPanopticWriter` (as `zsp segment` and
`zsp bench runtime` write theirs); images go through the network in batches, at their own size.
The PNG of an image takes the file name of its ground-truth annotation. Inference follows
Mask2Former: mask logits upsampled (bilinear) to the padded input, padding cropped, then
:func:`zsp_ros.inference.postprocess.panoptic_inference`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from zsp_ros.data.coco_format import load_json, read_png
from zsp_ros.evaluation.predict import CocoPanopticWriter
from zsp_ros.inference.postprocess import DEFAULT_OBJECT_MASK_THRESHOLD, DEFAULT_OVERLAP_THRESHOLD, panoptic_inference
from zsp_ros.inference.preprocess import Geometry, image_batch
from zsp_ros.inference.resize import masks_to_resized


@torch.no_grad()
def predict_panoptic(model: nn.Module, *, data_dir: str | Path, categories: Sequence[dict],
                     out_dir: str | Path, split: str = "val", device: torch.device | str = "cpu",
                     batch_size: int = 8, size_divisibility: int = 32,
                     object_mask_threshold: float = DEFAULT_OBJECT_MASK_THRESHOLD,
                     overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
                     limit: int | None = None) -> Path:
    """Predict every image of ``DIR/annotations/panoptic_<split>.json``; return the JSON path.

    Args:
        model: forward(images float [B,3,H,W]) -> dict with ``pred_logits`` [B,Q,K+1] and
            ``pred_masks`` [B,Q,h,w]; class index k means ``categories[k]``.
        categories: the model's K categories ({"id", "name", "isthing"}), in class-index order.
        limit: predict only the first ``limit`` images (quick checks).
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    gt_path = data_dir / "annotations" / f"panoptic_{split}.json"
    gt = load_json(gt_path, what="panoptic annotation file")
    png_name = {a["image_id"]: a["file_name"] for a in gt["annotations"]}
    images = gt["images"][:limit] if limit is not None else gt["images"]
    isthing = torch.tensor([bool(c["isthing"]) for c in categories], device=device)
    category_ids = [int(c["id"]) for c in categories]
    writer = CocoPanopticWriter(out_dir / f"panoptic_{split}")
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            arrays = [read_png(data_dir / "images" / split / im["file_name"], what="image",
                               image=im["id"], mode="RGB") for im in chunk]
            batch = image_batch(arrays, size_divisibility=size_divisibility)
            ph, pw = batch.shape[-2:]
            outputs = model(batch.to(device))
            for i, (im, a) in enumerate(zip(chunk, arrays)):
                hw = (a.shape[0], a.shape[1])
                geometry = Geometry(input_hw=hw, resized_hw=hw, padded_hw=(ph, pw))
                masks = masks_to_resized(outputs["pred_masks"][i], geometry)
                id_map, segments = panoptic_inference(
                    outputs["pred_logits"][i], masks, isthing=isthing,
                    object_mask_threshold=object_mask_threshold,
                    overlap_threshold=overlap_threshold)
                name = png_name.get(im["id"], Path(im["file_name"]).with_suffix(".png").name)
                writer.add(image_id=im["id"], png_name=name, panoptic=id_map.cpu().numpy(), segments_info=[
                    {"id": s["id"], "category_id": category_ids[s["class_index"]], "isthing": int(s["isthing"]),
                     "score": round(s["score"], 5), "area": s["area"]} for s in segments])
    finally:
        model.train(was_training)
    return writer.write_json(out_dir / f"panoptic_{split}.json", info={
        "description": "zsp_ros panoptic predictions", "split": split,
        "object_mask_threshold": object_mask_threshold, "overlap_threshold": overlap_threshold},
        categories=[{"id": int(c["id"]), "name": c["name"], "isthing": int(bool(c["isthing"]))}
                    for c in categories])
