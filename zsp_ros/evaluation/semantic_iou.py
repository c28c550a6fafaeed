"""Semantic segmentation metrics from a confusion matrix: mIoU (all / seen / unseen), hIoU, pAcc.

Labels are uint8 PNGs whose values index the categories of split.json in order; 255 is
ignore. Ground-truth ignore pixels are left out entirely; a prediction of 255 ("no
prediction") counts as a miss for the ground-truth class. Per class
``IoU = TP / (TP + FP + FN)``; like detectron2's SemSegEvaluator, a mean runs over the classes
that occur in the ground truth. ``hIoU`` is the harmonic mean of seen and unseen mIoU (ZS3Net,
PADing); ``pAcc`` = correct / labelled pixels. Results are fractions here; the CLI reports percent.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zsp_ros.evaluation.errors import EvaluationInputError
from zsp_ros.evaluation.panoptic_quality import harmonic_mean

IGNORE = 255


class ConfusionMatrix:
    """int64 [K+1, K+1] counts, rows = ground truth, columns = prediction; index K = ignore/none."""

    def __init__(self, num_classes: int) -> None:
        if not 0 < num_classes < IGNORE:
            raise ValueError(f"num_classes must be in [1, {IGNORE - 1}], got {num_classes}")
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray, *, image: Any = None,
               gt_file: str | os.PathLike | None = None, pred_file: str | os.PathLike | None = None) -> None:
        """Add one image: ``gt``/``pred`` uint8 [H, W] class indices, 255 = ignore / no prediction."""
        k = self.num_classes
        if gt.shape != pred.shape:
            raise EvaluationInputError(f"prediction is {pred.shape[1]}x{pred.shape[0]} (WxH), ground truth "
                                       f"{gt.shape[1]}x{gt.shape[0]}", file=pred_file, image=image)
        for arr, file, what in ((gt, gt_file, "ground truth"), (pred, pred_file, "prediction")):
            bad = (arr >= k) & (arr != IGNORE)
            if bad.any():
                raise EvaluationInputError(f"{what} has class index {int(arr[bad].max())}; only 0..{k - 1} "
                                           f"and {IGNORE} (ignore) exist", file=file, image=image)
        g = np.where(gt == IGNORE, k, gt).astype(np.int64)
        p = np.where(pred == IGNORE, k, pred).astype(np.int64)
        self.matrix += np.bincount((g * (k + 1) + p).ravel(), minlength=(k + 1) ** 2).reshape(k + 1, k + 1)

    def per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """(IoU float64 [K] with NaN where the class has no ground-truth pixel, GT pixel count [K])."""
        k = self.num_classes
        labelled = self.matrix[:k]                 # ground truth not ignored
        tp = np.diag(self.matrix)[:k].astype(np.float64)
        gt_count = labelled.sum(axis=1).astype(np.float64)          # includes "no prediction"
        pred_count = labelled[:, :k].sum(axis=0).astype(np.float64)  # predictions on labelled pixels
        union = gt_count + pred_count - tp
        iou = np.full(k, np.nan)
        valid = gt_count > 0
        iou[valid] = tp[valid] / union[valid]
        return iou, gt_count

    def pixel_accuracy(self) -> float | None:
        k = self.num_classes
        total = self.matrix[:k].sum()
        return None if total == 0 else float(np.trace(self.matrix[:k, :k]) / total)


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return None if values.size == 0 else float(values.mean())


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def summarize_semantic(conf: ConfusionMatrix, categories: Sequence[dict]) -> dict[str, Any]:
    """Metrics JSON (percent) from a confusion matrix over ``categories`` (split.json order, with "seen")."""
    iou, gt_count = conf.per_class()
    seen = np.array([bool(c["seen"]) for c in categories])
    miou = {"all": _pct(_mean(iou)), "seen": _pct(_mean(iou[seen])), "unseen": _pct(_mean(iou[~seen]))}
    return {"mIoU": miou, "hIoU": harmonic_mean(miou["seen"], miou["unseen"]),
            "pAcc": _pct(conf.pixel_accuracy()),
            "per_category": [{"id": c["id"], "name": c["name"], "seen": bool(c["seen"]),
                              "IoU": None if np.isnan(v) else 100.0 * float(v), "gt_pixels": int(n)}
                             for c, v, n in zip(categories, iou, gt_count)]}


def _read_label(path: Path, *, image: Any, what: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise EvaluationInputError(f"{what} PNG has mode {im.mode}; want 8-bit single channel",
                                           file=path, image=image)
            return np.asarray(im)
    except FileNotFoundError:
        raise EvaluationInputError(f"{what} PNG does not exist", file=path, image=image) from None
    except OSError as exc:
        raise EvaluationInputError(f"{what} PNG cannot be read: {exc}", file=path, image=image) from None


def evaluate_semantic(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike, split: dict) -> dict[str, Any]:
    """Compare every ``gt_dir/*.png`` with the same name in ``pred_dir``; return the metrics dict."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if not gt_dir.is_dir():
        raise EvaluationInputError("ground-truth label folder does not exist", file=gt_dir)
    if not pred_dir.is_dir():
        raise EvaluationInputError("prediction label folder does not exist", file=pred_dir)
    files = sorted(gt_dir.glob("*.png"))
    if not files:
        raise EvaluationInputError("ground-truth label folder holds no PNG", file=gt_dir)
    categories = split["categories"]
    conf = ConfusionMatrix(len(categories))
    for gt_file in files:
        pred_file = pred_dir / gt_file.name
        image = gt_file.stem
        gt = _read_label(gt_file, image=image, what="ground-truth")
        pred = _read_label(pred_file, image=image, what="prediction")
        conf.update(gt, pred, image=image, gt_file=gt_file, pred_file=pred_file)
    out = summarize_semantic(conf, categories)
    out["images"] = len(files)
    return out
