"""PADing's last step at runtime: the training rows and warm start of the head refit after a category change.

When names are added (or categories removed) while the robot runs, the classifier head is retrained
on the kit's bank of real seen query embeddings plus the generator's synthetic embeddings of every
runtime-added category (PADing's stage 3 on a compact bank). This module holds that recipe as pure
functions of tensors; the registry (zsp_ros.runtime.registry) owns the state, the lock and persistence.

Shapes: E = embedding width, K = current categories (row K of a head is no-object), M = training rows.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zsp_ros.kit.category_set import CategorySet, name_key
from zsp_ros.pading.synthesis import synthesize_embeddings

DEFAULT_CLASS_WEIGHTS = {"seen": 1.0, "added": 5.0, "no_object": 0.1}   # PADing's retraining weights
# At most this many synthetic rows enter one refit (`bounded_synthetic`): the default kit's 500 per category
# for up to 32 added categories, fewer per category beyond, so an add after 200 others refits on ~23k rows
# instead of ~107k. 8192 cost 1.5 unseen PQ with 111 added names (2 seeds), 16384 about 0.3 (within noise).
DEFAULT_MAX_SYNTHETIC_ROWS = 16384


def synthesize_for_ids(generator: nn.Module, text: torch.Tensor, ids: Sequence[int], *, per_category: int,
                       seed: int, embed_dim: int) -> torch.Tensor:
    """float32 [len(ids) * per_category, E]: fake embeddings per name (text [len(ids), D]), grouped by id.

    The noise of category id c is seeded with ``seed + c``: what a name gets does not depend on what
    is added alongside it.
    """
    chunks = []
    for row, cat_id in zip(text, ids):
        fake, _ = synthesize_embeddings(generator, row[None], [cat_id], per_class=per_category, seed=seed + cat_id)
        chunks.append(fake)
    out = torch.cat(chunks)
    if out.shape != (len(ids) * per_category, embed_dim):
        raise RuntimeError(f"generator returned {list(out.shape)}, expected [{len(ids) * per_category}, {embed_dim}]")
    return out


def bounded_synthetic(synthetic_embeds: torch.Tensor, synthetic_ids: torch.Tensor, max_rows: int | None,
                      mass_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[int, float]]:
    """At most ``max_rows`` synthetic rows, the same number from every added category.

    Each of the A categories present keeps its first ``max(1, max_rows // A)`` rows (its rows are
    independent draws, so the first n are a random sample of them). Returns (embeds [S', E], ids [S'],
    scale {id: rows it had / rows kept}); the refit multiplies that category's class weight by its scale,
    so each added category keeps the loss mass of all its rows (an unbiased estimate of the full objective).
    ``max_rows`` None keeps everything. ``mass_rows``: the number of rows each category stands for
    (the registry keeps fewer per category than it generated); scales then are ``mass_rows / kept``.
    """
    unique, counts = torch.unique(synthetic_ids, return_counts=True)
    if max_rows is None or synthetic_ids.numel() <= max_rows:
        embeds, ids, kept_counts = synthetic_embeds, synthetic_ids, counts
    else:
        per_category = max(1, int(max_rows) // len(unique))
        embeds, ids = first_rows_per_category(synthetic_embeds, synthetic_ids, per_category)
        kept_counts = torch.clamp(counts, max=per_category)
    represented = counts if mass_rows is None else torch.full_like(counts, int(mass_rows))
    scale = {int(i): float(c) / float(k) for i, c, k in zip(unique, represented, kept_counts) if c != k}
    return embeds, ids, scale


def training_rows(*, categories: CategorySet, kit_categories: CategorySet, bank_embeds: torch.Tensor,
                  bank_ids: torch.Tensor, synthetic_embeds: torch.Tensor, synthetic_ids: torch.Tensor,
                  next_id: int, class_weights: dict[str, float], max_synthetic_rows: int | None = None,
                  mass_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(embeds [M, E], labels [M] in 0..K, class weights [K + 1]) for refitting the head of ``categories``.

    Args:
        categories: the category set the head will classify (row k = ``categories.categories[k]``).
        kit_categories: the kit's own categories (the ids its bank rows carry).
        bank_embeds, bank_ids: the kit's real embeddings [B, E] and their category ids [B] (0 = no-object).
        synthetic_embeds, synthetic_ids: generated rows [S, E] of the added categories and their ids [S].
        next_id: the registry's next unused id (ids of every row are below it).
        class_weights: {"seen", "added", "no_object"} cross-entropy weights.
        max_synthetic_rows: at most this many synthetic rows (`bounded_synthetic`: the same number per
            added category, their class weights scaled up to keep each one's loss mass); None: all.
        mass_rows: the synthetic rows each added category stands for (`bounded_synthetic`); None: the
            rows it has here.

    Bank rows of a category no longer in the set become no-object (as the zero-shot protocol treats
    unannotated objects), unless a category of the same name was added again: it keeps the real rows.
    """
    k = len(categories)
    lut_size = max(int(bank_ids.max()) if bank_ids.numel() else 0, next_id) + 1
    lut = torch.full((lut_size,), k, dtype=torch.int64)                # default: no-object
    for index, c in enumerate(categories):
        lut[c.id] = index
    by_name = {name_key(c.name): index for index, c in enumerate(categories)}
    for kc in kit_categories:
        if categories.get(kc.id) is None and name_key(kc.name) in by_name:
            lut[kc.id] = by_name[name_key(kc.name)]
    synthetic_embeds, synthetic_ids, scale = bounded_synthetic(synthetic_embeds, synthetic_ids, max_synthetic_rows,
                                                                 mass_rows)
    embeds = torch.cat([bank_embeds, synthetic_embeds])
    labels = torch.cat([lut[bank_ids], lut[synthetic_ids]])
    weights = torch.tensor([class_weights["added"] * scale.get(c.id, 1.0) if c.origin == "added"
                            else class_weights["seen"] for c in categories] + [class_weights["no_object"]],
                           dtype=torch.float32)
    return embeds, labels, weights


