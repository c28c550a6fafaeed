"""Draw a panoptic map over its image: a colour per segment, outlines, and labels.

The one overlay drawer and the one category palette of the package:

- `draw_overlay(image, panoptic, segments)`: segment records (anything with ``id``,
  ``category_id``, ``name``, ``score``, ``isthing`` — the runtime's ``Segment`` is one) blended
  over the image. Used by `zsp segment`, `zsp run`, the ROS node's ``overlay`` topic and `zsp demo`.
- `annotation_overlay(image, panoptic, segments_info, categories)`: the same drawing of a COCO
  panoptic annotation (ground truth), optionally enlarged; used by `zsp demo` and the data preview.
- `category_color` / `segment_colors`: the palette (stuff: the category's colour; things: a
  per-instance variant of it).

Vectorised over pixels (palette lookup, shifted comparisons); the only loop draws one text label
per segment. Needs numpy; Pillow for labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

_GOLDEN = 0.618033988749895


class SegmentLike(Protocol):
    """What the drawer reads of a segment record (zsp_ros.runtime.result.Segment has it all)."""
    id: int
    category_id: int
    name: str
    score: float
    isthing: bool


@dataclass(frozen=True)
class AnnotatedSegment:
    """A ground-truth segment to draw: its label reads ``"name 1.00"`` like a certain prediction."""
    id: int
    category_id: int
    name: str
    isthing: bool
    score: float = 1.0


def category_color(category_id: int) -> np.ndarray:
    """A stable, well-spread RGB colour (uint8 [3]) for a category id."""
    hue = (category_id * _GOLDEN) % 1.0
    return _hsv_to_rgb(np.array([hue]), np.array([0.65]), np.array([0.95]))[0]


def segment_colors(segments: Sequence[SegmentLike]) -> np.ndarray:
    """uint8 [n,3]: stuff segments take their category's colour, things a per-instance variant of it."""
    if not segments:
        return np.zeros((0, 3), dtype=np.uint8)
    cat = np.array([s.category_id for s in segments], dtype=np.float64)
    sid = np.array([s.id for s in segments], dtype=np.float64)
    thing = np.array([s.isthing for s in segments], dtype=bool)
    hue = (cat * _GOLDEN) % 1.0
    sat = np.where(thing, 0.45 + 0.4 * ((sid * 0.37) % 1.0), 0.65)
    val = np.where(thing, 0.75 + 0.25 * ((sid * 0.71) % 1.0), 0.95)
    return _hsv_to_rgb(hue, sat, val)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    rgb = table[i, np.arange(len(h))]
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def boundaries(id_map: np.ndarray) -> np.ndarray:
    """bool [H,W]: pixels whose right or lower neighbour has another id (segment outlines)."""
    edge = np.zeros(id_map.shape, dtype=bool)
    diff_x = id_map[:, 1:] != id_map[:, :-1]
    diff_y = id_map[1:, :] != id_map[:-1, :]
    edge[:, 1:] |= diff_x
    edge[:, :-1] |= diff_x
    edge[1:, :] |= diff_y
    edge[:-1, :] |= diff_y
    return edge


