"""`zsp run --kit KIT --input {bag.mcap, rosbag2_dir, image_dir, video} --out DIR`: segment every frame.

Writes ``DIR/panoptic/NAME.png`` (COCO panoptic PNG), ``DIR/panoptic.json`` (COCO panoptic
predictions; ``images[].stamp_ns`` is the bag receive time), ``DIR/overlay/NAME.png``, and with
``--write-bag`` a new rosbag2 (MCAP) ``DIR/bag`` holding the input image topic (copied) plus
``--panoptic-topic`` (sensor_msgs/Image rgb8, COCO panoptic encoding id = R + 256 G + 256² B)
and ``--overlay-topic`` (rgb8), stamped with the input's receive time. No ROS install needed
(rosbags). Exit 0 on success, 2 on bad input / kit.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from zsp_ros.data.frame_sources import open_frames
from zsp_ros.drawing.overlay import draw_overlay
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import KitError
from zsp_ros.node.image_conversion import to_rgb8
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.utils.provenance import atomic_write_bytes, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kit", help="model kit directory (default: the embedded kit)")
    parser.add_argument("--input", required=True, help="bag (.mcap, .db3, rosbag2 folder), image folder or video")
    parser.add_argument("--topic", help="image topic of a bag (needed when it has several)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--write-bag", action="store_true", help="also write DIR/bag with the panoptic topics")
    parser.add_argument("--panoptic-topic", default="/zsp/panoptic")
    parser.add_argument("--overlay-topic", default="/zsp/overlay")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs and topic")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="torch")


class _BagOut:
    """rosbag2 MCAP writer of the copied input topic + panoptic/overlay images."""

    def __init__(self, path: Path, *, topics: dict[str, str]) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.store = get_typestore(Stores.ROS2_HUMBLE)
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.topics = topics
        self.conns: dict[str, Any] = {}

    def _conn(self, topic: str, msgtype: str) -> Any:
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        return self.conns[topic]

    def copy(self, topic: str, msgtype: str, stamp_ns: int, raw: bytes) -> None:
        self.writer.write(self._conn(topic, msgtype), stamp_ns, raw)

    def image(self, topic: str, stamp_ns: int, rgb, frame_id: str = "") -> None:
        import numpy as np

        t = self.store.types
        msgtype = "sensor_msgs/msg/Image"
        stamp = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        h, w = rgb.shape[:2]
        msg = t[msgtype](header=t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id), height=h, width=w,
                         encoding="rgb8", is_bigendian=0, step=3 * w,
                         data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1))
        self.writer.write(self._conn(topic, msgtype), stamp_ns, self.store.serialize_cdr(msg, msgtype))

    def close(self) -> None:
        self.writer.close()


def run(args: argparse.Namespace) -> int:
    import io

    from PIL import Image


    try:
        kind, frames = open_frames(args.input, topic=args.topic, decode=to_rgb8)
        segmenter = Segmenter.from_kit(resolve_kit(args.kit), backend=args.backend, device=args.device)
    except (FileNotFoundError, ValueError, KitError) as exc:
        print(f"zsp run: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    (out / "panoptic").mkdir(parents=True, exist_ok=True)
    if not args.no_overlay:
        (out / "overlay").mkdir(parents=True, exist_ok=True)
    bag = None
    images, annotations = [], []
    start = time.perf_counter()

    def png(array) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    try:
        with segmenter:
            for frame in frames:
                if args.max_frames and frame.index >= args.max_frames:
                    break
                result = segmenter.segment(frame.rgb)
                name = f"{frame.name}.png"
                pan = result.panoptic_rgb()
                atomic_write_bytes(out / "panoptic" / name, png(pan))
                overlay = None
                if not args.no_overlay:
                    overlay = draw_overlay(frame.rgb, result.panoptic, result.segments)
                    atomic_write_bytes(out / "overlay" / name, png(overlay))
                image_id = frame.index + 1
                images.append({"id": image_id, "file_name": name, "height": int(frame.rgb.shape[0]),
                               "width": int(frame.rgb.shape[1]), "stamp_ns": frame.stamp_ns})
                annotations.append(result.coco_annotation(image_id=image_id, file_name=name))
                if args.write_bag and kind == "bag":
                    if bag is None:
                        bag = _BagOut(out / "bag", topics={})
                    bag.copy(frame.topic, frame.msgtype, frame.stamp_ns, frame.raw)
                    bag.image(args.panoptic_topic, frame.stamp_ns, pan)
                    if overlay is not None:
                        bag.image(args.overlay_topic, frame.stamp_ns, overlay)
                done = len(images)
                rate = done / max(time.perf_counter() - start, 1e-9)
                print(f"\rframe {done} ({len(result.segments)} segments, {rate:.1f} frames/s)", end="",
                      file=sys.stderr, flush=True)
            cats = segmenter.registry.list()
    except (ValueError, RuntimeError) as exc:
        print(f"\nzsp run: {exc}", file=sys.stderr)
        return 2
    finally:
        if bag is not None:
            bag.close()
    print("", file=sys.stderr)
    if args.write_bag and kind != "bag":
        print(f"zsp run: --write-bag applies to bag input only; input {args.input} is {kind}", file=sys.stderr)
    write_json(out / "panoptic.json", {
        "info": {"description": "zsp run", "input": str(args.input), "input_kind": kind,
                 "category_set_version": cats.version, "command": sys.argv},
        "images": images, "annotations": annotations,
        "categories": [{"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in cats]})
    print(f"wrote {len(images)} frames to {out}" + (f" and the bag {out / 'bag'}" if bag is not None else ""))
    return 0
