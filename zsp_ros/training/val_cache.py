"""The frozen segmenter's raw outputs over an evaluation split, computed once and cached.

Stages 2-3 never change the segmenter: only the classifier head differs between the variants
of the zero-shot benchmark. So the network runs once over the split; evaluating a head is then
``query_embeds @ W.T + b`` -> Mask2Former post-processing -> metrics (zsp_ros/training/evaluate_head.py),
exactly what running the whole segmenter with that head would give.

File (one ``.safetensors``, format "zsp-val-cache", version 1):

    tensors
      mask_logits    [N, Q, Hp/4, Wp/4]  float32   mask logits of the last decoder layer
      query_embeds   [N, Q, E]           float32   query embeddings (what a head classifies)
      class_logits   [N, Q, K+1]         float32   the segmenter's own head (its seen categories)
      image_ids      [N]                 int64
      image_hw       [N, 2]              int64     (height, width) of each image, pixels
    metadata (strings)
      format, format_version, segmenter_hash, data (resolved folder), split, padded_hw "[Hp, Wp]",
      file_names (JSON list, images/<split>/ names), categories (JSON, the segmenter's classes),
      extra (JSON: seconds, provenance)

Every image is padded (bottom/right, zeros after normalisation) to the split's largest size
rounded up to 32, so all rows stack; on a world of equal-sized images this is exactly the
padding `zsp_ros.training.panoptic_predict.predict_panoptic` uses. The file is keyed by the
segmenter's sha256: `ensure_val_cache` reuses a file of the same segmenter, data and split.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zsp_ros.data.coco_format import load_json, read_png
from zsp_ros.inference.preprocess import image_batch, padded_size
from zsp_ros.training.segmenter_run import SegmenterRun, load_segmenter, resolve_segmenter
from zsp_ros.utils.provenance import atomic_write_bytes, provenance

FORMAT = "zsp-val-cache"
FORMAT_VERSION = 1
_TENSORS = ("mask_logits", "query_embeds", "class_logits", "image_ids", "image_hw")


@dataclass
class ValCache:
    """Raw segmenter outputs of every image of one split (see the module docstring for shapes)."""

    mask_logits: torch.Tensor
    query_embeds: torch.Tensor
    class_logits: torch.Tensor
    image_ids: torch.Tensor
    image_hw: torch.Tensor
    padded_hw: tuple[int, int]
    file_names: list[str]
    categories: list[dict[str, Any]]
    segmenter_hash: str
    data: str
    split: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.image_ids.numel())

    @property
    def embed_dim(self) -> int:
        return int(self.query_embeds.shape[-1])


def save_val_cache(path: str | Path, cache: ValCache) -> None:
    """Write ``cache`` atomically."""
    from safetensors.torch import save

    tensors = {name: getattr(cache, name).contiguous() for name in _TENSORS}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "segmenter_hash": cache.segmenter_hash,
            "data": cache.data, "split": cache.split, "padded_hw": json.dumps(list(cache.padded_hw)),
            "file_names": json.dumps(cache.file_names), "categories": json.dumps(cache.categories),
            "extra": json.dumps(cache.extra)}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def _metadata(path: Path) -> dict[str, str] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:       # absent or not safetensors
        return None


def load_val_cache(path: str | Path, *, segmenter_hash: str | None = None) -> ValCache:
    """Read a cache; with ``segmenter_hash`` given, a cache of another segmenter is an error."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"validation cache not found: {path}")
    meta = _metadata(path)
    if meta is None or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a validation cache (format {None if meta is None else meta.get('format')!r})")
    if int(meta.get("format_version", -1)) != FORMAT_VERSION:
        raise ValueError(f"{path}: cache format version {meta.get('format_version')} is not supported "
                         f"(this code reads {FORMAT_VERSION})")
    if segmenter_hash is not None and meta["segmenter_hash"] != segmenter_hash:
        raise ValueError(f"{path} holds outputs of segmenter {meta['segmenter_hash'][:12]}..., not of "
                         f"{segmenter_hash[:12]}...; rebuild it")
    tensors = load_file(str(path))
    return ValCache(**{k: tensors[k] for k in _TENSORS}, padded_hw=tuple(json.loads(meta["padded_hw"])),
                    file_names=json.loads(meta["file_names"]), categories=json.loads(meta["categories"]),
                    segmenter_hash=meta["segmenter_hash"], data=meta["data"], split=meta["split"],
                    extra=json.loads(meta.get("extra", "{}")))


