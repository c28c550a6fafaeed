"""`zsp run --kit KIT --input {bag.mcap, rosbag2_dir, image_dir, video} --out DIR`: segment every frame.

Writes ``DIR/panoptic/NAME.png`` (COCO panoptic PNG), ``DIR/panoptic.json`` (COCO panoptic
predictions, categories with their names; for bag input ``images[]`` also carries ``stamp_ns``, the
record's receive time, and the input header's ``header_stamp`` {sec, nanosec} and ``frame_id``),
``DIR/overlay/NAME.png``, and with ``--write-bag`` a new rosbag2 (MCAP) ``DIR/bag`` holding, per
input frame, the input image (copied), the node's zsp_msgs/PanopticSegmentation on
``--panoptic-topic``, its rgb8 overlay on ``--overlay-topic`` and the rgb8 colour mask on
``--color-mask-topic``, every header copied from the input (stamp, frame_id) and every record at
the input's receive time (zsp_ros.cli.run_bag). ``--add NAMES`` adds categories by name before the
first frame and ``--state DIR`` starts from (and saves to) a registry state folder, as the node's
``state_dir`` does. ``--write-bag`` problems (input not a bag, DIR/bag exists, rosbags / rclpy /
zsp_msgs missing) are reported before the model loads. Exit 0 on success, 2 on bad input / kit.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from zsp_ros.cli.run_bag import BagUnavailable, ResultBag, check_can_write, header_of
from zsp_ros.data.frame_sources import input_kind, open_frames
from zsp_ros.drawing.overlay import draw_overlay
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import KitError
from zsp_ros.node.image_conversion import to_rgb8
from zsp_ros.runtime.category_requests import CategoryError
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.runtime.state_store import StateLockedError
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads
from zsp_ros.utils.provenance import atomic_write_bytes, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kit", help="model kit directory (default: the embedded kit)")
    parser.add_argument("--input", required=True, help="bag (.mcap, .db3, rosbag2 folder), image folder or video")
    parser.add_argument("--topic", help="image topic of a bag (needed when it has several)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--write-bag", action="store_true",
                        help="also write DIR/bag: the input topic plus the node's panoptic, overlay and colour-mask "
                             "messages (bag input only)")
    parser.add_argument("--panoptic-topic", default="/zsp/panoptic", help="zsp_msgs/PanopticSegmentation topic")
    parser.add_argument("--overlay-topic", default="/zsp/overlay", help="rgb8 overlay topic")
    parser.add_argument("--color-mask-topic", default="/zsp/color_mask",
                        help="rgb8 colour mask topic (one colour per category id); '' leaves it out")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs and topic")
    parser.add_argument("--add", default=None,
                        help='categories to add by name before the first frame, comma-separated: "purple star,teal cone"')
    parser.add_argument("--state", default=None,
                        help="registry state folder: start from (and save) its categories, like the node's state_dir "
                             "(default: the kit's categories only)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="torch")
    add_threads_argument(parser)


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _add_categories(segmenter: Segmenter, text: str) -> str:
    """Add the comma-separated names; returns the line to print. Raises CategoryError."""
    names = [n.strip() for n in text.split(",")]
    added = segmenter.registry.add(names)
    timing = segmenter.registry.last_timings_ms.get("total", float("nan"))
    return f"added {', '.join(f'{c.name} (id {c.id})' for c in added)} in {timing:.0f} ms"


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        kind = input_kind(args.input)
        msg_folder = check_can_write(out / "bag", input_kind=kind, input_path=args.input) if args.write_bag else None
        threads = apply_threads(args.threads)
        _, frames = open_frames(args.input, topic=args.topic, decode=to_rgb8)
        segmenter = Segmenter.from_kit(resolve_kit(args.kit), backend=args.backend, device=args.device,
                                       state_dir=args.state, backend_options={"threads": threads})
    except (FileNotFoundError, ValueError, KitError, BagUnavailable, StateLockedError, RuntimeError) as exc:
        print(f"zsp run: error: {exc}", file=sys.stderr)
        return 2
    bag: ResultBag | None = None
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    try:
        with segmenter:
            if segmenter.registry.load_problem:
                print(f"zsp run: warning: {segmenter.registry.load_problem}", file=sys.stderr)
            if args.add:
                try:
                    print(_add_categories(segmenter, args.add))
                except CategoryError as exc:
                    print(f"zsp run: error: cannot add categories: {exc}", file=sys.stderr)
                    return 2
            (out / "panoptic").mkdir(parents=True, exist_ok=True)
            if not args.no_overlay:
                (out / "overlay").mkdir(parents=True, exist_ok=True)
            if msg_folder is not None:
                bag = ResultBag(out / "bag", msg_folder=msg_folder, panoptic_topic=args.panoptic_topic,
                                overlay_topic=args.overlay_topic, color_mask_topic=args.color_mask_topic)
            start = time.perf_counter()
            for frame in frames:
                if args.max_frames and frame.index >= args.max_frames:
                    break
                result = segmenter.segment(frame.rgb)
                name = f"{frame.name}.png"
                atomic_write_bytes(out / "panoptic" / name, _png(result.panoptic_rgb()))
                if not args.no_overlay:
                    atomic_write_bytes(out / "overlay" / name,
                                       _png(draw_overlay(frame.rgb, result.panoptic, result.segments)))
                image_id = frame.index + 1
                record: dict[str, Any] = {"id": image_id, "file_name": name, "height": int(frame.rgb.shape[0]),
                                          "width": int(frame.rgb.shape[1]), "stamp_ns": frame.stamp_ns}
                if frame.raw is not None and frame.topic and frame.msgtype:      # bag input: keep its header
                    header = header_of(frame.msgtype, frame.raw)
                    record.update(header_stamp={"sec": header[0], "nanosec": header[1]}, frame_id=header[2])
                    if bag is not None:
                        bag.add(stamp_ns=frame.stamp_ns, header=header, input_topic=frame.topic,
                                input_msgtype=frame.msgtype, input_raw=frame.raw, rgb=frame.rgb, result=result,
                                overlay=not args.no_overlay)
                images.append(record)
                annotations.append(result.coco_annotation(image_id=image_id, file_name=name))
                rate = len(images) / max(time.perf_counter() - start, 1e-9)
                print(f"\rframe {len(images)} ({len(result.segments)} segments, {rate:.1f} frames/s)", end="",
                      file=sys.stderr, flush=True)
            cats = segmenter.registry.list()
    except (ValueError, RuntimeError) as exc:
        print(f"\nzsp run: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bag is not None:
            bag.close()
    print("", file=sys.stderr)
    write_json(out / "panoptic.json", {
        "info": {"description": "zsp run", "input": str(args.input), "input_kind": kind,
                 "category_set_version": cats.version, "threads": threads, "command": sys.argv},
        "images": images, "annotations": annotations,
        "categories": [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "supercategory": c.origin}
                       for c in cats]})
    print(f"wrote {len(images)} frames to {out}" + (f" and the bag {out / 'bag'}" if bag is not None else ""))
    return 0
