"""The node's picture input: sensor_msgs/Image or CompressedImage -> uint8 RGB, without cv_bridge.

PyPI's ``cv-bridge`` is the 2020 ROS 1 copy (breaks under numpy 2, maps 16UC1 to uint8), so the
node uses these modules instead: image_encodings.py (layouts, conversions, the error type),
raw_image.py (Image), compressed_image.py (CompressedImage through Pillow, guarded by
compressed_headers.py), input_limits.py (how big a frame may be). This module is the front door:
`check_picture` (cheap header check) and `to_rgb8` (decode and convert).

Every failure is an ImageConversionError, never anything else; its ``cause`` is one of
image_encodings.CAUSES, and frames over the limits have cause "too_large" and a message starting
"image too large:". Frames of measurements (16UC1 / 32FC1 depth, mono16, 32SC1: NOT_PICTURE) are
refused with cause "not_picture" unless ``depth_policy`` is "normalise".
"""
from __future__ import annotations

from typing import Any

import numpy as np

from zsp_ros.node.compressed_image import check_compressed, compressed_to_numpy
from zsp_ros.node.image_encodings import (
    DEPTH_POLICIES,
    NOT_PICTURE,
    ImageConversionError,
    check_picture_encoding,
    convert_encoding,
    normalise_to_grey8,
    not_picture_error,
)
from zsp_ros.node.input_limits import DEFAULT_LIMITS, InputLimits
from zsp_ros.node.raw_image import image_to_numpy, raw_layout


def check_picture(msg: Any, *, limits: InputLimits = DEFAULT_LIMITS, depth_policy: str = "refuse") -> None:
    """Raise ImageConversionError for what can be told wrong without decoding; copies nothing.

    Raw Image, O(1): the encoding (known and a picture), height/width/step, the data length,
    and ``limits`` (pixels, data bytes). CompressedImage, cost independent of the pixels: the
    data length and ``limits.max_compressed_bytes``, the ``format`` field, and the declared
    header (PNG IHDR; JPEG segments up to the first scan) with its pixels against
    ``limits.max_pixels``. A message that passes may still fail ``to_rgb8`` (a stream broken
    or over the limits past its header, a 16-bit PNG refused by ``depth_policy``); one that fails
    here always would, with the same error. ``depth_policy``: as for `to_rgb8`.
    """
    _check_policy(depth_policy)
    if hasattr(msg, "format"):                  # sensor_msgs/CompressedImage
        check_compressed(msg, limits=limits)
        return
    raw_layout(msg, limits)
    if msg.encoding in NOT_PICTURE:
        if depth_policy != "normalise":
            raise not_picture_error(msg.encoding)
        return
    check_picture_encoding(msg.encoding)


def to_rgb8(msg: Any, *, limits: InputLimits = DEFAULT_LIMITS, depth_policy: str = "refuse") -> np.ndarray:
    """The picture of an Image or CompressedImage as C-contiguous uint8 [H, W, 3] RGB, H x W <= limits.max_pixels.

    Zero-copy for a tightly packed rgb8 Image; bgr/rgba/bgra/mono8 are converted (see
    ``convert_encoding``). ``depth_policy``: "refuse" (cause "not_picture") or "normalise" (each
    frame's valid range scaled to grey, `normalise_to_grey8`) for the NOT_PICTURE encodings.
    Raises ImageConversionError (and nothing else) for 8UC3, for refused measurements, for frames
    over ``limits`` and for every malformed message.
    """
    _check_policy(depth_policy)
    if hasattr(msg, "format"):                  # sensor_msgs/CompressedImage
        arr, encoding = compressed_to_numpy(msg, limits=limits)
    else:
        arr, encoding = image_to_numpy(msg, limits=limits), msg.encoding
    if encoding in NOT_PICTURE:
        if depth_policy != "normalise":
            raise not_picture_error(encoding)
        arr, encoding = normalise_to_grey8(arr), "mono8"
    check_picture_encoding(encoding)
    return np.ascontiguousarray(convert_encoding(arr, encoding, "rgb8"))


def _check_policy(depth_policy: str) -> None:
    if depth_policy not in DEPTH_POLICIES:
        raise ImageConversionError(f"depth_policy must be one of {', '.join(DEPTH_POLICIES)}, got {depth_policy!r}")
