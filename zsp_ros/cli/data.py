"""`zsp data {check,prepare} --coco DIR`: is COCO laid out as expected; make the zero-shot views.

- ``check``: one line per expected path (ok / MISSING, what it is, which task needs it), then
  which of panoptic / semantic / instance is ready. Exit 0 when every task asked for
  (``--task``, default all) is ready, 1 otherwise. ``--json`` prints the report as JSON.
- ``prepare``: writes annotations/panoptic_train2017_zsp.json (the ZSP training view; images
  with an unseen segment dropped) from annotations/panoptic_train2017.json.
"""
from __future__ import annotations

import argparse
import json
import sys

from zsp_ros.data.coco_layout import check_layout, coco_path, format_report
from zsp_ros.data.coco_real import load_coco_split, write_zsp_view


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("check", "prepare"), help="check the layout, or write the ZSP view")
    parser.add_argument("--coco", required=True, help="COCO root folder (train2017/, annotations/, ...)")
    parser.add_argument("--task", action="append", choices=("panoptic", "semantic", "instance"),
                        help="task(s) that must be ready for exit 0 (check; default all)")
    parser.add_argument("--split", default="zsp", help="split name or file for prepare (default zsp)")
    parser.add_argument("--json", action="store_true", help="print the check report as JSON")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path


    root = Path(args.coco)
    if not root.is_dir():
        print(f"zsp data: COCO root {root} is not a folder", file=sys.stderr)
        return 2
    if args.action == "check":
        report = check_layout(root)
        print(json.dumps(report, indent=2) if args.json else format_report(report))
        tasks = args.task or list(report["tasks"])
        return 0 if all(report["tasks"][t]["ready"] for t in tasks) else 1

    src = coco_path(root, "panoptic_train_json")
    if not src.is_file():
        print(f"zsp data prepare: {src} is missing (COCO panoptic 2017 train annotations)", file=sys.stderr)
        return 1
    split = load_coco_split(args.split)
    summary = write_zsp_view(src, coco_path(root, "panoptic_train_zsp_json"), split["unseen_ids"],
                             png_folder=coco_path(root, "panoptic_train_png"))
    print(f"wrote {coco_path(root, 'panoptic_train_zsp_json')}: kept {summary['kept']} of {summary['images']} "
          f"training images ({summary['dropped']} contain an unseen segment)")
    return 0