def draw_overlay(image: np.ndarray, panoptic: np.ndarray, segments: Sequence[SegmentLike], *,
                 alpha: float = 0.55, outlines: bool = True, labels: bool = True) -> np.ndarray:
    """Blend segment colours over ``image``.

    Args:
        image: uint8 [H,W,3] RGB.
        panoptic: int [H,W], 0 = void (left as the image), else a segment id.
        segments: records of the ids in ``panoptic`` (others are drawn grey).
        alpha: colour weight inside segments, in [0, 1].
        outlines: draw segment borders in white.
        labels: write "name score" at each segment's centre (needs Pillow).

    Returns:
        uint8 [H,W,3] RGB, a new array.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H,W,3], got {image.dtype} {image.shape}")
    if panoptic.shape != image.shape[:2]:
        raise ValueError(f"panoptic map {panoptic.shape} does not match image {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ids = panoptic.astype(np.int64)
    top = int(ids.max()) if ids.size else 0
    palette = np.full((max(top, max((s.id for s in segments), default=0)) + 1, 3), 128, dtype=np.float32)
    if segments:
        palette[[s.id for s in segments]] = segment_colors(segments)
    colour = palette[ids]                                                   # [H,W,3]
    inside = (ids > 0)[..., None]
    out = np.where(inside, (1 - alpha) * image + alpha * colour, image.astype(np.float32))
    if outlines:
        out[boundaries(ids) & (ids > 0)] = 255.0
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if labels and segments:
        out = _draw_labels(out, ids, segments)
    return out


def annotation_overlay(image: np.ndarray, panoptic: np.ndarray, segments_info: Sequence[Mapping[str, Any]],
                       categories: Mapping[int, Mapping[str, Any]], *, scale: int = 1, alpha: float = 0.55,
                       outlines: bool = True, labels: bool = True) -> np.ndarray:
    """`draw_overlay` of a COCO panoptic annotation (ground truth).

    Args:
        image: uint8 [H,W,3] RGB.
        panoptic: int [H,W] segment ids >= 0, 0 = void.
        segments_info: COCO panoptic segments ``{"id", "category_id", ...}``.
        categories: category id -> ``{"name", "isthing", ...}`` (``isthing`` absent: a thing).
        scale: integer enlargement of image and map (nearest) before drawing, so outlines stay
            thin and labels sharp on a bigger picture.
        alpha, outlines, labels: as for `draw_overlay`; labels read ``"name 1.00"``.

    Returns:
        uint8 [H*scale, W*scale, 3] RGB, a new array.

    Segment ids are renumbered 1..K in id order first (0 stays void), so a COCO id up to 256³ - 1
    costs no bigger palette; ids that are already 1..K keep their numbers, hence their colours.
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    ids = np.asarray(panoptic).astype(np.int64)
    given = np.asarray([int(s["id"]) for s in segments_info], dtype=np.int64)
    table = np.unique(np.concatenate([np.zeros(1, np.int64), given, ids.ravel()]))
    compact = np.searchsorted(table, ids)
    segments = []
    for s, new_id in zip(segments_info, np.searchsorted(table, given)):
        cat = categories[s["category_id"]]
        segments.append(AnnotatedSegment(id=int(new_id), category_id=int(s["category_id"]), name=str(cat["name"]),
                                         isthing=bool(cat.get("isthing", True))))
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, 0), scale, 1)
        compact = np.repeat(np.repeat(compact, scale, 0), scale, 1)
    return draw_overlay(image, compact, segments, alpha=alpha, outlines=outlines, labels=labels)


def _draw_labels(canvas: np.ndarray, ids: np.ndarray, segments: Sequence[SegmentLike]) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    h, w = ids.shape
    counts = np.bincount(ids.ravel(), minlength=ids.max() + 1).astype(np.float64)
    ys, xs = np.indices((h, w), sparse=True)
    cy = np.bincount(ids.ravel(), weights=np.broadcast_to(ys, (h, w)).ravel(), minlength=len(counts))
    cx = np.bincount(ids.ravel(), weights=np.broadcast_to(xs, (h, w)).ravel(), minlength=len(counts))
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default()
    for s in segments:
        if s.id >= len(counts) or counts[s.id] == 0:
            continue
        text = f"{s.name} {s.score:.2f}"
        x, y = cx[s.id] / counts[s.id], cy[s.id] / counts[s.id]
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        x0 = int(min(max(x - tw / 2, 0), max(w - tw - 2, 0)))
        y0 = int(min(max(y - th / 2, 0), max(h - th - 2, 0)))
        draw.rectangle((x0, y0, x0 + tw + 2, y0 + th + 2), fill=(0, 0, 0))
        draw.text((x0 + 1 - left, y0 + 1 - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(pil).copy()
