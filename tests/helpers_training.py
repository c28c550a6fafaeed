"""Test helpers for the training code: a tiny stand-in segmenter and a toy dataset.

`TinySegmenter` returns the Mask2Former output dict of docs/CONTRACTS.md (``pred_logits``,
``pred_masks`` at H/4, ``pred_embeds``, ``aux_outputs``) from a few hundred parameters, so the
matcher, criterion and loop can be tested without the real model.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

# (R, G, B) per toy class: squares of these colours on a gray background
TOY_COLOURS = ((220, 40, 40), (40, 200, 60), (40, 70, 230))


class TinySegmenter(nn.Module):
    """Conv features at stride 4, learned queries refined by ``num_layers`` residual MLPs."""

    def __init__(self, *, num_classes: int, num_queries: int = 6, dim: int = 16,
                 num_layers: int = 2) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, dim, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(dim, dim, 4, stride=4))
        self.pixel = nn.Conv2d(dim, dim, 1)
        self.query = nn.Embedding(num_queries, dim)
        self.layers = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.class_head = nn.Linear(dim, num_classes + 1)

    def forward(self, images: torch.Tensor) -> dict:
        feats = self.pixel(F.relu(self.backbone(images)))                   # [B, E, H/4, W/4]
        q = self.query.weight[None].expand(images.shape[0], -1, -1)          # [B, Q, E]
        preds = []
        for layer in self.layers:
            masks = torch.einsum("bqe,behw->bqhw", q, feats)
            attn = masks.flatten(2).softmax(-1)                               # [B, Q, hw]
            pooled = torch.einsum("bqn,ben->bqe", attn, feats.flatten(2))
            q = q + F.relu(layer(torch.cat([q, pooled], -1)))
            embeds = self.norm(q)
            preds.append({"pred_logits": self.class_head(embeds), "pred_embeds": embeds,
                          "pred_masks": torch.einsum("bqe,behw->bqhw", embeds, feats)})
        out = dict(preds[-1])
        out["aux_outputs"] = preds[:-1]
        return out


def toy_item(index: int, *, size: int = 32, objects: int = 2) -> tuple[torch.Tensor, dict]:
    """Deterministic toy image: ``objects`` coloured squares (class = colour) on gray.

    Returns image uint8 [3, size, size] and a target as the dataset contract gives it.
    """
    g = torch.Generator().manual_seed(1000 + index)
    image = torch.full((3, size, size), 128, dtype=torch.uint8)
    labels, masks = [], []
    cell = size // 2
    cells = torch.randperm(4, generator=g)[:objects].tolist()
    for c in cells:
        label = int(torch.randint(len(TOY_COLOURS), (1,), generator=g))
        side = int(torch.randint(cell // 2, cell, (1,), generator=g))
        y0, x0 = (c // 2) * cell, (c % 2) * cell
        mask = torch.zeros(size, size, dtype=torch.bool)
        mask[y0:y0 + side, x0:x0 + side] = True
        image[:, mask] = torch.tensor(TOY_COLOURS[label], dtype=torch.uint8)[:, None]
        labels.append(label)
        masks.append(mask)
    target = {"labels": torch.tensor(labels, dtype=torch.int64), "masks": torch.stack(masks),
              "category_ids": torch.tensor(labels, dtype=torch.int64) + 1, "image_id": index}
    return image, target


class ToyDataset(torch.utils.data.Dataset):
    """``length`` toy items with ``objects`` squares each (None: 1, 2, 3, 4, 1, ... by index)."""

    def __init__(self, length: int = 8, *, size: int = 32, objects: int | None = 2) -> None:
        self.items = [toy_item(i, size=size, objects=1 + i % 4 if objects is None else objects)
                      for i in range(length)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def free_port() -> int:
    """A free TCP port on loopback for a gloo rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_gloo_group(rank: int, world_size: int, port: int):
    """In a spawned test worker: 1 torch thread, torchrun's environment, CPU process group joined.

    Returns the `zsp_ros.training.distributed.DistInfo`; call `zsp_ros.training.distributed.shutdown()` at the end."""
    import os

    from zsp_ros.training import distributed

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    return distributed.init_distributed("cpu", timeout_s=60)


@contextlib.contextmanager
def recorded_pading_steps() -> Iterator[list[int]]:
    """Within the block, the step every `PadingTrainer.train_step` call starts from (the
    trainer's ``step`` before it), in order: a run resumed from a checkpoint at step K to N
    records [K, ..., N-1], a run that ignored the checkpoint [0, ..., N-1]. Works in spawned
    workers too (it patches the class in this process only)."""
    from zsp_ros.training.pading_trainer import PadingTrainer

    cls = PadingTrainer
    own = "train_step" in cls.__dict__                 # else inherited: remove the patch after
    original = cls.train_step
    steps: list[int] = []

    def train_step(self, *args, **kwargs):
        steps.append(int(self.step))
        return original(self, *args, **kwargs)

    cls.train_step = train_step
    try:
        yield steps
    finally:
        if own:
            cls.train_step = original
        else:
            del cls.train_step
