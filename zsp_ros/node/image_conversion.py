"""The node's picture input: sensor_msgs/Image or CompressedImage -> uint8 RGB, without cv_bridge.

PyPI's ``cv-bridge`` is the 2020 ROS 1 copy (breaks under numpy 2, maps 16UC1 to uint8), so the
node uses these modules instead: image_encodings.py (layouts, conversions, the error type),
raw_image.py (Image), compressed_image.py (CompressedImage through Pillow). This module is the
front door: `check_picture` (cheap header check) and `to_rgb8` (decode and convert).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from zsp_ros.node.compressed_image import compressed_to_numpy, parse_format
from zsp_ros.node.image_encodings import ImageConversionError, as_byte_array, check_picture_encoding, convert_encoding
from zsp_ros.node.raw_image import image_to_numpy, raw_layout


def check_picture(msg: Any) -> None:
    """Raise ImageConversionError for what can be told wrong without decoding; O(1), copies nothing.

    Raw Image: the encoding (known and a picture), height/width/step and the data length.
    CompressedImage: empty data and the ``format`` field (codec, original encoding); whether the
    bytes decode is only known by decoding (``to_rgb8``). A message that passes may still fail
    ``to_rgb8``; one that fails here always would.
    """
    if hasattr(msg, "format"):                  # sensor_msgs/CompressedImage
        data = as_byte_array(msg.data)
        if data.size == 0:
            raise ImageConversionError("data is empty (0 bytes)")
        parse_format(msg.format, data)
        return
    raw_layout(msg)
    check_picture_encoding(msg.encoding)


def to_rgb8(msg: Any) -> np.ndarray:
    """The picture of an Image or CompressedImage as C-contiguous uint8 [H, W, 3] RGB.

    Zero-copy for a tightly packed rgb8 Image; bgr/rgba/bgra/mono/16-bit grey are converted
    (see ``convert_encoding``). Raises ImageConversionError for 8UC3, 32SC1, 32FC1 and for
    every malformed message.
    """
    if hasattr(msg, "format"):                  # sensor_msgs/CompressedImage
        arr, encoding = compressed_to_numpy(msg)
    else:
        arr, encoding = image_to_numpy(msg), msg.encoding
    check_picture_encoding(encoding)
    return np.ascontiguousarray(convert_encoding(arr, encoding, "rgb8"))