@torch.no_grad()
def compute_val_cache(model: torch.nn.Module, *, data_dir: str | Path, split: str = "val",
                      segmenter_hash: str, categories: list[dict[str, Any]], batch_size: int = 16,
                      device: str | torch.device = "cpu", size_divisibility: int = 32,
                      limit: int | None = None, progress: bool = True) -> ValCache:
    """Run ``model`` over the images of ``DIR/annotations/panoptic_<split>.json`` (in file order).

    Args:
        model: Mask2Former (``forward`` -> ``pred_masks``, ``pred_embeds``, ``pred_logits``).
        segmenter_hash, categories: recorded (the model's weights sha256 and its class list).
        limit: only the first ``limit`` images (quick checks).
    """
    from tqdm import tqdm

    data_dir = Path(data_dir).resolve()
    gt = load_json(data_dir / "annotations" / f"panoptic_{split}.json", what="panoptic annotation file")
    images = gt["images"][:limit] if limit is not None else gt["images"]
    if not images:
        raise ValueError(f"{data_dir}: split {split!r} has no images")
    ph, pw = padded_size(max(int(im["height"]) for im in images), max(int(im["width"]) for im in images),
                         size_divisibility)
    was_training = model.training
    model.eval()
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("mask_logits", "query_embeds", "class_logits")}
    hws = []
    t0 = time.perf_counter()
    try:
        for start in tqdm(range(0, len(images), batch_size), desc=f"segmenter over {split}", unit="batch",
                          disable=not progress):
            chunk = images[start:start + batch_size]
            arrays = [read_png(data_dir / "images" / split / im["file_name"], what="image", image=im["id"],
                               mode="RGB") for im in chunk]
            hws.extend((a.shape[0], a.shape[1]) for a in arrays)
            result = model(image_batch(arrays, padded_hw=(ph, pw)).to(device))
            out["mask_logits"].append(result["pred_masks"].float().cpu())
            out["query_embeds"].append(result["pred_embeds"].float().cpu())
            out["class_logits"].append(result["pred_logits"].float().cpu())
    finally:
        model.train(was_training)
    return ValCache(**{k: torch.cat(v) for k, v in out.items()},
                    image_ids=torch.tensor([int(im["id"]) for im in images], dtype=torch.int64),
                    image_hw=torch.tensor(hws, dtype=torch.int64), padded_hw=(ph, pw),
                    file_names=[im["file_name"] for im in images], categories=list(categories),
                    segmenter_hash=segmenter_hash, data=str(data_dir), split=split,
                    extra={"seconds": round(time.perf_counter() - t0, 2), "limit": limit})


def ensure_val_cache(*, segmenter: str | Path | SegmenterRun, data_dir: str | Path, out: str | Path,
                     split: str = "val", batch_size: int = 16, device: str = "cpu", limit: int | None = None,
                     force: bool = False, progress: bool = True) -> ValCache:
    """Load ``out`` if it holds this segmenter's outputs over ``data_dir``/``split``; else compute and save it."""
    run = segmenter if isinstance(segmenter, SegmenterRun) else resolve_segmenter(segmenter)
    data_dir, out = Path(data_dir).resolve(), Path(out)
    meta = _metadata(out) if out.is_file() else None
    if meta is not None and not force and meta.get("format") == FORMAT:
        extra = json.loads(meta.get("extra", "{}"))
        if (meta.get("segmenter_hash") == run.sha256 and meta.get("data") == str(data_dir)
                and meta.get("split") == split and extra.get("limit") == limit):
            return load_val_cache(out, segmenter_hash=run.sha256)
    model, _ = load_segmenter(run, device=device)
    cache = compute_val_cache(model, data_dir=data_dir, split=split, segmenter_hash=run.sha256,
                              categories=run.categories, batch_size=batch_size, device=device, limit=limit,
                              progress=progress)
    cache.extra["provenance"] = provenance()
    save_val_cache(out, cache)
    print(f"validation cache {out}: {len(cache)} images of {data_dir}/{split} in {cache.extra['seconds']:.0f} s")
    return cache


def image_outputs(cache: ValCache, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """(mask_logits [Q, Hp/4, Wp/4], query_embeds [Q, E], (height, width)) of image ``index``."""
    h, w = (int(v) for v in cache.image_hw[index])
    return cache.mask_logits[index], cache.query_embeds[index], (h, w)

