"""A feature bank seen as images, and seeded random draws, for the PADing trainer.

`BankImages` groups the bank's rows (query embeddings) by the image they came from, so the
trainer can draw whole images: image ``i`` (in sorted image-id order) owns the int64 row
indices ``rows(i)``. `seeded` runs a block under a given torch seed without moving the
caller's RNG stream, which is how every noise and dropout draw of a training step is tied to
``(seed, step, slot)``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class BankImages:
    """The bank's rows grouped by image: image ``i`` (in sorted image-id order) owns rows
    ``rows(i)``. Rows of one image are contiguous after a stable sort, so a lookup is a slice."""

    def __init__(self, image_ids: torch.Tensor) -> None:
        order = torch.argsort(image_ids, stable=True)
        _, counts = torch.unique_consecutive(image_ids[order], return_counts=True)
        self.order = order
        self.starts = (torch.cumsum(counts, 0) - counts).tolist()
        self.counts = counts.tolist()

    @property
    def num_images(self) -> int:
        return len(self.counts)

    def rows(self, image: int) -> torch.Tensor:
        """Bank row indices [R_i] int64 of image ``image`` (0 <= image < num_images)."""
        start = self.starts[image]
        return self.order[start:start + self.counts[image]]


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global torch RNG (CPU, and ``device`` if CUDA) seeded by ``seed``;
    the previous states are restored afterwards, so the caller's stream does not move."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
