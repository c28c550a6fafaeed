"""The feature bank: the frozen segmenter's query embeddings over the training set, labelled.

PADing stages 2-3 never run the segmenter again: every query embedding of every training
image is extracted once, matched (Hungarian, as in training) to the ground-truth segments,
and stored with the matched segment's category - unmatched queries get category 0
("no object"). The bank records the sha256 of the segmenter weights it came from, so a
bank is never used with another segmenter.

File format (one ``.safetensors`` file, format "zsp-feature-bank", version 1):

    tensors
      embeds        [M, E]  float16 (default) or float32   query embedding (after the decoder norm)
      category_ids  [M]     int64   COCO category id of the matched segment, 0 = no object
      image_ids     [M]     int64   image id of the row
      query_index   [M]     int64   query slot 0..Q-1 the row came from
    metadata (all strings)
      format          "zsp-feature-bank"
      format_version  "1"
      segmenter_hash  sha256 hex of the segmenter weights file
      embed_dim       E
      categories      JSON [{"id", "name", "isthing", "seen"}]  (the split's categories)
      extra           JSON object (source data, number of queries, provenance, ...)

Rows are grouped by image (all kept rows of one image are contiguous).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zsp_ros.training.batching import prepare_batch
from zsp_ros.utils.provenance import atomic_write_bytes

FORMAT = "zsp-feature-bank"
FORMAT_VERSION = 1


@dataclass
class FeatureBank:
    """Labelled query embeddings of one segmenter (see the module docstring for the file)."""

    embeds: torch.Tensor                 # [M, E] float16 / float32
    category_ids: torch.Tensor           # [M] int64, 0 = no object
    image_ids: torch.Tensor              # [M] int64
    query_index: torch.Tensor            # [M] int64
    categories: list[dict[str, Any]]     # [{"id", "name", "isthing", "seen"}]
    segmenter_hash: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = self.embeds.shape[0]
        if self.embeds.ndim != 2:
            raise ValueError(f"embeds must be [M, E], got {tuple(self.embeds.shape)}")
        for name in ("category_ids", "image_ids", "query_index"):
            value = getattr(self, name)
            if tuple(value.shape) != (m,):
                raise ValueError(f"{name} must be [{m}], got {tuple(value.shape)}")
        known = {int(c["id"]) for c in self.categories}
        present = set(torch.unique(self.category_ids).tolist()) - {0}
        if present - known:
            raise ValueError(f"bank rows use category ids {sorted(present - known)} that are not "
                             f"in its category list")

    @property
    def embed_dim(self) -> int:
        return int(self.embeds.shape[1])

    def __len__(self) -> int:
        return int(self.embeds.shape[0])


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (the segmenter hash a bank records)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_feature_bank(path: str | os.PathLike, bank: FeatureBank, *,
                      dtype: torch.dtype = torch.float16) -> None:
    """Write ``bank`` to ``path`` atomically (embeds stored as ``dtype``: float16 or float32)."""
    from safetensors.torch import save

    if dtype not in (torch.float16, torch.float32):
        raise ValueError(f"embeds are stored as float16 or float32, not {dtype}")
    tensors = {"embeds": bank.embeds.detach().to("cpu", dtype).contiguous(),
               "category_ids": bank.category_ids.detach().to("cpu", torch.int64).contiguous(),
               "image_ids": bank.image_ids.detach().to("cpu", torch.int64).contiguous(),
               "query_index": bank.query_index.detach().to("cpu", torch.int64).contiguous()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "segmenter_hash": bank.segmenter_hash, "embed_dim": str(bank.embed_dim),
                "categories": json.dumps(bank.categories), "extra": json.dumps(bank.extra)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_feature_bank(path: str | os.PathLike, *, segmenter_hash: str | None = None) -> FeatureBank:
    """Read a bank; with ``segmenter_hash`` given, a bank of another segmenter is an error."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature bank not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a feature bank (format {meta.get('format')!r})")
        if int(meta.get("format_version", -1)) != FORMAT_VERSION:
            raise ValueError(f"{path}: bank format version {meta.get('format_version')} is not "
                             f"supported (this code reads version {FORMAT_VERSION})")
        tensors = {k: f.get_tensor(k) for k in ("embeds", "category_ids", "image_ids", "query_index")}
    bank = FeatureBank(**tensors, categories=json.loads(meta["categories"]),
                       segmenter_hash=meta["segmenter_hash"], extra=json.loads(meta.get("extra", "{}")))
    if segmenter_hash is not None and bank.segmenter_hash != segmenter_hash:
        raise ValueError(f"{path} was extracted from segmenter {bank.segmenter_hash[:12]}..., "
                         f"not from {segmenter_hash[:12]}...; re-extract the bank")
    return bank


