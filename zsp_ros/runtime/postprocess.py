"""Mask2Former inference post-processing: pure, vectorised functions of one image's outputs.

Inputs are one image's raw network outputs, already resized to the wanted output size:
``class_logits`` float [Q, K+1] (last = no-object) and ``mask_logits`` float [Q, h, w].
No Python loop runs over pixels or queries; the only loops build the small result lists.
"""
from __future__ import annotations

import torch


def _check(class_logits: torch.Tensor, mask_logits: torch.Tensor, name: str) -> None:
    if class_logits.dim() != 2 or mask_logits.dim() != 3:
        raise ValueError(f"{name}: class_logits must be [Q,K+1] and mask_logits [Q,h,w], got "
                         f"{tuple(class_logits.shape)} and {tuple(mask_logits.shape)}")
    if class_logits.shape[0] != mask_logits.shape[0]:
        raise ValueError(f"{name}: {class_logits.shape[0]} class rows but "
                         f"{mask_logits.shape[0]} masks")
    if class_logits.shape[1] < 2:
        raise ValueError(f"{name}: class_logits needs K >= 1 classes plus no-object, got "
                         f"{class_logits.shape[1]} columns")


def semantic_inference(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel class scores: ``sum_q softmax(class_q)[k] * sigmoid(mask_q)``.

    Returns:
        float [K, h, w] (not normalised; argmax over K gives the semantic label map).
    """
    _check(class_logits, mask_logits, "semantic_inference")
    probs = class_logits.float().softmax(-1)[:, :-1]
    return torch.einsum("qk,qhw->khw", probs, mask_logits.float().sigmoid())


def panoptic_inference(class_logits: torch.Tensor, mask_logits: torch.Tensor, *,
                       isthing: torch.Tensor, object_mask_threshold: float = 0.8,
                       overlap_threshold: float = 0.8) -> tuple[torch.Tensor, list[dict]]:
    """Mask2Former panoptic inference.

    Queries whose best class is not no-object and whose score exceeds
    ``object_mask_threshold`` are kept. Each pixel goes to the kept query with the highest
    ``score * sigmoid(mask)``; a query keeps the pixels it won that are also in its own mask
    (sigmoid >= 0.5) if it won at least ``overlap_threshold`` of its own mask. Stuff queries of
    one category merge into one segment. Segment ids count from 1 in query order (a merged stuff
    segment takes the place of its first query), exactly as Mask2Former numbers them.

    Args:
        class_logits: float [Q, K+1].
        mask_logits: float [Q, h, w].
        isthing: bool [K], per class index.
        object_mask_threshold: minimum class probability of a kept query.
        overlap_threshold: minimum (won pixels / own mask pixels) of a kept query.

    Returns:
        ``id_map`` int32 [h, w], 0 where no segment; ``segments``: one dict per segment, in id
        order, ``{"id": int, "class_index": int, "isthing": bool, "score": float (the highest
        class probability among its queries), "area": int (pixels in id_map)}``.
    """
    _check(class_logits, mask_logits, "panoptic_inference")
    num_classes = class_logits.shape[1] - 1
    isthing = torch.as_tensor(isthing, dtype=torch.bool, device=class_logits.device)
    if isthing.shape != (num_classes,):
        raise ValueError(f"panoptic_inference: isthing must be [K]=[{num_classes}], got "
                         f"{tuple(isthing.shape)}")
    h, w = mask_logits.shape[-2:]
    scores, labels = class_logits.float().softmax(-1).max(-1)                  # [Q]
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    probs = mask_logits.float()
    if not bool(keep.all()):                   # callers that filtered already skip two copies
        scores, labels, probs = scores[keep], labels[keep], probs[keep]        # [n], [n], [n,h,w]
    probs = probs.sigmoid()
    n = scores.shape[0]
    id_map = torch.zeros((h, w), dtype=torch.int32, device=mask_logits.device)
    if n == 0:
        return id_map, []

    # max(0).indices, not argmax(0): same first-maximum rule, ~6x faster on CPU for a reduction
    # over the leading dimension (measured: 2.5 ms -> 0.4 ms at n=2, 128x171).
    winner = (scores[:, None, None] * probs).max(0).indices                   # [h, w]
    query_ids = torch.arange(n, device=probs.device)
    own = probs >= 0.5                                                         # [n, h, w]
    in_own = own.gather(0, winner[None])[0]                                   # [h, w]: winner's own mask
    # areas by counting winners, not by [n,h,w] comparisons: won = pixels a query wins,
    # own = its own mask, final = won and in its own mask
    won_area = torch.bincount(winner.flatten(), minlength=n)
    own_area = own.flatten(1).sum(1)
    final_area = torch.bincount(winner[in_own], minlength=n)
    valid = ((won_area > 0) & (own_area > 0) & (final_area > 0)
             & (won_area.float() / own_area.clamp(min=1).float() >= overlap_threshold))

    # A segment is named by its first query: itself for things, the first valid query of the
    # same class for stuff. Segment ids are the ranks of those first queries.
    stuff = ~isthing[labels]
    same_stuff = ((labels[:, None] == labels[None, :]) & stuff[:, None] & stuff[None, :]
                  & valid[None, :])
    first = torch.where(same_stuff, query_ids[None, :], n).min(1).values
    first = torch.where(stuff & valid, first, query_ids)                       # [n], < n
    is_first = valid & (first == query_ids)
    rank = torch.cumsum(is_first.long(), 0)                                   # 1-based at firsts
    seg_of_query = torch.where(valid, rank[first], torch.zeros_like(rank))     # [n], 0 = dropped

    id_map = torch.where(in_own, seg_of_query[winner], 0).to(torch.int32)

    num_segments = int(is_first.sum())
    areas = torch.bincount(id_map.flatten().long(), minlength=num_segments + 1)[1:]
    seg_index = (seg_of_query - 1).clamp(min=0)
    seg_scores = torch.zeros(num_segments, device=scores.device).scatter_reduce(
        0, seg_index[valid], scores[valid], reduce="amax", include_self=False)
    first_queries = query_ids[is_first]
    seg_classes = labels[first_queries]
    segments = [{"id": i + 1, "class_index": int(c), "isthing": bool(isthing[c]),
                 "score": float(s), "area": int(a)}
                for i, (c, s, a) in enumerate(zip(seg_classes.tolist(), seg_scores.tolist(),
                                                  areas.tolist()))]
    return id_map, segments


def instance_inference(class_logits: torch.Tensor, mask_logits: torch.Tensor, *,
                       topk: int = 100, isthing: torch.Tensor | None = None
                       ) -> dict[str, torch.Tensor]:
    """Mask2Former instance inference: the ``topk`` best (query, class) pairs.

    Every query can give several instances (one per class). The score of an instance is its
    class probability times the mean mask probability inside its binary mask (logit > 0).

    Args:
        class_logits: float [Q, K+1]; mask_logits: float [Q, h, w].
        topk: number of (query, class) pairs kept before the thing filter (at most Q*K).
        isthing: optional bool [K]; when given, pairs of stuff classes are dropped (as
            Mask2Former does when panoptic inference is on).

    Returns:
        ``masks`` bool [T, h, w], ``scores`` float [T], ``class_index`` int64 [T],
        ``query_index`` int64 [T]; sorted by decreasing score.
    """
    _check(class_logits, mask_logits, "instance_inference")
    if topk < 1:
        raise ValueError(f"instance_inference: topk must be >= 1, got {topk}")
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    probs = class_logits.float().softmax(-1)[:, :-1]                          # [Q, K]
    top_scores, flat = probs.flatten().topk(min(topk, num_queries * num_classes))
    class_index = flat % num_classes
    query_index = flat // num_classes
    if isthing is not None:
        isthing = torch.as_tensor(isthing, dtype=torch.bool, device=class_logits.device)
        if isthing.shape != (num_classes,):
            raise ValueError(f"instance_inference: isthing must be [K]=[{num_classes}], got "
                             f"{tuple(isthing.shape)}")
        thing = isthing[class_index]
        top_scores, class_index, query_index = (top_scores[thing], class_index[thing],
                                                query_index[thing])
    logits = mask_logits.float()[query_index]                                  # [T, h, w]
    masks = logits > 0
    mask_score = ((logits.sigmoid() * masks).flatten(1).sum(1)
                  / (masks.flatten(1).sum(1) + 1e-6))
    scores = top_scores * mask_score
    order = scores.argsort(descending=True)
    return {"masks": masks[order], "scores": scores[order], "class_index": class_index[order],
            "query_index": query_index[order]}
