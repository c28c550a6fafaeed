"""The bag `zsp run --write-bag` writes: the node's own messages for every frame of an input bag.

Per input frame, stamped like the input (the record's receive time, the message headers copied
from the input image: stamp and frame_id):

- the input image topic, copied byte for byte;
- ``panoptic_topic``: zsp_msgs/PanopticSegmentation built by the node's builder
  (zsp_ros.node.messages.panoptic_message: 32SC1 id image, segments with labels, category-set
  version, per-stage timings);
- ``overlay_topic``: sensor_msgs/Image rgb8, the node's overlay (messages.overlay_message);
- ``color_mask_topic``: sensor_msgs/Image rgb8, one fixed colour per category id, void black
  (zsp_ros.drawing.palette.paint_color_mask).

Messages are built with rclpy's message classes and serialised by rclpy (exactly what the node
publishes); the rosbag2 MCAP file is written by ``rosbags``, with the zsp_msgs definitions read from
the installed interface package, so `ros2 bag play` and ``rosbags`` readers know the types.
`check_can_write` says, before any model is loaded, why a bag cannot be written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zsp_ros.drawing.palette import paint_color_mask
from zsp_ros.node.messages import overlay_message, panoptic_message
from zsp_ros.node.raw_image import numpy_to_image

ZSP_TYPES = ("Segment", "PanopticSegmentation")     # dependencies first
PANOPTIC_TYPE = "zsp_msgs/msg/PanopticSegmentation"
IMAGE_TYPE = "sensor_msgs/msg/Image"


class BagUnavailable(RuntimeError):
    """--write-bag cannot apply here; the message says why and what to do."""


def _msg_folder() -> Path:
    """The installed zsp_msgs ``share/zsp_msgs/msg`` folder (its .msg definitions)."""
    try:
        import zsp_msgs
    except ImportError:
        raise BagUnavailable("--write-bag writes zsp_msgs/PanopticSegmentation, but the zsp_msgs interfaces are "
                             "not importable: build the msg package and source its workspace (README, On a "
                             "robot)") from None
    package = Path(zsp_msgs.__file__).resolve().parent            # <prefix>/lib/pythonX.Y/site-packages/zsp_msgs
    candidates = [parent / "share" / "zsp_msgs" / "msg" for parent in package.parents]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.insert(0, Path(get_package_share_directory("zsp_msgs")) / "msg")
        except (PackageNotFoundError, OSError):            # not in the index, or AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    for folder in candidates:
        if all((folder / f"{name}.msg").is_file() for name in ZSP_TYPES):
            return folder
    raise BagUnavailable(f"--write-bag: the zsp_msgs message definitions (.msg) were not found next to "
                         f"{package} (looked in <prefix>/share/zsp_msgs/msg); reinstall the msg package")


def check_can_write(path: Path, *, input_kind: str, input_path: str) -> Path:
    """Why a bag cannot be written to ``path`` for this input, as `BagUnavailable`; else the .msg folder.

    Checks: the input is a bag (folders and videos have no headers to keep), ``path`` does not
    exist, ``rosbags``, rclpy and zsp_msgs import, and the zsp_msgs definitions are installed.
    """
    if input_kind != "bag":
        raise BagUnavailable(f"--write-bag applies to bag input only; {input_path} is {'an image folder' if input_kind == 'images' else 'a video'} "
                             "(its frames have no stamp or frame_id to keep)")
    if path.exists():
        raise BagUnavailable(f"--write-bag: {path} already exists; remove it or choose another --out")
    try:
        import rosbags  # noqa: F401
    except ImportError:
        raise BagUnavailable("--write-bag needs the rosbags package (pip install rosbags)") from None
    try:
        import rclpy.serialization  # noqa: F401
    except ImportError:
        raise BagUnavailable("--write-bag builds the node's messages with rclpy, which is not importable here: "
                             "source ROS 2 (or install the ros-rclpy wheels)") from None
    return _msg_folder()


def header_of(msgtype: str, raw: bytes) -> tuple[int, int, str]:
    """(sec, nanosec, frame_id) of a CDR-serialised sensor_msgs Image / CompressedImage."""
    from rosbags.typesys import Stores, get_typestore

    header = get_typestore(Stores.ROS2_HUMBLE).deserialize_cdr(raw, msgtype).header
    return int(header.stamp.sec), int(header.stamp.nanosec), str(header.frame_id)


class ResultBag:
    """A rosbag2 (MCAP) of the copied input topic plus the node's messages per frame.

    Args:
        path: the bag folder to create (must not exist; see `check_can_write`).
        msg_folder: the zsp_msgs .msg folder `check_can_write` returned.
        panoptic_topic, overlay_topic, color_mask_topic: output topics; "" leaves a topic out.
    """

    def __init__(self, path: Path, *, msg_folder: Path, panoptic_topic: str, overlay_topic: str,
                 color_mask_topic: str) -> None:
        from rclpy.serialization import serialize_message
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        self.store = get_typestore(Stores.ROS2_HUMBLE)
        types: dict[str, Any] = {}
        for name in ZSP_TYPES:
            types.update(get_types_from_msg((msg_folder / f"{name}.msg").read_text(), f"zsp_msgs/msg/{name}"))
        self.store.register(types)
        self._serialize = serialize_message
        self.topics = {"panoptic": panoptic_topic, "overlay": overlay_topic, "color_mask": color_mask_topic}
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def _write(self, topic: str, msgtype: str, stamp_ns: int, raw: bytes) -> None:
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        self.writer.write(self.conns[topic], stamp_ns, raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def add(self, *, stamp_ns: int, header: tuple[int, int, str], input_topic: str, input_msgtype: str,
            input_raw: bytes, rgb: np.ndarray, result: Any, overlay: bool = True) -> None:
        """Write one frame: the input copy and the node's messages.

        Args:
            stamp_ns: the input record's receive time (ns), used for every record of this frame.
            header: the input image's (sec, nanosec, frame_id) (`header_of`), copied to every message.
            input_topic, input_msgtype, input_raw: the input message as read from the bag.
            rgb: the decoded input, uint8 [H, W, 3]; result: its `SegmentationResult`.
            overlay: write the overlay topic (False for ``--no-overlay``).
        """
        from builtin_interfaces.msg import Time
        from std_msgs.msg import Header

        sec, nanosec, frame_id = header
        ros_header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)
        self._write(input_topic, input_msgtype, stamp_ns, input_raw)
        if self.topics["panoptic"]:
            self._write(self.topics["panoptic"], PANOPTIC_TYPE, stamp_ns,
                        self._serialize(panoptic_message(result, ros_header)))
        if self.topics["overlay"] and overlay:
            self._write(self.topics["overlay"], IMAGE_TYPE, stamp_ns,
                        self._serialize(overlay_message(rgb, result, ros_header)))
        if self.topics["color_mask"]:
            mask = paint_color_mask(result.panoptic, result.segments)
            self._write(self.topics["color_mask"], IMAGE_TYPE, stamp_ns,
                        self._serialize(numpy_to_image(mask, "rgb8", header=ros_header)))

    def close(self) -> None:
        self.writer.close()