def _as_pair(item: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """A dataset item as (image, target): the datasets' tuples or {"image", "target"} dicts."""
    if isinstance(item, dict):
        return item["image"], item["target"]
    image, target = item
    return image, target


def default_prepare_batch(items: Sequence[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """(image uint8 [3, H, W], target) pairs -> (images float32 [B, 3, Hp, Wp], targets), the
    training pipeline's own normalisation and padding (`zsp_ros.training.batching.prepare_batch`, no
    augmentation); targets keep ``labels`` and ``masks`` bool [N, Hp, Wp]."""

    return prepare_batch(items, generators=[torch.Generator() for _ in items])


def extract_feature_bank(model: torch.nn.Module, dataset: Sequence[Any],
                         matcher: Callable[[dict, list[dict]], list[tuple[torch.Tensor, torch.Tensor]]],
                         *, categories: list[dict[str, Any]], segmenter_hash: str,
                         batch_size: int = 4, device: str | torch.device = "cpu",
                         prepare_batch: Callable[[Sequence[tuple]], tuple[torch.Tensor, list[dict]]]
                         = default_prepare_batch,
                         max_unmatched_per_image: int | None = None, seed: int = 0,
                         extra: dict[str, Any] | None = None, progress: bool = True) -> FeatureBank:
    """Run the frozen segmenter over ``dataset`` and label every query embedding.

    Args:
        model: Mask2Former; ``model(images)`` returns the CONTRACTS.md dict with
            ``pred_logits`` [B, Q, K+1], ``pred_masks`` [B, Q, H/4, W/4], ``pred_embeds`` [B, Q, E].
        dataset: items ``(image uint8 [3, H, W], target)`` as zsp_ros.data's datasets return
            them (or ``{"image", "target"}`` dicts); target has ``labels`` int64 [N]
            (contiguous training indices), ``masks`` bool [N, H, W], ``category_ids`` int64 [N]
            and ``image_id`` (CONTRACTS.md training items). Do not augment.
        matcher: DETR-style ``matcher(outputs, targets) -> [(pred_idx, tgt_idx)] * B`` on the
            last layer's outputs (no ``aux_outputs``), e.g. zsp_ros.training.matcher.HungarianMatcher.
        categories: the split's categories ``[{"id", "name", "isthing", "seen"}]``, recorded.
        segmenter_hash: sha256 of the segmenter weights (`sha256_file`).
        batch_size: images per forward pass.
        device: where the model runs.
        prepare_batch: (image, target) pairs -> (normalised padded images, padded targets
            with ``labels`` and ``masks``).
        max_unmatched_per_image: keep at most this many no-object queries per image (a seeded
            random subset); None keeps all Q.
        seed: seed of that subset and of the torch RNG the matcher's random points draw from
            (forked, so the caller's RNG state is untouched).
        extra: recorded in the bank's ``extra`` metadata (with the number of queries).
        progress: show a tqdm bar.
    """
    from tqdm import tqdm

    if len(dataset) == 0:
        raise ValueError("extract_feature_bank: the dataset is empty")
    device = torch.device(device)
    subset_rng = torch.Generator().manual_seed(seed)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("embeds", "category_ids", "image_ids",
                                                             "query_index")}
    num_queries = 0
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        try:
            for start in tqdm(range(0, len(dataset), batch_size), desc="feature bank", unit="batch",
                              disable=not progress):
                items = [_as_pair(dataset[i]) for i in range(start, min(start + batch_size, len(dataset)))]
                images, targets = prepare_batch(items)
                with torch.no_grad():
                    outputs = model(images.to(device))
                    last = {k: v for k, v in outputs.items() if k != "aux_outputs"}
                    indices = matcher(last, [{k: (v.to(device) if torch.is_tensor(v) else v)
                                              for k, v in t.items()} for t in targets])
                embeds = outputs["pred_embeds"].detach().float().cpu()          # [B, Q, E]
                num_queries = embeds.shape[1]
                for b, ((_, target), (pred_idx, tgt_idx)) in enumerate(zip(items, indices)):
                    cat = torch.zeros(num_queries, dtype=torch.int64)          # 0 = no object
                    pred_idx = torch.as_tensor(pred_idx, dtype=torch.int64).cpu()
                    tgt_idx = torch.as_tensor(tgt_idx, dtype=torch.int64).cpu()
                    cat[pred_idx] = target["category_ids"].cpu()[tgt_idx]
                    keep = torch.arange(num_queries)
                    if max_unmatched_per_image is not None:
                        unmatched = keep[cat == 0]
                        chosen = unmatched[torch.randperm(unmatched.numel(), generator=subset_rng)
                                           [:max_unmatched_per_image]]
                        keep = torch.sort(torch.cat([keep[cat != 0], chosen])).values
                    rows["embeds"].append(embeds[b, keep].half())
                    rows["category_ids"].append(cat[keep])
                    rows["image_ids"].append(torch.full((keep.numel(),), int(target["image_id"]),
                                                        dtype=torch.int64))
                    rows["query_index"].append(keep)
        finally:
            model.train(was_training)
    info = {"num_queries": num_queries, "num_images": len(dataset),
            "max_unmatched_per_image": max_unmatched_per_image, **(extra or {})}
    return FeatureBank(**{k: torch.cat(v) for k, v in rows.items()}, categories=list(categories),
                       segmenter_hash=segmenter_hash, extra=info)
