"""Draw a panoptic map over its image: a colour per segment, outlines, and labels.

The one overlay drawer and the one category palette of the package:

- `draw_overlay(image, panoptic, segments)`: segment records (anything with ``id``,
  ``category_id``, ``name``, ``score``, ``isthing`` — the runtime's ``Segment`` is one) blended
  over the image. Used by `zsp segment`, `zsp run`, the ROS node's ``overlay`` topic and `zsp demo`.
- `annotation_overlay(image, panoptic, segments_info, categories)`: the same drawing of a COCO
  panoptic annotation (ground truth), optionally enlarged; used by `zsp demo` and the data preview.
- `category_color` / `segment_colors`: the palette (zsp_ros.drawing.palette, re-exported).

Legible at any size: labels are written in a font scaled to the picture (`label_font_px`), kept
inside it, and never overlap (largest segments first; a label that collides is moved up or down by
its own height, a few times, then skipped); a small frame is enlarged by a whole factor before
drawing (``min_side``, `enlargement`), so a 128-pixel frame gets outlines and labels drawn at ~4x.

Vectorised over pixels (palette lookup, shifted comparisons); the only loop draws one text label
per segment. Needs numpy; Pillow for labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from zsp_ros.drawing.palette import category_color, segment_colors

__all__ = ["AnnotatedSegment", "SegmentLike", "annotation_overlay", "boundaries", "category_color", "draw_overlay",
           "enlargement", "label_font_px", "segment_colors"]
LABEL_PAD = 0.2        # label box padding, as a share of the font size


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


def enlargement(height: int, width: int, min_side: int) -> int:
    """The whole factor (>= 1) that brings a picture's short side to at least ``min_side`` (0: 1)."""
    short = max(1, min(int(height), int(width)))
    return 1 if min_side <= 0 or short >= min_side else math.ceil(min_side / short)


def label_font_px(height: int, width: int) -> int:
    """Label font size (pixels) for a picture of this size: 1/28 of the short side, within 10..48."""
    return int(min(max(round(min(height, width) / 28), 10), 48))


def draw_overlay(image: np.ndarray, panoptic: np.ndarray, segments: Sequence[SegmentLike], *,
                 alpha: float = 0.55, outlines: bool = True, labels: bool = True, min_side: int = 0) -> np.ndarray:
    """Blend segment colours over ``image``.

    Args:
        image: uint8 [H,W,3] RGB.
        panoptic: int [H,W], 0 = void (left as the image), else a segment id.
        segments: records of the ids in ``panoptic`` (others are drawn grey).
        alpha: colour weight inside segments, in [0, 1].
        outlines: draw segment borders in white.
        labels: write "name score" near each segment's centre, inside the picture, without overlap
            (needs Pillow).
        min_side: enlarge image and map by `enlargement` (nearest) first when the short side is
            below this; 0 = draw at the given size.

    Returns:
        uint8 [H*k, W*k, 3] RGB, a new array (k = `enlargement`, 1 unless ``min_side`` asks).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H,W,3], got {image.dtype} {image.shape}")
    if panoptic.shape != image.shape[:2]:
        raise ValueError(f"panoptic map {panoptic.shape} does not match image {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    k = enlargement(image.shape[0], image.shape[1], min_side)
    if k > 1:
        image = np.repeat(np.repeat(image, k, 0), k, 1)
        panoptic = np.repeat(np.repeat(panoptic, k, 0), k, 1)
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
    """Write each segment's "name score" on ``canvas`` (uint8 [H,W,3]); largest segments first,
    inside the picture, none overlapping (moved up/down by a label height, else skipped)."""
    from PIL import Image, ImageDraw

    h, w = ids.shape
    counts = np.bincount(ids.ravel(), minlength=ids.max() + 1).astype(np.float64)
    ys, xs = np.indices((h, w), sparse=True)
    cy = np.bincount(ids.ravel(), weights=np.broadcast_to(ys, (h, w)).ravel(), minlength=len(counts))
    cx = np.bincount(ids.ravel(), weights=np.broadcast_to(xs, (h, w)).ravel(), minlength=len(counts))
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    size = label_font_px(h, w)
    font = _font(size)
    pad = max(1, round(LABEL_PAD * size))
    placed: list[tuple[int, int, int, int]] = []
    shown = [s for s in segments if 0 <= s.id < len(counts) and counts[s.id] > 0]
    for s in sorted(shown, key=lambda s: -counts[s.id]):
        text = f"{s.name} {s.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        bw, bh = int(math.ceil(right - left)) + 2 * pad, int(math.ceil(bottom - top)) + 2 * pad
        if bw > w or bh > h:
            continue                                    # wider than the picture: no legible place
        x = int(min(max(cx[s.id] / counts[s.id] - bw / 2, 0), w - bw))
        y_centre = cy[s.id] / counts[s.id] - bh / 2
        for shift in (0, 1, -1, 2, -2):                 # stack: below, above, ... the centre
            y = int(min(max(y_centre + shift * (bh + 1), 0), h - bh))
            box = (x, y, x + bw, y + bh)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                placed.append(box)
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(0, 0, 0))
                draw.text((x + pad - left, y + pad - top), text, fill=(255, 255, 255), font=font)
                break
    return np.asarray(pil).copy()


def _font(size: int) -> Any:
    """Pillow's default font at ``size`` pixels (scalable with FreeType; the fixed bitmap font without)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):           # old Pillow or no FreeType: 11-pixel bitmap font
        return ImageFont.load_default()
