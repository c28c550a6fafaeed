"""Classifier heads fitted on REAL query embeddings only: the benchmark's two reference points.

- ``seen_only``: the head fitted on the zero-shot bank (seen categories + no object). It can
  never predict an unseen category, so its unseen PQ is 0 by construction: PADing's lower
  reference for the seen side.
- ``oracle_head``: the head fitted on the supervised bank (every training image, every
  category, unseen ones included) of the SAME frozen segmenter. It is an upper bound on what a
  perfect generator could give this segmenter - cheaper than, and different from, the paper's
  oracle (a segmenter trained on all categories, `zsp train oracle`), whose masks and
  embeddings also learn the unseen categories.

Both use the final-head recipe of stage 3 (`zsp_ros.pading.head_fit.fit_head` with the PADing
config's ``final_head`` settings, the same per-category cap and no-object proportion) so the
only difference from a PADing head is the absence of generated embeddings.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from zsp_ros.model.classifier import ClassifierHead
from zsp_ros.pading.head_fit import fit_head
from zsp_ros.training.feature_bank import FeatureBank


def bank_labels(category_ids: torch.Tensor, categories: Sequence[dict[str, Any]]) -> torch.Tensor:
    """Head labels [M] in [0, K] of bank rows: index into ``categories``, K for id 0 (no object).

    Raises ValueError if a row's category is not in ``categories``.
    """
    k = len(categories)
    index = {int(c["id"]): i for i, c in enumerate(categories)}
    index[0] = k
    present = set(torch.unique(category_ids).tolist())
    missing = sorted(present - set(index))
    if missing:
        raise ValueError(f"bank rows have category ids {missing[:10]} that the head's {k} categories lack")
    lut = torch.full((max(index) + 1,), -1, dtype=torch.int64)
    lut[torch.tensor(list(index))] = torch.tensor(list(index.values()))
    return lut[category_ids.long()]


def subsample_rows(labels: torch.Tensor, *, num_classes: int, max_per_class: int | None,
                   seed: int) -> torch.Tensor:
    """Sorted row indices keeping at most ``max_per_class`` rows of each class < ``num_classes``
    (seeded) and the no-object rows (label ``num_classes``) by the same overall fraction, so the
    object / no-object proportion - the head's no-object prior - is unchanged."""
    gen = torch.Generator().manual_seed(seed)
    keep, kept, total = [], 0, 0
    for c in torch.unique(labels[labels < num_classes]).tolist():
        rows = torch.nonzero(labels == c).squeeze(1)
        total += rows.numel()
        if max_per_class is not None and rows.numel() > max_per_class:
            rows = rows[torch.randperm(rows.numel(), generator=gen)[:max_per_class]]
        kept += rows.numel()
        keep.append(rows)
    no_object = torch.nonzero(labels == num_classes).squeeze(1)
    fraction = kept / total if total else 1.0
    count = min(no_object.numel(), max(1, round(fraction * no_object.numel())))
    keep.append(no_object[torch.randperm(no_object.numel(), generator=gen)[:count]])
    return torch.sort(torch.cat(keep)).values


def fit_real_head(bank: FeatureBank, categories: Sequence[dict[str, Any]], *, final_head: dict[str, Any],
                  no_object_weight: float, seed: int, category_weight: float = 1.0
                  ) -> tuple[ClassifierHead, dict[str, float]]:
    """Fit ``Linear(E, K + 1)`` over ``categories`` (+ no object) on the bank's real rows.

    Args:
        bank: a feature bank whose row categories are all in ``categories`` (or 0).
        categories: the head's categories ``[{"id", ...}]``; row k of the head = categories[k].
        final_head: the PADing config's ``final_head`` section (max_rows_per_class, optimizer,
            steps, lr, weight_decay).
        no_object_weight, category_weight: cross-entropy class weights.
        seed: seeds the row subsample and the head's init. The fit runs on one thread, so the
            head does not depend on the process's thread count (L-BFGS amplifies summation-order
            differences: 0.2 PQ between 1 and 2 threads was seen).

    Returns:
        (head, {"rows": M used, "train_accuracy": fraction}).
    """
    k = len(categories)
    labels = bank_labels(bank.category_ids, categories)
    rows = subsample_rows(labels, num_classes=k, max_per_class=final_head["max_rows_per_class"], seed=seed + 1)
    x, y = bank.embeds[rows].float(), labels[rows]
    weights = torch.full((k + 1,), float(category_weight))
    weights[-1] = float(no_object_weight)
    head = fit_head(x, y, weights, steps=final_head["steps"], lr=final_head["lr"], optimizer=final_head["optimizer"],
                    weight_decay=final_head["weight_decay"], seed=seed, num_threads=1)
    with torch.no_grad():
        accuracy = float((head(x).argmax(1) == y).float().mean())
    return head, {"rows": float(rows.numel()), "train_accuracy": accuracy}
