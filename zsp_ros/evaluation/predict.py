"""Segment images and write COCO panoptic predictions: one PNG per image and one JSON.

Layout (panopticapi's convention; what `zsp eval panoptic --pred` reads):

    PNG_DIR/NAME.png  uint8 RGB at the image's size, segment id = R + 256 G + 256² B (0 = void)
    JSON              {"info": {...}, "images": [{"id", "file_name", "height", "width"}],
                       "annotations": [{"image_id", "file_name": "NAME.png", "segments_info": [...]}],
                       "categories": [...]}
                      keys in that order; "info" and "categories" only when given, "images" only
                      for a writer built with ``record_images=True``; indented or compact.

`CocoPanopticWriter` writes the files from any per-image (segment id map, segments_info);
`predict_coco_panoptic` runs a segmenter over frames and writes each result through a writer,
with `segments_info` records ``{"id", "category_id", "iscrowd": 0, "bbox": [x, y, w, h],
"area", "score"}``. A segmenter is anything with ``segment(image) -> result`` (see
`PanopticSegmenter`; `zsp_ros.runtime.segmenter.Segmenter` is one, not imported here).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from zsp_ros.data.coco_format import encode_png, id2rgb, read_png
from zsp_ros.utils.provenance import atomic_write_bytes


class PanopticSegment(Protocol):
    """One predicted segment (e.g. `zsp_ros.runtime.result.Segment`); read-only attributes."""
    @property
    def id(self) -> int: ...                       # its value in the panoptic map
    @property
    def category_id(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def area(self) -> int: ...                     # pixels
    @property
    def bbox(self) -> tuple[int, int, int, int]: ...   # x, y, width, height (COCO)


class PanopticResult(Protocol):
    """A segmenter's answer for one image (e.g. `zsp_ros.runtime.result.SegmentationResult`)."""
    panoptic: np.ndarray         # int [H,W] segment ids at the input's size, 0 = void
    segments: Sequence[PanopticSegment]


class PanopticSegmenter(Protocol):
    """What `predict_coco_panoptic` runs: HWC uint8 RGB -> `PanopticResult`."""
    def segment(self, image: np.ndarray) -> PanopticResult: ...


@dataclass(frozen=True)
class Frame:
    """One image to predict.

    Attributes:
        image_id: the COCO image id its annotation carries.
        png_name: file name of its prediction PNG in the writer's folder (and the annotation's
            ``file_name``).
        image: HWC uint8 RGB.
        file_name: the source image's file name, for the JSON's "images" record (writers built
            with ``record_images=True`` need it).
    """
    image_id: Any
    png_name: str
    image: np.ndarray
    file_name: str | None = None


def segments_info(segments: Iterable[PanopticSegment], *,
                  category_id_of: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
    """COCO panoptic ``segments_info`` of a result's segments, in their order.

    ``category_id_of`` maps the segmenter's category ids to the ids written (e.g. a dataset's);
    an id it lacks raises KeyError. Without it the ids are written as they are.
    """
    return [{"id": s.id,
             "category_id": s.category_id if category_id_of is None else category_id_of[s.category_id],
             "iscrowd": 0, "bbox": list(s.bbox), "area": s.area, "score": s.score} for s in segments]


class CocoPanopticWriter:
    """Writes prediction PNGs into ``png_dir`` (created) and collects the JSON's records.

    ``atomic``: write each file through a temporary file and a rename (a reader or a crash never
    sees half a file; slower on many files). ``record_images``: keep an "images" record per frame
    and write the JSON's "images" list.
    """

    def __init__(self, png_dir: str | Path, *, atomic: bool = False, record_images: bool = False) -> None:
        self.png_dir = Path(png_dir)
        self.png_dir.mkdir(parents=True, exist_ok=True)
        self.atomic = atomic
        self.record_images = record_images
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def _write(self, path: Path, data: bytes) -> None:
        if self.atomic:
            atomic_write_bytes(path, data)
        else:
            path.write_bytes(data)

    def add(self, *, image_id: Any, png_name: str, panoptic: np.ndarray, segments_info: list[dict[str, Any]],
            image: dict[str, Any] | None = None) -> Path:
        """Write ``png_dir/png_name`` from ``panoptic`` (int [H,W] ids in [0, 256³)) and record its
        annotation (and ``image``, the "images" record, when the writer records images); return the PNG path."""
        if self.record_images:
            if image is None:
                raise ValueError(f"CocoPanopticWriter(record_images=True).add: image {image_id} has no images record")
            self.images.append(image)
        path = self.png_dir / png_name
        self._write(path, encode_png(id2rgb(panoptic)))
        self.annotations.append({"image_id": image_id, "file_name": png_name, "segments_info": segments_info})
        return path

    def write_json(self, path: str | Path, *, info: dict[str, Any] | None = None,
                   categories: list[dict[str, Any]] | None = None, indent: int | None = None) -> Path:
        """Write the COCO panoptic JSON of everything added so far (layout in the module docstring)."""
        document: dict[str, Any] = {}
        if info is not None:
            document["info"] = info
        if self.record_images:
            document["images"] = self.images
        document["annotations"] = self.annotations
        if categories is not None:
            document["categories"] = categories
        path = Path(path)
        self._write(path, (json.dumps(document, indent=indent) + "\n").encode())
        return path


def predict_coco_panoptic(segmenter: PanopticSegmenter, frames: Iterable[Frame], writer: CocoPanopticWriter, *,
                          category_id_of: Mapping[int, int] | None = None,
                          on_result: Callable[[Frame, PanopticResult], None] | None = None) -> int:
    """Segment each frame and add its PNG and annotation to ``writer``; return the number of frames.

    ``category_id_of``: see `segments_info`. ``on_result(frame, result)`` runs after each frame is
    written (progress lines, overlays). The JSON is not written: call ``writer.write_json``.
    """
    count = 0
    for frame in frames:
        result = segmenter.segment(frame.image)
        image = None
        if writer.record_images:
            image = {"id": frame.image_id, "file_name": frame.file_name,
                     "height": frame.image.shape[0], "width": frame.image.shape[1]}
        writer.add(image_id=frame.image_id, png_name=frame.png_name, panoptic=result.panoptic,
                   segments_info=segments_info(result.segments, category_id_of=category_id_of), image=image)
        if on_result is not None:
            on_result(frame, result)
        count += 1
    return count


def predict_world_images(segmenter: PanopticSegmenter, data: Path, images: list[dict[str, Any]],
                         png_name: dict[int, str], out: Path, world_id_of: dict[int, int]) -> Path:
    """Segment a world's validation images (``images``: its COCO image records) and write COCO panoptic
    predictions with the world's category ids (``world_id_of``: registry id -> world id) under ``out``:
    ``out/panoptic_val/<png_name[image id]>`` and ``out/panoptic_val.json`` (returned)."""
    writer = CocoPanopticWriter(out / "panoptic_val")
    frames = (Frame(image_id=im["id"], png_name=png_name[im["id"]],
                    image=read_png(data / "images" / "val" / im["file_name"], what="image", image=im["id"],
                                   mode="RGB")) for im in images)
    predict_coco_panoptic(segmenter, frames, writer, category_id_of=world_id_of)
    return writer.write_json(out / "panoptic_val.json")
