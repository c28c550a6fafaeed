"""Runtime results -> ROS messages (and back, for clients): pure functions, no node state.

- `panoptic_message`: `SegmentationResult` -> zsp_msgs/PanopticSegmentation (header copied; id
  image 16UC1 at the result's resolution, rviz shows it; 32SC1 when asked, or when a segment id
  exceeds 65535, which per-frame segment ids never reach in practice; one Segment per id).
- `semantic_message`: the semantic map -> sensor_msgs/Image 16UC1 of category ids (32SC1 if an id
  exceeds 65535, which stable ids never reach in practice).
- `color_mask_message`: result -> rgb8 colour mask, one fixed colour per category id, void black
  (zsp_ros.drawing.palette), no text.
- `overlay_message`: image + result -> rgb8 overlay for rviz (zsp_ros.drawing.overlay).
- `category_set_message`: runtime `CategorySet` -> zsp_msgs/CategorySet (the ``category_set`` topic).

The id image, semantic map and colour mask are written into reused messages when an
`OutputBuffers` is given (the node's inference thread passes its own): no allocation per frame.
- `diagnostic_message`: a dict of statistics -> diagnostic_msgs/DiagnosticArray.
- `panoptic_from_message`: the reverse of `panoptic_message`, for clients and tests.

Message packages are imported inside the functions (module import needs numpy only).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from zsp_ros.drawing.overlay import draw_overlay
from zsp_ros.drawing.palette import paint_color_mask
from zsp_ros.node.output_buffers import OutputBuffers
from zsp_ros.node.raw_image import image_to_numpy, numpy_to_image

ID_IMAGE_ENCODINGS = ("16UC1", "32SC1")
UINT16_MAX = 65535

ORIGIN_CODES = {"seen": 0, "added": 1}   # zsp_msgs/CategoryInfo.ORIGIN_SEEN / ORIGIN_ADDED


def segment_message(segment: Any) -> Any:
    """runtime `Segment` (id, category_id, name, score, isthing, area, bbox x,y,w,h) -> zsp_msgs/Segment."""
    from zsp_msgs.msg import Segment

    x, y, w, h = (int(v) for v in segment.bbox)
    return Segment(id=int(segment.id), category_id=int(segment.category_id), label=str(segment.name),
                   score=float(segment.score), isthing=bool(segment.isthing), area=int(segment.area),
                   bbox_x=x, bbox_y=y, bbox_width=w, bbox_height=h)


def panoptic_message(result: Any, header: Any, *, encoding: str = "16UC1",
                     buffers: OutputBuffers | None = None) -> Any:
    """zsp_msgs/PanopticSegmentation of one frame.

    Args:
        result: `SegmentationResult` (panoptic int [H,W], 0 = void; segments; version; timings_ms).
        header: std_msgs/Header of the input image, copied to the message and its id image.
        encoding: "16UC1" (used unless a segment id exceeds 65535; then 32SC1) or "32SC1".
        buffers: reuse this object's id image message and buffer (else a new one).
    """
    from zsp_msgs.msg import PanopticSegmentation

    if encoding not in ID_IMAGE_ENCODINGS:
        raise ValueError(f"id image encoding must be one of {', '.join(ID_IMAGE_ENCODINGS)}, got {encoding!r}")
    ids = np.asarray(result.panoptic)
    if ids.ndim != 2:
        raise ValueError(f"panoptic map must be [H,W], got shape {ids.shape}")
    top = max((int(s.id) for s in result.segments), default=0)     # the map holds 0 and these ids only
    if encoding == "16UC1" and top > UINT16_MAX:
        encoding = "32SC1"
    buffers = OutputBuffers() if buffers is None else buffers
    msg = PanopticSegmentation(header=header)
    msg.id_image, pixels = buffers.image("id_image", height=ids.shape[0], width=ids.shape[1], encoding=encoding,
                                        header=header)
    np.copyto(pixels, ids, casting="unsafe")      # int32 -> uint16: exact, every id <= 65535 (checked above)
    msg.segments = [segment_message(s) for s in result.segments]
    msg.category_set_version = int(result.category_set_version)
    timings = result.timings_ms
    msg.preprocess_ms = float(timings.get("preprocess", 0.0))
    msg.model_ms = float(timings.get("model", 0.0))
    msg.postprocess_ms = float(timings.get("postprocess", 0.0))
    return msg


def semantic_message(semantic: np.ndarray, header: Any, *, buffers: OutputBuffers | None = None) -> Any:
    """sensor_msgs/Image of a semantic map int [H,W] of category ids: 16UC1 (32SC1 above 65535)."""
    ids = np.asarray(semantic)
    if ids.ndim != 2:
        raise ValueError(f"semantic map must be [H,W], got shape {ids.shape}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > UINT16_MAX):
        return numpy_to_image(ids.astype(np.int32, copy=False), "32SC1", header=header)
    buffers = OutputBuffers() if buffers is None else buffers
    msg, pixels = buffers.image("semantic", height=ids.shape[0], width=ids.shape[1], encoding="16UC1", header=header)
    np.copyto(pixels, ids, casting="unsafe")
    return msg


def color_mask_message(result: Any, header: Any, *, buffers: OutputBuffers | None = None) -> Any:
    """rgb8 sensor_msgs/Image: each pixel its segment's category colour (fixed per id), void black."""
    ids = np.asarray(result.panoptic)
    buffers = OutputBuffers() if buffers is None else buffers
    msg, pixels = buffers.image("color_mask", height=ids.shape[0], width=ids.shape[1], encoding="rgb8", header=header)
    paint_color_mask(ids, result.segments, out=pixels)
    return msg


