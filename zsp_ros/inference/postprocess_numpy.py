"""numpy twins of the compiled post-processing kernels (postprocess_kernels.py): the reference and the fallback.

Each function takes the same arguments and returns the same values, bit for bit, as the kernel of
the same name (tests/test_runtime_postprocess.py compares them on random scenes). host_ops.py
chooses between the two.
"""
from __future__ import annotations

import numpy as np


def first_max_tag(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tags [n,1,..], first_tag [...]): maxima over axis 0 tagged n, n-1, .., 1 by position; the
    largest tag at a position is n - (index of its first maximum); NaN-maximum positions get 1.

    So ``n - first_tag`` is ``argmax(0)`` with ties to the first index. numpy's and torch's
    ``argmax(0)`` over a short leading axis are not vectorised (~0.5 ms for n = 4 at 128 x 171 on
    this CPU); this is one ``max`` reduction, one comparison and one small-integer ``max`` (~45 us).
    """
    tags = _countdown(values.shape[0], values.ndim)
    first_tag = ((values == values.max(0)) * tags).max(0)
    np.maximum(first_tag, 1, out=first_tag)                                  # NaN -> index n - 1
    return tags, first_tag


def _countdown(n: int, ndim: int) -> np.ndarray:
    """n, n-1, .., 1 in the smallest unsigned type that holds n, shaped [n, 1, ...] for ``ndim`` dims."""
    return np.arange(n, 0, -1, dtype=_uint_for(n)).reshape(n, *([1] * (ndim - 1)))


def _uint_for(n: int) -> type[np.unsignedinteger]:
    """The smallest unsigned numpy type that holds 0..n (small types keep [n,h,w] work cheap)."""
    return np.uint8 if n < 256 else np.uint16 if n < 65536 else np.uint32


def panoptic_assign(probs: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    stuff_of_class: np.ndarray, overlap_threshold: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Twin of `postprocess_kernels.panoptic_assign` (same arguments and results); overwrites ``probs``.

    Vectorised over [n, h, w]: on CPU numpy's comparisons and small-integer reductions are ~10x
    cheaper than torch's (bool-valued torch comparisons are not vectorised in this CPU build).
    """
    n = probs.shape[0]
    own = probs >= 0.5                                                         # [n, h, w]
    weighted = np.multiply(probs, scores[:, None, None], out=probs)            # in place: probs not needed again
    tags, first_tag = first_max_tag(weighted)                                 # first_tag = n - winner
    won = tags == first_tag                                                    # [n, h, w], one per pixel
    kept = won & own                                                           # won and in its own mask
    # per-query pixel counts as uint8 sums (2x faster than bool sums; int32 holds any image)
    won_area, own_area, final_area = (
        m.view(np.uint8).reshape(n, -1).sum(1, dtype=np.int32) for m in (won, own, kept))

    # final > 0 implies won > 0 and own > 0 (kept = won & own)
    valid = (final_area > 0) & (won_area / np.maximum(own_area, 1) >= overlap_threshold)
    # A segment is named by its first query: itself for things, the first valid query of the
    # same class for stuff. Segment ids are the ranks of those first queries.
    query_ids = np.arange(n)
    stuff = stuff_of_class[labels]
    same_stuff = ((labels[:, None] == labels[None, :]) & stuff[:, None] & stuff[None, :]
                  & valid[None, :])
    first = np.where(same_stuff, query_ids[None, :], n).min(1)
    first = np.where(stuff & valid, first, query_ids)                         # [n], < n
    is_first = valid & (first == query_ids)
    rank = np.cumsum(is_first)                                                # 1-based at firsts
    seg_of_query = np.where(valid, rank[first], 0).astype(np.int32)           # [n], 0 = dropped
    num_segments = int(rank[-1])
    areas = np.bincount(seg_of_query, weights=final_area, minlength=num_segments + 1)[1:].astype(np.int64)
    seg_scores = np.full(num_segments, -np.inf, dtype=np.float32)
    np.maximum.at(seg_scores, seg_of_query[valid] - 1, scores[valid])
    # each pixel takes the segment id of the query that keeps it (at most one does; 0 if none)
    ids = seg_of_query.astype(_uint_for(n))[:, None, None]                    # [n,1,1]
    id_map = (kept * ids).max(0).astype(np.int32)                             # int32 [h, w]
    return id_map, labels[is_first], seg_scores, areas


def segment_extents(id_map: np.ndarray, num_segments: int, row_weight: np.ndarray, col_weight: np.ndarray,
                    first_row: np.ndarray, last_row: np.ndarray, first_col: np.ndarray, last_col: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Twin of `postprocess_kernels.segment_extents`: (area float [S], box int64 [S,4] x,y,w,h)."""
    h, w = id_map.shape
    reached = (row_weight[:, None] > 0) & (col_weight[None, :] > 0)                      # bool [h,w]
    ids = id_map if reached.all() else np.where(reached, id_map, 0)
    member = ids[None] == np.arange(1, num_segments + 1, dtype=id_map.dtype)[:, None, None]   # [S,h,w]
    # input pixels per segment: row weights . member . column weights (exact: integer sums
    # in float32 below 2**24 pixels, float64 above); 5x faster than a weighted bincount
    areas = (member.view(np.uint8).astype(row_weight.dtype) @ col_weight) @ row_weight
    rows, cols = member.any(2), member.any(1)                                          # [S,h], [S,w]
    y0, y1 = rows.argmax(1), h - 1 - rows[:, ::-1].argmax(1)
    x0, x1 = cols.argmax(1), w - 1 - cols[:, ::-1].argmax(1)
    top, bottom = first_row[y0], last_row[y1]
    left, right = first_col[x0], last_col[x1]
    boxes = np.stack([left, top, right - left + 1, bottom - top + 1], 1)
    return areas, np.where((areas > 0)[:, None], boxes, 0)


def first_argmax(values: np.ndarray) -> np.ndarray:
    """Twin of `postprocess_kernels.first_argmax`: index of the first maximum over axis 0, float [n, m] -> [m]."""
    n: int = values.shape[0]
    return n - first_max_tag(values)[1].astype(np.intp)
