"""`zsp eval {panoptic,semantic,instance}`: metrics of predictions against COCO-format ground truth.

  zsp eval panoptic --gt panoptic_val.json --pred pred.json --split split.json --out m.json
      --gt / --pred: COCO panoptic JSONs. Their PNGs are in the folder next to each JSON with
      the JSON's stem (COCO convention: panoptic_val.json -> panoptic_val/), or the folder
      named in the JSON's info.segmentations_folder, or --gt-folder / --pred-folder.
      Prediction segments_info needs {"id", "category_id"}; areas are counted from the PNG.
      Images pair by file name (PNG or image stem: `zsp segment val/*.png` in any order), else by
      image_id; nothing matching is an error. --match-names: predicted categories count as the
      ground-truth category of the same name (case/space-insensitive), so ids that the runtime
      gave categories added by name do not matter; names the ground truth lacks are left out.
      Output: {"PQ"|"SQ"|"RQ": {"all","things","stuff","seen","unseen","hm"}, "n_categories",
      "per_category": [...], "matching": {"images": {"by", "pairs"}, "categories": {...}}}.
  zsp eval semantic --gt semantic_val/ --pred pred_dir/ --split split.json --out m.json
      Folders of uint8 label PNGs with the same names; value = index into split.json's
      categories, 255 = ignore (in a prediction: no prediction, a miss).
      Output: {"mIoU": {"all","seen","unseen"}, "hIoU", "pAcc", "per_category"}.
  zsp eval instance --gt instances_val.json --pred results.json --split split.json --out m.json
      --pred: COCO results list [{"image_id","category_id","segmentation": RLE,"score"}].
      Output: {"mAP50": {"all","seen","unseen","hm"}, "recall100": {...}, "per_category"}.

Values are percent; a mean over no category is null. Bad input exits with status 2 and a
message naming the file and the image.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from zsp_ros.data.categories import read_split
from zsp_ros.evaluation.errors import EvaluationInputError
from zsp_ros.evaluation.instance_ap import evaluate_instances
from zsp_ros.evaluation.panoptic_quality import evaluate_panoptic
from zsp_ros.evaluation.semantic_iou import evaluate_semantic
from zsp_ros.utils.provenance import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__
    sub = parser.add_subparsers(dest="task", required=True, metavar="{panoptic,semantic,instance}")
    helps = {"panoptic": "PQ/SQ/RQ (panopticapi definition)",
             "semantic": "mIoU seen/unseen, hIoU, pixel accuracy",
             "instance": "mask AP50 and Recall@100 (pycocotools COCOeval)"}
    gt_help = {"panoptic": "ground-truth COCO panoptic JSON",
               "semantic": "folder of ground-truth label PNGs",
               "instance": "ground-truth COCO instances JSON"}
    pred_help = {"panoptic": "predicted COCO panoptic JSON",
                 "semantic": "folder of predicted label PNGs (same file names)",
                 "instance": "COCO results JSON (RLE segmentation + score)"}
    for task, text in helps.items():
        p = sub.add_parser(task, help=text, description=text)
        p.add_argument("--gt", required=True, help=gt_help[task])
        p.add_argument("--pred", required=True, help=pred_help[task])
        p.add_argument("--split", required=True, help="split.json (categories with seen flags)")
        p.add_argument("--out", default=None, help="write the metrics JSON here")
        if task == "panoptic":
            p.add_argument("--gt-folder", default=None, help="ground-truth PNG folder (default: by COCO convention)")
            p.add_argument("--pred-folder", default=None, help="prediction PNG folder (default: by COCO convention)")
            p.add_argument("--match-names", action="store_true",
                           help="match predicted categories to ground-truth ones by name (case/space-insensitive), "
                                "not by id: for categories added at runtime")


def _fmt(x: Any) -> str:
    return "  n/a" if x is None else f"{x:5.1f}"


def _summary(task: str, m: dict) -> str:
    if task == "panoptic":
        keys = ("all", "things", "stuff", "seen", "unseen", "hm")
        lines = ["      " + " ".join(f"{k:>6}" for k in keys)]
        for metric in ("PQ", "SQ", "RQ"):
            lines.append(f"{metric:<5} " + " ".join(f"{_fmt(m[metric][k]):>6}" for k in keys))
        return "\n".join(lines)
    if task == "semantic":
        return (f"mIoU all {_fmt(m['mIoU']['all'])}  seen {_fmt(m['mIoU']['seen'])}  "
                f"unseen {_fmt(m['mIoU']['unseen'])}  hIoU {_fmt(m['hIoU'])}  pAcc {_fmt(m['pAcc'])}")
    return "\n".join(f"{k:<10} seen {_fmt(m[k]['seen'])}  unseen {_fmt(m[k]['unseen'])}  hm {_fmt(m[k]['hm'])}"
                     for k in ("mAP50", "recall100"))


def _matching_notes(matching: dict) -> None:
    """Say on stderr when images paired by id, or predicted names were not in the ground truth."""
    images = matching["images"]
    if images["by"] == "image_id":
        print(f"zsp eval panoptic: note: no prediction file name matches a ground-truth one; paired "
              f"{images['pairs']} images by image_id", file=sys.stderr)
    cats = matching.get("categories")
    if cats and cats["unmatched_predicted"]:
        print(f"zsp eval panoptic: note: predicted categories not in the ground truth (their "
              f"{cats['dropped_segments']} segments left out): {', '.join(cats['unmatched_predicted'])}",
              file=sys.stderr)


def run(args: argparse.Namespace) -> int:

    try:
        split = read_split(args.split)
        if args.task == "panoptic":
            metrics = evaluate_panoptic(args.gt, args.pred, split, gt_folder=args.gt_folder,
                                        pred_folder=args.pred_folder, match_names=args.match_names)
            _matching_notes(metrics["matching"])
        elif args.task == "semantic":
            metrics = evaluate_semantic(args.gt, args.pred, split)
        else:
            metrics = evaluate_instances(args.gt, args.pred, split)
    except (EvaluationInputError, FileNotFoundError, ValueError) as exc:
        hint = ""
        if args.task == "panoptic" and not args.match_names and "unknown category id" in str(exc):
            hint = " (categories added at runtime have ids of their own: score them by name with --match-names)"
        print(f"zsp eval {args.task}: error: {exc}{hint}", file=sys.stderr)
        return 2
    metrics = {"task": args.task, "gt": str(args.gt), "pred": str(args.pred), "split": str(args.split),
               **metrics}
    print(_summary(args.task, metrics))
    if args.out:
        write_json(args.out, metrics)
        print(f"wrote {args.out}")
    return 0
