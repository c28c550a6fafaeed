"""sensor_msgs/Image <-> numpy: layout checks, zero-copy views, tightly packed messages.

``image_to_numpy`` honours ``step`` (padded rows) and ``is_bigendian`` and, where the data is
already native-endian, returns a zero-copy view of ``msg.data``; frames over the InputLimits
(pixels, data bytes) are refused from the header fields alone, before the data is touched. ``numpy_to_image`` builds a
tightly packed (``step = width * pixel bytes``), native-endian message. Layouts: image_encodings.py.
"""
from __future__ import annotations

import array
from typing import Any

import numpy as np

from zsp_ros.node.image_encodings import (
    BIG_ENDIAN_HOST,
    EncodingInfo,
    ImageConversionError,
    as_byte_array,
    byte_length,
    encoding_info,
)
from zsp_ros.node.input_limits import DEFAULT_LIMITS, InputLimits


def raw_layout(msg: Any, limits: InputLimits = DEFAULT_LIMITS) -> tuple[EncodingInfo, int, int, int, np.ndarray]:
    """(encoding info, height, width, step, data as a uint8 view) of a raw Image, checked against each other.

    The size limits are checked from the header fields and ``len(data)`` before the data is
    converted (a list of ints would be copied).
    """
    info = encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(
            f"image is empty: height={height}, width={width} (both must be > 0)", cause="empty")
    if width * height > limits.max_pixels:
        raise ImageConversionError(
            f"image too large: Image of {width} x {height} (width x height) = {width * height} pixels, "
            f"over max_pixels={limits.max_pixels}", cause="too_large")
    size = byte_length(msg.data)
    if size > limits.max_raw_bytes:
        raise ImageConversionError(
            f"image too large: Image data has {size} bytes, over max_raw_bytes={limits.max_raw_bytes}",
            cause="too_large")
    row_bytes = width * info.pixel_bytes
    if step < row_bytes:
        raise ImageConversionError(
            f"step={step} is smaller than width x pixel bytes = {width} x {info.pixel_bytes} "
            f"= {row_bytes} for encoding {msg.encoding!r}", cause="step")
    raw = as_byte_array(msg.data)                    # a view for buffers: no copy
    if raw.size != height * step:
        raise ImageConversionError(
            f"data has {raw.size} bytes but height x step = {height} x {step} = "
            f"{height * step} for encoding {msg.encoding!r}", cause="size")
    return info, height, width, step, raw


def image_to_numpy(msg: Any, *, copy: bool = False, limits: InputLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into a native-endian array (layout: module docstring).

    Args:
        msg: a ``sensor_msgs.msg.Image`` (or anything with its fields).
        copy: if False (default) the result is a view of ``msg.data`` whenever no byte
            swap is needed (it may then be non-contiguous for padded rows and read-only
            for ``bytes`` data); if True it is always a fresh C-contiguous array.
        limits: size bounds (pixels, data bytes) checked before the data is read.

    Returns:
        [H, W] for one-channel encodings, else [H, W, C].

    Raises:
        ImageConversionError: unknown ``encoding``; zero ``height`` or ``width``; over
            ``limits`` (cause "too_large"); ``step`` smaller than width x pixel bytes;
            ``data`` length different from height x step.
    """
    info, height, width, step, raw = raw_layout(msg, limits)

    big = bool(msg.is_bigendian)
    dtype = info.dtype.newbyteorder(">" if big else "<") if info.dtype.itemsize > 1 else info.dtype
    # Strided view over the (possibly padded) rows: no copy.
    view = np.ndarray(shape=(height, width, info.channels), dtype=dtype, buffer=raw,
                      strides=(step, info.pixel_bytes, info.dtype.itemsize))
    if info.channels == 1:
        view = view[:, :, 0]
    if not dtype.isnative:
        return view.astype(info.dtype)         # byte swap (one copy, C-contiguous)
    return np.array(view, order="C", copy=True) if copy else view


def numpy_to_image(array_: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Build a tightly packed, native-endian ``sensor_msgs/Image`` from an array.

    Args:
        array_: [H, W] or [H, W, 1] for one-channel encodings, [H, W, C] otherwise. Its dtype
            must be the encoding's (module docstring) or safely castable to it (e.g. uint8
            data for 32SC1); a lossy dtype is refused.
        encoding: one of ``ENCODINGS``.
        header: ``std_msgs/Header`` to copy into the message (stamp, frame_id); default empty.

    Raises:
        ImageConversionError: unknown encoding, wrong shape, unsafe dtype or empty array.
    """
    from sensor_msgs.msg import Image

    info = encoding_info(encoding)
    arr = np.asarray(array_)
    if arr.ndim == 3 and info.channels == 1 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    want_ndim = 2 if info.channels == 1 else 3
    if arr.ndim != want_ndim or (want_ndim == 3 and arr.shape[2] != info.channels):
        want = "[H, W]" if info.channels == 1 else f"[H, W, {info.channels}]"
        raise ImageConversionError(
            f"array shape {arr.shape} does not fit encoding {encoding!r}: expected {want}", cause="array")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageConversionError(f"array is empty: shape {arr.shape}", cause="empty")
    if arr.dtype != info.dtype:
        if not np.can_cast(arr.dtype, info.dtype, casting="safe"):
            raise ImageConversionError(
                f"array dtype {arr.dtype} cannot be stored losslessly as {info.dtype} "
                f"(encoding {encoding!r}); convert it first", cause="array")
        arr = arr.astype(info.dtype)
    arr = np.ascontiguousarray(arr)             # no copy when already packed and native

    msg = Image(check_fields=True)            # keeps the array.array given to data (else a second copy)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(BIG_ENDIAN_HOST)
    msg.step = int(arr.shape[1]) * info.pixel_bytes
    msg.data = _to_byte_array(arr)
    return msg


def _to_byte_array(arr: np.ndarray) -> array.array[int]:
    """One memcpy into the array.array('B') rclpy stores (no per-byte Python checks)."""
    out = array.array("B")
    out.frombytes(arr.data.cast("B"))             # arr.data: memoryview(arr)
    return out