def warm_start(*, old_categories: CategorySet, old_weight: torch.Tensor, old_bias: torch.Tensor,
               categories: CategorySet, synthetic_embeds: torch.Tensor, synthetic_ids: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial (weight [K+1, E], bias [K+1]) for ``categories`` from the live head (old_weight [K0+1, E]).

    A kept category keeps its row; a new one starts from the mean of its synthetic embeddings scaled
    to the live rows' mean norm (a prototype), with the mean bias; no-object keeps its row.
    """
    scale = old_weight[:-1].norm(dim=1).mean() if old_weight.shape[0] > 1 else torch.tensor(1.0)
    rows, biases = [], []
    for c in categories:
        if old_categories.get(c.id) is not None:
            k = old_categories.index_of(c.id)
            rows.append(old_weight[k])
            biases.append(old_bias[k])
        else:
            proto = synthetic_embeds[synthetic_ids == c.id].mean(0)
            rows.append(proto / proto.norm().clamp(min=1e-6) * scale)
            biases.append(old_bias[:-1].mean() if old_bias.numel() > 1 else old_bias[-1])
    rows.append(old_weight[-1])
    biases.append(old_bias[-1])
    return torch.stack(rows).float(), torch.stack(biases).float()


def head_tensors(head: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [K+1,E], bias [K+1]) float32 CPU copies from a ClassifierHead / nn.Linear / (weight, bias) pair."""
    if isinstance(head, tuple):
        weight, bias = head
    else:
        linear = getattr(head, "linear", head)
        weight, bias = linear.weight, linear.bias
    return weight.detach().float().cpu().clone(), bias.detach().float().cpu().clone()


def first_rows_per_category(embeds: torch.Tensor, ids: torch.Tensor, per_category: int | None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_category`` rows of every id (order kept): what the registry keeps of a category's
    synthetic rows after its own fit (its rows are independent draws, so the first n are a sample)."""
    if per_category is None or ids.numel() == 0:
        return embeds, ids
    order = torch.argsort(ids, stable=True)
    ids_sorted = ids[order]
    _, counts = torch.unique_consecutive(ids_sorted, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    keep = order[(torch.arange(len(ids_sorted)) - starts) < per_category].sort().values
    return embeds[keep], ids[keep]
