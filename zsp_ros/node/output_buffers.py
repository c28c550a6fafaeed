"""Reused output messages: one sensor_msgs/Image and its data buffer per output topic.

rclpy serialises a message inside ``publish``, so the same Image object and its ``array.array``
data buffer can carry the next frame as soon as ``publish`` returns. `OutputBuffers.image` hands
out the message for a key with its header and layout set and a numpy view of its data
(``[H, W]`` or ``[H, W, C]`` of the encoding's dtype) to write the pixels into: no per-frame
allocation and one write per pixel, instead of building an array, copying it into a new buffer
and letting the old one go. A buffer is replaced only when the size or encoding changes. Only one
thread (the node's inference thread) may use an instance.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from zsp_ros.node.image_encodings import BIG_ENDIAN_HOST, encoding_info


@dataclass
class _Entry:
    layout: tuple[int, int, str]
    message: Any
    view: np.ndarray


class OutputBuffers:
    """Image messages reused per key ("id_image", "semantic", "color_mask", ...)."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self.allocations = 0                  # buffers created so far (tests and benchmarks read it)

    def image(self, key: str, *, height: int, width: int, encoding: str, header: Any) -> tuple[Any, np.ndarray]:
        """(sensor_msgs/Image with ``header`` and the layout set, writable view of its pixels).

        The view is [H, W] for one-channel encodings, else [H, W, C], of the encoding's native dtype;
        its old content is the previous frame's (overwrite all of it).
        """
        layout = (int(height), int(width), str(encoding))
        entry = self._entries.get(key)
        if entry is None or entry.layout != layout:
            entry = self._entries[key] = self._allocate(layout)
        entry.message.header = header
        return entry.message, entry.view

    def _allocate(self, layout: tuple[int, int, str]) -> _Entry:
        from sensor_msgs.msg import Image

        height, width, encoding = layout
        if height <= 0 or width <= 0:
            raise ValueError(f"an output image needs a positive size, got {height} x {width}")
        info = encoding_info(encoding)
        data = array.array("B", bytes(height * width * info.pixel_bytes))
        shape = (height, width) if info.channels == 1 else (height, width, info.channels)
        view = np.frombuffer(data, dtype=info.dtype).reshape(shape)      # writable: array.array is
        # check_fields=True: the data setter then keeps an array.array('B') as it is; without it, it copies.
        msg = Image(check_fields=True, height=height, width=width, encoding=encoding,
                    is_bigendian=int(BIG_ENDIAN_HOST), step=width * info.pixel_bytes)
        msg.data = data
        if msg.data is not data:
            raise RuntimeError("sensor_msgs/Image copied its data buffer; output buffers cannot be reused")
        self.allocations += 1
        return _Entry(layout=layout, message=msg, view=view)
