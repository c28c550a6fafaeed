"""What `Segmenter.segment` returns: numpy maps at the input resolution plus segment records."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zsp_ros.data.coco_format import id2rgb
from zsp_ros.evaluation.predict import segments_info


@dataclass(frozen=True)
class Segment:
    """One panoptic segment.

    Attributes:
        id: its pixel value in ``SegmentationResult.panoptic`` (>= 1).
        category_id: stable category id; name: category name.
        score: class probability in [0, 1]; isthing: thing (instance) or stuff.
        area: pixels in the panoptic map.
        bbox: (x, y, width, height) in pixels of the input image, x, y = top-left corner (COCO).
    """
    id: int
    category_id: int
    name: str
    score: float
    isthing: bool
    area: int
    bbox: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "category_id": self.category_id, "name": self.name, "score": self.score,
                "isthing": self.isthing, "area": self.area, "bbox": list(self.bbox)}


@dataclass(frozen=True)
class SegmentationResult:
    """Panoptic (and semantic) segmentation of one image.

    Attributes:
        panoptic: int32 [H,W] at the input image's resolution; 0 = void, else a ``Segment.id``.
        segments: one record per segment id present in ``panoptic``, in id order.
        semantic: int32 [H,W] category id of the best class per pixel (Mask2Former semantic
            inference), or None when the segmenter was built with ``semantic=False``.
        category_set_version: version of the category set that labelled this image.
        timings_ms: {"preprocess", "model", "postprocess", "total"} wall-clock milliseconds.
    """
    panoptic: np.ndarray
    segments: list[Segment]
    semantic: np.ndarray | None
    category_set_version: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    def panoptic_rgb(self) -> np.ndarray:
        """uint8 [H,W,3] COCO panoptic PNG encoding: id = R + 256 G + 256² B (zsp_ros.data.coco_format.id2rgb)."""
        return id2rgb(self.panoptic)

    def coco_annotation(self, *, image_id: int | str, file_name: str) -> dict[str, Any]:
        """This image's entry in a COCO panoptic JSON "annotations" list (``file_name``: its PNG)."""
        # arg-type: Segment is frozen (read-only fields) and evaluation.predict.PanopticSegment declares
        # settable attributes; its members should be read-only properties (not this package's file)
        return {"image_id": image_id, "file_name": file_name,
                "segments_info": segments_info(self.segments)}
