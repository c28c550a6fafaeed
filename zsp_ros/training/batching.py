"""From dataset items to network batches, deterministically in (seed, iteration).

The data stream is one endless sequence: epoch e is a permutation of the dataset drawn from
``seed + e``. Iteration ``it`` takes positions ``[it*G, (it+1)*G)`` of the stream (G the global
batch); rank r of W takes the r-th contiguous slice of ``G / W`` of them. So the images an
iteration sees do not depend on the number of processes, and resuming at iteration ``it``
continues the same stream. Each image of the global batch (its *slot*) gets its own RNG seed
(:func:`image_seed`), used for augmentation and for the loss's random points.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from zsp_ros.inference.preprocess import normalise, pad_to, padded_size


def image_seed(seed: int, iteration: int, slot: int) -> int:
    """RNG seed of global batch slot ``slot`` at ``iteration`` (a 63-bit int)."""
    return ((int(seed) * 1_000_003 + int(iteration)) * 65_537 + int(slot)) % (2**63 - 1)


class StreamBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's list of dataset indices for iterations ``start_iter, start_iter+1, ...``.

    Endless; use with ``DataLoader(batch_sampler=...)``.
    """

    def __init__(self, *, dataset_size: int, global_batch: int, seed: int, rank: int = 0,
                 world_size: int = 1, start_iter: int = 0) -> None:
        if dataset_size < 1:
            raise ValueError("StreamBatchSampler: the dataset is empty")
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by the "
                             f"{world_size} processes")
        self.dataset_size = int(dataset_size)
        self.global_batch = int(global_batch)
        self.local_batch = self.global_batch // world_size
        self.seed = int(seed)
        self.rank = int(rank)
        self.start_iter = int(start_iter)
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.int64)

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.dataset_size)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.dataset_size, generator=g)
        return int(self._perm[offset])

    def slots(self) -> range:
        """This rank's global batch slots."""
        return range(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)

    def batch(self, iteration: int) -> list[int]:
        """Dataset indices of this rank at ``iteration``."""
        base = iteration * self.global_batch
        return [self._index(base + s) for s in self.slots()]

    def __iter__(self) -> Iterator[list[int]]:
        it = self.start_iter
        while True:
            yield self.batch(it)
            it += 1


def hflip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Mirror image [3,H,W] and target masks [N,H,W] left-right."""
    return image.flip(-1), {**target, "masks": target["masks"].flip(-1)}


def collate_list(items: list) -> list:
    """DataLoader collate that keeps the items as a list (sizes may differ)."""
    return items


Augment = Callable[[torch.Tensor, dict, torch.Generator], tuple[torch.Tensor, dict]]


def drop_empty_masks(target: dict) -> dict:
    """Leave out segments whose mask has no pixel (e.g. cropped away)."""
    keep = target["masks"].flatten(1).any(1)
    if bool(keep.all()):
        return target
    return {**target, **{k: target[k][keep] for k in ("labels", "masks", "category_ids")
                         if k in target}}


def prepare_batch(items: Sequence[tuple[torch.Tensor, dict]], *,
                  generators: Sequence[torch.Generator], size_divisibility: int = 32,
                  flip: bool = False, augment: Augment | None = None,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[dict]]:
    """Augment, normalise, pad and move a batch.

    Args:
        items: (image uint8 [3,H,W], target) pairs; target has ``labels`` int64 [N] and
            ``masks`` bool [N,H,W].
        generators: one per item; with ``flip`` a flip is drawn first from each, then
            ``augment(image, target, generator)`` runs (e.g. data.coco_datasets.RandomResizeCrop).
        size_divisibility: pad H and W up to a multiple of this.

    Returns:
        images float32 [B,3,Hp,Wp] ((pixel - mean) / std, 0 in the padding) and targets with
        ``labels`` and ``masks`` bool [N,Hp,Wp] (False in the padding) on ``device``.
    """
    if len(items) != len(generators):
        raise ValueError(f"prepare_batch: {len(items)} items but {len(generators)} generators")
    if flip:
        items = [hflip(img, tgt) if float(torch.rand((), generator=g)) < 0.5 else (img, tgt)
                 for (img, tgt), g in zip(items, generators)]
    if augment is not None:
        items = [augment(img, tgt, g) for (img, tgt), g in zip(items, generators)]
        items = [(img, drop_empty_masks(tgt)) for img, tgt in items]
    max_h = max(img.shape[1] for img, _ in items)
    max_w = max(img.shape[2] for img, _ in items)
    padded_hw = padded_size(max_h, max_w, size_divisibility)
    images, targets = [], []
    for img, tgt in items:
        if img.dtype != torch.uint8 or img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"prepare_batch: image must be uint8 [3,H,W], got {img.dtype} "
                             f"{tuple(img.shape)}")
        h, w = img.shape[1:]
        masks = tgt["masks"]
        if masks.shape[1:] != (h, w):
            raise ValueError(f"prepare_batch: masks {tuple(masks.shape)} do not match image "
                             f"{(h, w)} (image_id {tgt.get('image_id')})")
        images.append(pad_to(normalise(img), padded_hw))
        targets.append({"labels": tgt["labels"].to(device),
                        "masks": pad_to(masks, padded_hw).to(device)})
    return torch.stack(images).to(device), targets
