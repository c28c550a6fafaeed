"""Frames from recorded data: a rosbag2 folder or .mcap/.db3 file, a folder of images, or a video.

``open_frames(path, *, topic=None, decode=None)`` returns ``(kind, iterator of Frame)``. Bags are
read with the pure-Python ``rosbags`` package (no ROS install); ``decode`` turns a
deserialised ``sensor_msgs/Image`` or ``CompressedImage`` into uint8 [H, W, 3] RGB (the CLI
passes zsp_ros.node.image_conversion.to_rgb8). Videos need ``imageio`` (with a video plugin);
without it a clear error says so. Image folders are read with Pillow, in file-name order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclass
class Frame:
    """One frame. rgb: uint8 [H, W, 3]; stamp_ns: bag receive time (ns), or the index for folders/videos;
    name: a file-name stem for outputs; topic/msgtype/raw: the bag message (None elsewhere)."""
    index: int
    rgb: np.ndarray
    stamp_ns: int
    name: str
    topic: str | None = None
    msgtype: str | None = None
    raw: bytes | None = None


def input_kind(path: str | os.PathLike) -> str:
    """"bag" (rosbag2 folder with metadata.yaml, .mcap, .db3), "images" (folder), "video" (file)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input {p} does not exist")
    if p.is_dir():
        return "bag" if (p / "metadata.yaml").is_file() or any(p.glob("*.mcap")) else "images"
    if p.suffix in (".mcap", ".db3"):
        return "bag"
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    raise ValueError(f"input {p}: not a bag (.mcap, .db3, rosbag2 folder), image folder or video "
                     f"({', '.join(VIDEO_SUFFIXES)})")


def _bag_frames(path: Path, topic: str | None, decode: Callable[[Any], np.ndarray]) -> Iterator[Frame]:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        images = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
        if topic is not None:
            chosen = [c for c in images if c.topic == topic]
        else:
            topics = sorted({c.topic for c in images})
            if len(topics) > 1:
                raise ValueError(f"bag {path} has several image topics ({', '.join(topics)}); choose one with --topic")
            chosen = images
        if not chosen:
            found = ", ".join(sorted(f"{c.topic} [{c.msgtype}]" for c in reader.connections)) or "none"
            raise ValueError(f"bag {path} has no sensor_msgs Image/CompressedImage topic "
                             f"{topic or ''}; its topics: {found}")
        for i, (conn, stamp, raw) in enumerate(reader.messages(connections=chosen)):
            msg = reader.deserialize(raw, conn.msgtype)
            yield Frame(index=i, rgb=decode(msg), stamp_ns=int(stamp), name=f"{i:06d}", topic=conn.topic,
                        msgtype=conn.msgtype, raw=raw)


def _image_frames(path: Path) -> Iterator[Frame]:
    from PIL import Image

    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder {path} holds no {', '.join(IMAGE_SUFFIXES)} files")
    for i, f in enumerate(files):
        with Image.open(f) as im:
            rgb = np.asarray(im.convert("RGB"))
        yield Frame(index=i, rgb=rgb, stamp_ns=i, name=f.stem)


def _video_frames(path: Path) -> Iterator[Frame]:
    try:
        import imageio.v3 as iio
    except ImportError:
        raise RuntimeError(f"reading video {path} needs imageio with a video plugin "
                           f"(pip install imageio imageio-ffmpeg, or pyav); or extract frames to an image folder") from None
    for i, frame in enumerate(iio.imiter(path)):
        rgb = np.asarray(frame)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=-1)
        yield Frame(index=i, rgb=np.ascontiguousarray(rgb[..., :3]), stamp_ns=i, name=f"{i:06d}")


def open_frames(path: str | os.PathLike, *, topic: str | None = None,
                decode: Callable[[Any], np.ndarray] | None = None) -> tuple[str, Iterator[Frame]]:
    """(kind, frames) of ``path``; a bag needs ``decode`` (message -> RGB uint8 [H, W, 3])."""
    p = Path(path)
    kind = input_kind(p)
    if kind == "bag":
        if decode is None:
            raise ValueError("reading a bag needs decode= (message -> RGB array)")
        return kind, _bag_frames(p, topic, decode)
    if kind == "images":
        return kind, _image_frames(p)
    return kind, _video_frames(p)
