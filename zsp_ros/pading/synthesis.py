"""Generate fake query embeddings for categories from their semantic (text) embeddings.

Used by offline stage 3 and by the runtime when a user adds a category: the generator turns
each category's semantic vector into ``per_class`` embeddings, each with its own noise draw.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def synthesize_embeddings(generator: nn.Module, semantic: torch.Tensor, labels: Sequence[int] | torch.Tensor,
                          *, per_class: int, seed: int | None = 0, batch_size: int = 4096
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fake embeddings for every category, ``per_class`` each.

    Args:
        generator: a `PrimitiveGenerator` or `GMMNGenerator` (``forward(semantic, noise)`` and
            ``sample_noise(n, generator=...)``); run in eval mode (no dropout, noise still on)
            and restored to its previous mode afterwards.
        semantic: [C, Ds] float semantic vectors of the categories.
        labels: [C] the label to give each category's samples (e.g. its head row).
        per_class: samples per category (>= 0).
        seed: seeds the noise (deterministic output); None uses the global torch RNG.
        batch_size: samples per generator call (bounds memory).

    Returns:
        (embeds [C * per_class, E] float32 on CPU, labels [C * per_class] int64), grouped by
        category in input order.
    """
    semantic = torch.as_tensor(semantic, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if semantic.ndim != 2 or labels.shape != (semantic.shape[0],):
        raise ValueError(f"semantic must be [C, Ds] with labels [C]; got {tuple(semantic.shape)} "
                         f"and {tuple(labels.shape)}")
    if per_class < 0 or batch_size < 1:
        raise ValueError(f"per_class must be >= 0 and batch_size >= 1, got {per_class}, {batch_size}")
    device = next(generator.parameters()).device
    rows = semantic.repeat_interleave(per_class, dim=0)
    out_labels = labels.repeat_interleave(per_class)
    rng = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    was_training = generator.training
    generator.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, rows.shape[0], batch_size):
                chunk = rows[start:start + batch_size].to(device)
                noise = generator.sample_noise(chunk.shape[0], generator=rng)
                chunks.append(generator(chunk, noise).float().cpu())
    finally:
        generator.train(was_training)
    embed_dim = int(generator.embed_dim)
    embeds = torch.cat(chunks) if chunks else torch.zeros(0, embed_dim)
    return embeds, out_labels
