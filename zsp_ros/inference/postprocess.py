"""Mask2Former inference post-processing: pure, vectorised functions of one image's outputs.

Inputs are one image's raw network outputs, already resized to the wanted output size:
``class_logits`` float [Q, K+1] (last = no-object) and ``mask_logits`` float [Q, h, w].
No Python loop runs over pixels or queries; the only loops build the small result lists.

`DEFAULT_OBJECT_MASK_THRESHOLD` / `DEFAULT_OVERLAP_THRESHOLD` (0.8 / 0.8) are Mask2Former's panoptic
thresholds: the one definition of the defaults used by the runtime, the kit (when its manifest
records none), training evaluation and the command lines.
"""
from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch

from zsp_ros.inference import host_ops

DEFAULT_OBJECT_MASK_THRESHOLD = 0.8   # Mask2Former: minimum class probability of a kept query
DEFAULT_OVERLAP_THRESHOLD = 0.8       # Mask2Former: minimum won / own mask pixels of a kept query


class SegmentDict(TypedDict):
    """One segment of `panoptic_inference` / `panoptic_from_kept` (a plain dict at run time)."""
    id: int
    class_index: int
    isthing: bool
    score: float
    area: int


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
    probs = class_logits.float().softmax(-1)[:, :-1]                          # [Q, K]
    q, h, w = mask_logits.shape
    # one matrix product [K,Q] @ [Q,h*w]: ~3x faster than the einsum on CPU at runtime sizes
    return (probs.t() @ mask_logits.float().reshape(q, h * w).sigmoid()).view(-1, h, w)


def semantic_labels(class_probs: torch.Tensor, mask_logits: torch.Tensor) -> np.ndarray:
    """The semantic label map: per pixel, the class index with the highest `semantic_inference` score.

    Args:
        class_probs: float [Q, K+1] softmax probabilities (last = no-object), any device.
        mask_logits: float [Q, h, w], same device.

    Returns:
        numpy intp [h, w] on the host, class indices in [0, K); ties go to the lower class index
        (a NaN score maximum gives K - 1).

    The scores are class-major ([K, h*w], one matrix product) and the argmax over K is `postprocess_numpy.first_max_tag`'s
    (numpy's ``argmax`` along either axis is ~3x slower at these sizes: it loops over rows).
    """
    q, h, w = mask_logits.shape
    scores = (class_probs[:, :-1].float().t() @ mask_logits.float().reshape(q, h * w).sigmoid()).cpu().numpy()
    return host_ops.first_argmax(scores).reshape(h, w)


def panoptic_inference(class_logits: torch.Tensor, mask_logits: torch.Tensor, *,
                       isthing: torch.Tensor, object_mask_threshold: float = DEFAULT_OBJECT_MASK_THRESHOLD,
                       overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD) -> tuple[torch.Tensor, list[SegmentDict]]:
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
        ``id_map`` int32 [h, w] on the host (CPU), 0 where no segment; ``segments``: one dict per segment, in id
        order, ``{"id": int, "class_index": int, "isthing": bool, "score": float (the highest
        class probability among its queries), "area": int (pixels in id_map)}``.
    """
    _check(class_logits, mask_logits, "panoptic_inference")
    num_classes = class_logits.shape[1] - 1
    isthing = torch.as_tensor(isthing, dtype=torch.bool)
    if isthing.shape != (num_classes,):
        raise ValueError(f"panoptic_inference: isthing must be [K]=[{num_classes}], got "
                         f"{tuple(isthing.shape)}")
    kept, scores, labels = keep_queries(class_logits.float().softmax(-1).cpu().numpy(), object_mask_threshold)
    masks = mask_logits.index_select(0, torch.from_numpy(kept).to(mask_logits.device))
    return panoptic_from_kept(scores, labels, masks, isthing=isthing.cpu().numpy(),
                              overlap_threshold=overlap_threshold)


def keep_queries(class_probs: np.ndarray, object_mask_threshold: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask2Former's first filter: queries whose best class is not no-object and scores above the threshold.

    Args:
        class_probs: numpy float [Q, K+1] softmax probabilities (last = no-object), on the host.

    Returns:
        (kept query indices int64 [n], their scores float [n], their class indices int64 [n]).
    """
    labels = class_probs.argmax(1)
    scores = np.take_along_axis(class_probs, labels[:, None], 1)[:, 0]
    kept = np.flatnonzero((labels != class_probs.shape[1] - 1) & (scores > object_mask_threshold))
    return kept, scores[kept], labels[kept]


def panoptic_from_kept(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                       mask_logits: torch.Tensor, *, isthing: np.ndarray,
                       overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD) -> tuple[torch.Tensor, list[SegmentDict]]:
    """The pixel assignment of `panoptic_inference` for queries already kept by their class score.

    Args:
        scores: float [n] class probability of each kept query; labels: int [n] its class index
            (tensors on any device, or numpy).
        mask_logits: float [n, h, w] (any device).
        isthing: numpy bool [K], per class index.
        overlap_threshold: as in `panoptic_inference`.

    Returns:
        as `panoptic_inference`, with ``id_map`` on the host (CPU).

    The sigmoid runs in torch on the masks' device; everything after it runs on the host, after one
    copy of the kept probabilities ([n, h, w], n ~ a few; the id map is wanted on the host anyway):
    in one compiled pass (`postprocess_kernels.panoptic_assign`) where numba is installed, else in
    its numpy twin (`host_ops` chooses).
    """
    n = scores.shape[0]
    h, w = mask_logits.shape[-2:]
    if n == 0:
        return torch.zeros((h, w), dtype=torch.int32), []
    probs = np.ascontiguousarray(mask_logits.float().sigmoid().cpu().numpy())  # [n, h, w] host
    scores_np = np.ascontiguousarray(_host(scores), dtype=np.float32)         # fixed dtypes and layouts:
    labels_np = np.ascontiguousarray(_host(labels), dtype=np.int64)           # one compiled kernel serves all
    stuff_of_class = ~np.asarray(isthing, dtype=bool)
    assign = host_ops.panoptic_assign
    id_map, seg_class, seg_score, seg_area = assign(probs, scores_np, labels_np, stuff_of_class,
                                                    float(overlap_threshold))
    segments: list[SegmentDict] = [
        {"id": i + 1, "class_index": int(c), "isthing": not bool(stuff_of_class[c]), "score": float(sc),
         "area": int(a)} for i, (c, sc, a) in enumerate(zip(seg_class, seg_score, seg_area))]
    return torch.from_numpy(id_map), segments


def _host(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A tensor (any device) or array as a numpy array on the host."""
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


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
