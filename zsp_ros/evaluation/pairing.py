"""Which prediction belongs to which ground-truth image, and which predicted category to which ground-truth one.

Images (`pair_annotations`): by file name first. An annotation's names are the stem of its PNG
(``annotations[].file_name``) and the stem of its image record (``images[].file_name`` of the same
id), so ``val/000042.jpg`` segmented by `zsp segment` (PNG ``000042.png``) pairs with the ground
truth's ``000042.png`` whatever order the files were given in. When no prediction name matches
any ground-truth name, images pair by ``image_id`` (files renamed by another tool); when neither
matches anything, `EvaluationInputError` says so instead of scoring every image as a miss.

Categories (`category_map`, ``--match-names``): predicted category ids are replaced by the
ground-truth id of the same name, compared case- and space-insensitively (`name_key`), so ids
that a runtime assigned when categories were added by name do not matter. Predicted categories
whose name the ground truth does not have are reported; their segments are left out (void).
"""
from __future__ import annotations

import os
from pathlib import PurePath
from typing import Any, Sequence

from zsp_ros.evaluation.errors import EvaluationInputError


def _stem(name: Any) -> str:
    return PurePath(str(name)).stem


def _names(ann: dict, images: dict[Any, dict]) -> set[str]:
    """Stems an annotation is known by: its PNG's and its image record's."""
    names = {_stem(ann["file_name"])}
    image = images.get(ann["image_id"])
    if image is not None and image.get("file_name"):
        names.add(_stem(image["file_name"]))
    return names


def pair_annotations(gt: dict, pred: dict, *, pred_file: str | os.PathLike | None = None
                     ) -> tuple[list[tuple[dict, dict]], str]:
    """(ground-truth annotation, prediction annotation) for every ground-truth image, and how they paired.

    Args:
        gt, pred: COCO panoptic JSON dicts ("annotations" with image_id and file_name; "images" optional).
        pred_file: the prediction JSON's path, for error messages.

    Returns:
        (pairs in ground-truth order, "file_name" or "image_id").

    Raises:
        EvaluationInputError: nothing matches by name or id; by name, a ground-truth image without a
        prediction of its name or with several; by id, a ground-truth image without a prediction.
    """
    gt_images = {im["id"]: im for im in gt.get("images", []) if isinstance(im, dict) and "id" in im}
    pred_images = {im["id"]: im for im in pred.get("images", []) if isinstance(im, dict) and "id" in im}
    by_name: dict[str, list[int]] = {}
    for index, ann in enumerate(pred["annotations"]):
        for name in _names(ann, pred_images):
            by_name.setdefault(name, []).append(index)
    gt_annotations = gt["annotations"]
    matches = [sorted({i for name in _names(ann, gt_images) for i in by_name.get(name, [])})
               for ann in gt_annotations]
    if any(matches):
        pairs = []
        for ann, found in zip(gt_annotations, matches):
            shown = " / ".join(sorted(_names(ann, gt_images)))
            if not found:
                raise EvaluationInputError(f"no prediction named {shown} (predictions pair with ground truth by "
                                           "file name)", file=pred_file, image=ann["image_id"])
            if len(found) > 1:
                others = ", ".join(str(pred["annotations"][i]["file_name"]) for i in found)
                raise EvaluationInputError(f"several predictions are named {shown}: {others}", file=pred_file,
                                           image=ann["image_id"])
            pairs.append((ann, pred["annotations"][found[0]]))
        return pairs, "file_name"
    by_id = {ann["image_id"]: ann for ann in pred["annotations"]}
    if gt_annotations and not any(ann["image_id"] in by_id for ann in gt_annotations):
        example_gt = gt_annotations[0]["file_name"]
        example_pred = pred["annotations"][0]["file_name"] if pred["annotations"] else "none"
        raise EvaluationInputError(
            f"none of the {len(pred['annotations'])} predictions matches one of the {len(gt_annotations)} "
            f"ground-truth images by file name (e.g. prediction {example_pred!r}, ground truth {example_gt!r}) "
            "or by image_id; were they made from these images?", file=pred_file)
    pairs = []
    for ann in gt_annotations:
        if ann["image_id"] not in by_id:
            raise EvaluationInputError("no prediction for this ground-truth image (no file name matches, so "
                                       "images pair by image_id)", file=pred_file, image=ann["image_id"])
        pairs.append((ann, by_id[ann["image_id"]]))
    return pairs, "image_id"


def name_key(name: str) -> str:
    """A category name for matching: case folded, whitespace, ``_`` and ``-`` removed ("Red  Circle" ~ "red_circle")."""
    return "".join(ch for ch in str(name).casefold() if not ch.isspace() and ch not in "_-")


def category_map(gt_categories: Sequence[dict], pred_categories: Sequence[dict], *,
                 pred_file: str | os.PathLike | None = None) -> tuple[dict[int, int | None], dict[str, Any]]:
    """Predicted category id -> ground-truth id of the same name (None: the ground truth has no such name).

    Args:
        gt_categories, pred_categories: COCO category lists ({"id", "name", ...}).

    Returns:
        (the map, a report {"by": "name", "matched": n, "renumbered": {pred id: gt id} where they
        differ, "unmatched_predicted": [names]}).

    Raises:
        EvaluationInputError: a list without names, or two ground-truth (or predicted) categories
        whose names match alike.
    """
    def index(categories: Sequence[dict], what: str, file: Any) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for c in categories:
            if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
                raise EvaluationInputError(f"{what} categories need an id and a name to match by name", file=file)
            key = name_key(c["name"])
            if key in out:
                raise EvaluationInputError(f"{what} categories {out[key]['name']!r} (id {out[key]['id']}) and "
                                           f"{c['name']!r} (id {c['id']}) have the same name up to case and "
                                           "spaces", file=file)
            out[key] = c
        return out

    if not pred_categories:
        raise EvaluationInputError("matching by name needs the prediction JSON's 'categories' (id and name)",
                                   file=pred_file)
    gt_by_name = index(gt_categories, "ground-truth", None)
    pred_by_name = index(pred_categories, "predicted", pred_file)
    mapping: dict[int, int | None] = {}
    for key, c in pred_by_name.items():
        mapping[int(c["id"])] = int(gt_by_name[key]["id"]) if key in gt_by_name else None
    report = {"by": "name", "matched": sum(v is not None for v in mapping.values()),
              "renumbered": {str(p): g for p, g in sorted(mapping.items()) if g is not None and g != p},
              "unmatched_predicted": sorted(c["name"] for k, c in pred_by_name.items() if k not in gt_by_name)}
    return mapping, report
