"""Compiled (numba) loops for the runtime's post-processing on the host, each equal to a numpy reference.

Why: after a 30 ms network forward on this CPU, every distinct numpy operation of the post-processing
runs with cold caches (measured: 5-45 us each the first time after the forward, 1-4 us hot), and the
numpy path is ~60 such operations over arrays of a few queries. One compiled loop per stage touches
far less code and makes one pass over the pixels instead of a dozen. Each kernel has a numpy twin of the same name in
postprocess_numpy.py that stays the reference and the fallback; host_ops.py dispatches between them.

``AVAILABLE`` is False when numba is not installed (or ``ZSP_POSTPROCESS=numpy`` is set): callers then
use the numpy path. Kernels compile on first use (about a second each) and are cached on disk by
numba (``cache=True``), so a later process loads them in ~0.5 s (`warm_up`, called when a Segmenter
is built); they release the GIL.
NaN probabilities are not supported (the two paths may then pick different maxima).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar, cast

import numpy as np

try:
    if os.environ.get("ZSP_POSTPROCESS", "").strip().lower() == "numpy":
        raise ImportError("ZSP_POSTPROCESS=numpy")
    import numba
    AVAILABLE = True
except ImportError:                                   # pragma: no cover - exercised where numba is absent
    AVAILABLE = False

_F = TypeVar("_F", bound=Callable[..., object])


def njit(*, cache: bool, nogil: bool) -> Callable[[_F], _F]:
    """``numba.njit(cache=..., nogil=...)``, or without numba a no-op: the kernels stay importable (and plain Python).

    Typed as keeping the kernel's signature: numba's ``Dispatcher`` is called with the kernel's
    arguments and returns its results (numba ignores the annotations).
    """
    if not AVAILABLE:
        return lambda fn: fn
    return cast("Callable[[_F], _F]", numba.njit(cache=cache, nogil=nogil))


@njit(cache=True, nogil=True)
def panoptic_assign(probs: np.ndarray, scores: np.ndarray, labels: np.ndarray, stuff_of_class: np.ndarray,
                    overlap_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mask2Former's panoptic pixel assignment for the kept queries, in two passes over the pixels.

    Args:
        probs: float32 [n, h, w] mask probabilities (sigmoid) of the kept queries, C-contiguous.
        scores: float32 [n] class probability of each; labels: int64 [n] its class index.
        stuff_of_class: bool [K], True for stuff classes.
        overlap_threshold: float, minimum won / own pixels of a kept query.

    Returns:
        (id_map int32 [h, w] (0 = no segment), seg_class int64 [S], seg_score float32 [S],
        seg_area int64 [S]) with segments numbered 1..S in Mask2Former's order (by first query).
    """
    n, h, w = probs.shape
    flat = probs.reshape(n, h * w)
    # pass 1, query by query over contiguous rows: first maximum of score x probability (all >= 0,
    # so query 0 always beats the -inf start), and each query's own-mask size
    best = np.full(h * w, -np.inf, np.float32)
    winner = np.zeros(h * w, np.int32)
    own = np.zeros(n, np.int64)
    for q in range(n):
        row, score, count = flat[q], scores[q], 0
        for i in range(h * w):
            p = row[i]
            count += p >= 0.5
            v = p * score
            b = best[i]
            better = v > b                            # strict: ties go to the first query
            best[i] = v if better else b              # branch-free selects
            winner[i] = q if better else winner[i]
        own[q] = count
    # pass 2, pixel by pixel: won pixels, and those also in the winner's own mask (kept; else -1)
    won = np.zeros(n, np.int64)
    final = np.zeros(n, np.int64)
    for i in range(h * w):
        b = winner[i]
        won[b] += 1
        if flat[b, i] >= 0.5:
            final[b] += 1
        else:
            winner[i] = -1

    seg_of_query = np.zeros(n, np.int32)
    first_of_class = np.full(stuff_of_class.shape[0], -1, np.int64)
    seg_class = np.empty(n, np.int64)
    seg_score = np.empty(n, np.float32)
    seg_area = np.zeros(n, np.int64)
    count = 0
    for q in range(n):
        if final[q] == 0 or won[q] / max(own[q], 1) < overlap_threshold:
            continue
        c = labels[q]
        if stuff_of_class[c] and first_of_class[c] >= 0:          # stuff: merge into the class's segment
            s = seg_of_query[first_of_class[c]]
            seg_score[s - 1] = max(seg_score[s - 1], scores[q])
        else:
            count += 1
            s = count
            seg_class[s - 1] = c
            seg_score[s - 1] = scores[q]
            if stuff_of_class[c]:
                first_of_class[c] = q
        seg_of_query[q] = s
        seg_area[s - 1] += final[q]

    id_map = np.zeros(h * w, np.int32)
    for i in range(h * w):
        b = winner[i]
        if b >= 0:
            id_map[i] = seg_of_query[b]
    return id_map.reshape(h, w), seg_class[:count].copy(), seg_score[:count].copy(), seg_area[:count].copy()


