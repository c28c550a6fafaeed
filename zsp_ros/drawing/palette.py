"""The category palette: one fixed colour per category id, the same in every frame, run and program.

- `category_color(id)` / `category_colors(ids)`: hue = frac(id x golden ratio), saturation 0.65,
  value 0.95 (HSV), so neighbouring ids differ strongly and an id's colour never depends on which
  other categories exist. Id 0 is no category (void) and is black in colour masks.
- `segment_colors(segments)`: stuff takes its category's colour, things a per-instance variant.
- `paint_color_mask(panoptic, segments, out=...)`: the plain colour mask (rgb8, no text) of a
  panoptic map, written into a caller's buffer when given (the node reuses its message buffer).

Needs numpy only.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

GOLDEN = 0.618033988749895
VOID_COLOR = (0, 0, 0)


def category_colors(category_ids: Any) -> np.ndarray:
    """uint8 [n, 3] RGB for an int sequence/array of n category ids (the fixed palette; id 0: black)."""
    ids = np.asarray(category_ids, dtype=np.float64).reshape(-1)
    rgb = hsv_to_rgb((ids * GOLDEN) % 1.0, np.full(ids.shape, 0.65), np.full(ids.shape, 0.95))
    rgb[ids == 0] = VOID_COLOR
    return rgb


def category_color(category_id: int) -> np.ndarray:
    """A stable, well-spread RGB colour (uint8 [3]) for one category id."""
    return np.asarray(category_colors([category_id])[0], dtype=np.uint8)


def segment_colors(segments: Sequence[Any]) -> np.ndarray:
    """uint8 [n,3]: stuff segments take their category's colour, things a per-instance variant of it.

    ``segments``: records with ``id``, ``category_id`` and ``isthing``.
    """
    if not segments:
        return np.zeros((0, 3), dtype=np.uint8)
    cat = np.array([s.category_id for s in segments], dtype=np.float64)
    sid = np.array([s.id for s in segments], dtype=np.float64)
    thing = np.array([s.isthing for s in segments], dtype=bool)
    hue = (cat * GOLDEN) % 1.0
    sat = np.where(thing, 0.45 + 0.4 * ((sid * 0.37) % 1.0), 0.65)
    val = np.where(thing, 0.75 + 0.25 * ((sid * 0.71) % 1.0), 0.95)
    return hsv_to_rgb(hue, sat, val)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """uint8 [n, 3] from hue, saturation, value arrays [n] in [0, 1]."""
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    rgb = table[i, np.arange(len(h))]
    return np.asarray(np.clip(rgb * 255.0 + 0.5, 0, 255), dtype=np.uint8)


def paint_color_mask(panoptic: np.ndarray, segments: Sequence[Any], *, out: np.ndarray | None = None) -> np.ndarray:
    """The colour mask of a panoptic map: each pixel its segment's category colour, void black.

    Args:
        panoptic: int [H, W] segment ids, 0 = void; ids without a record are painted black too.
        segments: records with ``id`` and ``category_id`` (the runtime's Segment has them).
        out: uint8 [H, W, 3] C-contiguous buffer to write into (no allocation), or None.

    Returns:
        uint8 [H, W, 3] RGB (``out`` when given).
    """
    ids = np.asarray(panoptic)
    if ids.ndim != 2:
        raise ValueError(f"panoptic map must be [H, W], got shape {ids.shape}")
    if out is not None and (out.shape != ids.shape + (3,) or out.dtype != np.uint8):
        raise ValueError(f"out must be uint8 {ids.shape + (3,)}, got {out.dtype} {out.shape}")
    top = max([int(s.id) for s in segments] + [int(ids.max()) if ids.size else 0, 0])
    lut = np.zeros((top + 1, 3), np.uint8)
    if segments:
        lut[[int(s.id) for s in segments]] = category_colors([int(s.category_id) for s in segments])
    if out is None:
        out = np.empty(ids.shape + (3,), np.uint8)
    np.take(lut, ids, axis=0, out=out, mode="clip")        # ids < 0 (never produced) clip to void
    return out
