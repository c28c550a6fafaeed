"""`zsp synth --out DIR`: generate the synthetic zero-shot world in COCO formats.

Layout and formats: zsp_ros/data/synth_writer.py and docs/CONTRACTS.md. The same arguments
give byte-identical files, whatever --workers is.
"""
from __future__ import annotations

import argparse
import sys

from zsp_ros.data.synth_world import parse_unseen, world_split
from zsp_ros.data.synth_writer import generate_world


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not S or HxW") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f"size {text!r} is not S or HxW")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="output folder (required unless --list)")
    parser.add_argument("--images", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--val-images", type=int, default=500, help="validation images (default 500)")
    parser.add_argument("--size", type=_size, default=(128, 128), help="S or HxW pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--unseen", default=None,
                        help='comma-separated unseen category names, e.g. "red circle,blue dots" '
                             '(default: the built-in 17 %% split; "" = none unseen)')
    parser.add_argument("--workers", type=int, default=None, help="processes (default min(2, CPUs))")
    parser.add_argument("--preview", action="store_true", help="also write DIR/preview.png (contact sheet)")
    parser.add_argument("--overwrite", action="store_true", help="replace a world already in --out")
    parser.add_argument("--list", action="store_true", help="print the categories and the split, write nothing")


def run(args: argparse.Namespace) -> int:

    unseen = parse_unseen(args.unseen)
    try:
        split = world_split(unseen)
    except ValueError as exc:
        print(f"zsp synth: error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for cat in split["categories"]:
            kind = "thing" if cat["isthing"] else "stuff"
            print(f"{cat['id']:3d}  {kind}  {'seen  ' if cat['seen'] else 'UNSEEN'}  {cat['name']}")
        return 0
    if args.out is None:
        print("zsp synth: error: --out is required", file=sys.stderr)
        return 2

    try:
        summary = generate_world(args.out, images=args.images, val_images=args.val_images, size=args.size,
                                 seed=args.seed, unseen=unseen, workers=args.workers,
                                 overwrite=args.overwrite, preview=args.preview)
    except (ValueError, FileExistsError) as exc:
        print(f"zsp synth: error: {exc}", file=sys.stderr)
        return 2
    n_unseen = len(split["unseen_ids"])
    print(f"wrote {summary['train_images']} train + {summary['val_images']} val images to {summary['root']} "
          f"in {summary['seconds']:.1f} s ({summary['images_per_s']:.0f} images/s, {summary['workers']} workers)")
    print(f"{len(split['categories'])} categories, {n_unseen} unseen; ZSP training view keeps "
          f"{summary['zsp_train_images']} of {summary['train_images']} images, ZSI view "
          f"{summary['zsi_train_annotations']} of {summary['instances_train_annotations']} instances")
    if args.preview:
        print(f"preview: {summary['root']}/preview.png")
    return 0