@njit(cache=True, nogil=True)
def segment_extents(id_map: np.ndarray, num_segments: int, row_weight: np.ndarray, col_weight: np.ndarray,
                    first_row: np.ndarray, last_row: np.ndarray, first_col: np.ndarray, last_col: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Area and box of each segment at the input resolution, from the small id map and its resize plan.

    Args:
        id_map: int32 [h, w], ids 0..num_segments (0 = none).
        row_weight / col_weight: float [h] / [w], input rows (columns) that read each small row (column).
        first_row / last_row: int64 [h], the first / last input row reading each small row (any value
            where row_weight is 0); first_col / last_col likewise over columns.

    Returns:
        (area float64 [S] input pixels, box int64 [S, 4] as x, y, width, height in input pixels;
        zeros for a segment no input pixel reads).
    """
    h, w = id_map.shape
    area = np.zeros(num_segments, np.float64)
    in_row = np.zeros((num_segments, h), np.bool_)    # segment s has a reached pixel in small row y
    in_col = np.zeros((num_segments, w), np.bool_)
    for y in range(h):
        ry = row_weight[y]
        if ry <= 0:
            continue                                  # no input row reads this small row
        for x in range(w):
            s = id_map[y, x] - 1
            cx = col_weight[x]
            if s >= 0 and cx > 0:
                area[s] += ry * cx
                in_row[s, y] = True
                in_col[s, x] = True
    box = np.zeros((num_segments, 4), np.int64)
    for s in range(num_segments):
        if area[s] <= 0:
            continue
        y0, y1, x0, x1 = 0, h - 1, 0, w - 1
        while not in_row[s, y0]:
            y0 += 1
        while not in_row[s, y1]:
            y1 -= 1
        while not in_col[s, x0]:
            x0 += 1
        while not in_col[s, x1]:
            x1 -= 1
        top, left = first_row[y0], first_col[x0]
        box[s, 0] = left
        box[s, 1] = top
        box[s, 2] = last_col[x1] - left + 1
        box[s, 3] = last_row[y1] - top + 1
    return area, box


@njit(cache=True, nogil=True)
def first_argmax(values: np.ndarray) -> np.ndarray:
    """Index of the first maximum over axis 0: float [n, m] -> int64 [m]."""
    n, m = values.shape
    out = np.zeros(m, np.int64)
    best = values[0].copy()
    for k in range(1, n):
        row = values[k]
        for i in range(m):
            if row[i] > best[i]:
                best[i] = row[i]
                out[i] = k
    return out


def warm_up() -> None:
    """Compile (first run on this machine, ~1 s each) or load from numba's cache (later runs, ~0.3 s in
    all) every kernel for the dtypes the runtime passes, so that the first camera frame does not pay
    for it. A no-op without numba."""
    if not AVAILABLE:
        return
    probs = np.full((2, 2, 3), 0.75, np.float32)
    id_map, *_ = panoptic_assign(probs, np.ones(2, np.float32), np.zeros(2, np.int64), np.zeros(1, np.bool_), 0.5)
    index = np.arange(2, dtype=np.int64)
    for weight_dtype in (np.float32, np.float64):                 # NearestResize.weight_dtype
        ones = np.ones(3, weight_dtype)
        segment_extents(id_map, 1, ones[:2], ones, index, index, np.arange(3, dtype=np.int64),
                        np.arange(3, dtype=np.int64))
    first_argmax(probs.reshape(2, 6))