def overlay_message(image: np.ndarray, result: Any, header: Any, *, alpha: float = 0.55,
                    labels: bool = True, min_side: int = 0) -> Any:
    """rgb8 sensor_msgs/Image: segment colours blended over ``image`` (uint8 [H,W,3] RGB); enlarged by a
    whole factor first when its short side is below ``min_side`` (drawing.overlay.enlargement)."""

    canvas = draw_overlay(image, result.panoptic, result.segments, alpha=alpha, labels=labels, min_side=min_side)
    return numpy_to_image(canvas, "rgb8", header=header)


def category_info_message(category: Any) -> Any:
    """runtime `Category` (id, name, isthing, origin "seen"/"added") -> zsp_msgs/CategoryInfo."""
    from zsp_msgs.msg import CategoryInfo

    return CategoryInfo(id=int(category.id), name=str(category.name), isthing=bool(category.isthing),
                        origin=ORIGIN_CODES[category.origin])


def category_set_message(category_set: Any, header: Any = None) -> Any:
    """runtime `CategorySet` (categories, version, text_encoder) -> zsp_msgs/CategorySet."""
    from zsp_msgs.msg import CategorySet

    msg = CategorySet(version=int(category_set.version), text_encoder=str(category_set.text_encoder),
                      categories=[category_info_message(c) for c in category_set])
    if header is not None:
        msg.header = header
    return msg


def diagnostic_message(*, name: str, hardware_id: str, level: str, summary: str,
                       values: Mapping[str, Any], stamp: Any = None) -> Any:
    """diagnostic_msgs/DiagnosticArray with one status.

    Args:
        name, hardware_id: the status's identity (node name, device).
        level: "ok", "warn", "error" or "stale".
        summary: the status message (one line).
        values: key -> value, written as KeyValue strings in insertion order (floats with 3 decimals).
        stamp: builtin_interfaces/Time of the array header.
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    levels = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN,
              "error": DiagnosticStatus.ERROR, "stale": DiagnosticStatus.STALE}
    if level not in levels:
        raise ValueError(f"level must be one of {', '.join(levels)}, got {level!r}")

    def text(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    status = DiagnosticStatus(level=levels[level], name=name, hardware_id=hardware_id, message=summary,
                              values=[KeyValue(key=str(k), value=text(v)) for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    if stamp is not None:
        array.header.stamp = stamp
    return array


# ------------------------------------------------------------------ reverse (clients, tests)

def panoptic_from_message(msg: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(id map int32 [H,W], segments as dicts) from a zsp_msgs/PanopticSegmentation.

    Each dict: id, category_id, label, score, isthing, area, bbox [x, y, w, h].
    """
    ids = np.array(image_to_numpy(msg.id_image), dtype=np.int32, copy=True)      # 16UC1 or 32SC1
    segments = [{"id": int(s.id), "category_id": int(s.category_id), "label": s.label, "score": float(s.score),
                 "isthing": bool(s.isthing), "area": int(s.area),
                 "bbox": [int(s.bbox_x), int(s.bbox_y), int(s.bbox_width), int(s.bbox_height)]}
                for s in msg.segments]
    return ids, segments


def category_set_from_message(msg: Any) -> dict[str, Any]:
    """{"version", "text_encoder", "categories": [{id, name, isthing, origin}]} from zsp_msgs/CategorySet."""
    names = {v: k for k, v in ORIGIN_CODES.items()}
    return {"version": int(msg.version), "text_encoder": msg.text_encoder,
            "categories": [{"id": int(c.id), "name": c.name, "isthing": bool(c.isthing),
                            "origin": names.get(int(c.origin), str(c.origin))} for c in msg.categories]}


def segments_consistent(ids: np.ndarray, segments: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every way ``segments`` fails to describe the id map (empty list = consistent).

    Checks: ids unique; every non-zero id of the map has a segment and every segment has pixels;
    each segment's area and bbox [x, y, w, h] equal those measured on the map.
    """
    problems: list[str] = []
    listed = [int(s["id"]) for s in segments]
    if len(set(listed)) != len(listed):
        problems.append(f"segment ids repeat: {listed}")
    present = set(np.unique(ids).tolist()) - {0}
    if present - set(listed):
        problems.append(f"ids {sorted(present - set(listed))} are in the image but not in segments")
    for s in segments:
        mask = ids == int(s["id"])
        area = int(mask.sum())
        if area == 0:
            problems.append(f"segment {s['id']} has no pixels")
            continue
        if area != int(s["area"]):
            problems.append(f"segment {s['id']}: area {s['area']} but {area} pixels")
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        if box != list(s["bbox"]):
            problems.append(f"segment {s['id']}: bbox {list(s['bbox'])} but measured {box}")
    return problems
