"""Image encodings as the node reads them: layouts, the one conversion error, and conversions between pictures.

==========  =========  ========  ============================================
encoding    dtype      channels  array shape
==========  =========  ========  ============================================
rgb8        uint8      3         [H, W, 3], R G B
bgr8        uint8      3         [H, W, 3], B G R
rgba8       uint8      4         [H, W, 4], R G B A
bgra8       uint8      4         [H, W, 4], B G R A
mono8       uint8      1         [H, W]
mono16      uint16     1         [H, W]
8UC1        uint8      1         [H, W]
8UC3        uint8      3         [H, W, 3], channel order undefined
16UC1       uint16     1         [H, W] (e.g. depth in millimetres)
32SC1       int32      1         [H, W] (e.g. panoptic segment ids)
32FC1       float32    1         [H, W] (e.g. depth in metres)
==========  =========  ========  ============================================

Every malformed input anywhere in the conversion modules raises `ImageConversionError`, whose
message names the offending field and whose ``cause`` names the kind of failure. Needs only numpy.

Not pictures (``NOT_PICTURE``): one channel of measurements with no display range of its own
(16UC1 / 32FC1 depth, mono16 from IR or thermal cameras, 32SC1 ids). The node refuses them
(cause "not_picture") unless told to map them (``depth_encoding_policy: normalise``, which
scales each frame's valid values to grey with `normalise_to_grey8`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

# Why a conversion failed, for counting without reading messages:
#   encoding    unknown encoding, or not a picture where one is needed
#   empty       zero height/width or no data
#   step        step smaller than a row
#   size        data length does not match height x step, or data is not a byte buffer
#   compressed  a CompressedImage that cannot be decoded (format field, codec, broken stream)
#   too_large   over an InputLimits bound (message starts "image too large:")
#   not_picture a well-formed frame of measurements (depth, ...) refused by policy (NOT_PICTURE)
#   array       an array handed to a converter does not fit its encoding (output side)
#   other       anything else
Cause = Literal["encoding", "empty", "step", "size", "compressed", "too_large", "not_picture", "array", "other"]
CAUSES: tuple[Cause, ...] = get_args(Cause)


class ImageConversionError(ValueError):
    """An image message or array cannot be converted; the message names the bad field.

    ``cause`` (one of ``CAUSES``) says which kind of failure it is, set by every raise site.
    """

    def __init__(self, message: str, *, cause: Cause = "other") -> None:
        super().__init__(message)
        self.cause: Cause = cause


@dataclass(frozen=True)
class EncodingInfo:
    """Layout of one ``sensor_msgs/Image`` encoding: element dtype and channels per pixel."""

    dtype: np.dtype          # native-endian element type
    channels: int

    @property
    def pixel_bytes(self) -> int:
        return self.dtype.itemsize * self.channels


# Encodings with a defined colour meaning, the only ones `convert_encoding` and the
# compressed codecs accept. 8UC3 has no channel order; 32SC1 / 32FC1 are not pictures.
COLOUR_ORDER = {"rgb8": "RGB", "bgr8": "BGR", "rgba8": "RGBA", "bgra8": "BGRA"}


GRAY8 = {"mono8", "8UC1"}


GRAY16 = {"mono16", "16UC1"}


PICTURE_ENCODINGS = set(COLOUR_ORDER) | GRAY8 | GRAY16


NOT_PICTURE = {"16UC1", "mono16", "32FC1", "32SC1"}   # measurements: refused unless normalised (docstring)


DEPTH_POLICIES = ("refuse", "normalise")


BIG_ENDIAN_HOST = sys.byteorder == "big"


def encoding_info(encoding: str) -> EncodingInfo:
    """Layout of ``encoding``; raises ImageConversionError naming ``encoding`` if unknown."""
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageConversionError(
            f"encoding {encoding!r} is not supported; supported encodings: "
            f"{', '.join(ENCODINGS)}", cause="encoding") from None


def as_byte_array(data: Any, field: str = "data") -> np.ndarray:
    """uint8 [N] view of a message's byte buffer (array.array, bytes, ...); list -> copy."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _not_bytes(field, exc) from None


def byte_length(data: Any, field: str = "data") -> int:
    """Bytes in a message's byte buffer (or items in a list of ints), without converting it: O(1)."""
    try:
        return memoryview(data).nbytes
    except TypeError:
        try:
            return len(data)
        except TypeError as exc:
            raise _not_bytes(field, exc) from None


def _not_bytes(field: str, exc: Exception) -> ImageConversionError:
    return ImageConversionError(
        f"{field} must be a byte buffer or a sequence of ints in [0, 255]: {exc}", cause="size")


def check_picture_encoding(encoding: str) -> None:
    if encoding not in PICTURE_ENCODINGS:
        raise ImageConversionError(
            f"encoding {encoding!r} cannot be shown as RGB (not a colour or grey picture); "
            f"publish one of {', '.join(sorted(PICTURE_ENCODINGS))}", cause="encoding")


def not_picture_error(encoding: str) -> ImageConversionError:
    """The refusal of a frame whose ``encoding`` is in NOT_PICTURE (cause "not_picture")."""
    return ImageConversionError(
        f"encoding {encoding!r} holds measurements (depth, IR, ids), not a picture: refused. Publish a colour "
        f"or mono8 image, or set depth_encoding_policy:=normalise to segment each frame's range scaled to "
        f"grey", cause="not_picture")


def normalise_to_grey8(arr: np.ndarray) -> np.ndarray:
    """uint8 [H, W] grey from a one-channel measurement image [H, W] (any numeric dtype).

    Valid values (finite and non-zero: 0 and NaN mean "no reading" for depth) are scaled
    linearly so the frame's smallest becomes 0 and its largest 255; invalid pixels become 0.
    A frame with no valid value, or only one distinct value, is all 0 / all 128.
    """
    if arr.ndim != 2:
        raise ImageConversionError(f"a measurement image must be [H, W], got shape {arr.shape}", cause="array")
    values = arr.astype(np.float32, copy=False)
    valid = np.isfinite(values) & (values != 0)
    if not valid.any():
        return np.zeros(arr.shape, np.uint8)
    low, high = float(values[valid].min()), float(values[valid].max())
    if high <= low:
        return np.where(valid, np.uint8(128), np.uint8(0))
    scaled = (np.where(valid, values, low) - low) * np.float32(255.0 / (high - low))
    out = np.rint(scaled).astype(np.uint8)
    out[~valid] = 0
    return out


def convert_encoding(arr: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert a picture array between rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, mono16, 16UC1.

    Channel order is rearranged, alpha dropped (or added opaque), colour reduced to grey
    with ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B, as OpenCV), grey replicated to
    colour, 16-bit reduced to 8-bit by ``v >> 8`` and 8-bit widened by ``v * 257``.
    Returns ``arr`` itself when nothing changes, else a new C-contiguous array.

    Raises:
        ImageConversionError: ``src`` or ``dst`` is not a picture encoding (8UC3 has no
            channel order; 32SC1 and 32FC1 are not pictures), or ``arr`` does not fit ``src``.
    """
    for name, enc in (("source", src), ("target", dst)):
        if enc not in PICTURE_ENCODINGS:
            raise ImageConversionError(
                f"{name} encoding {enc!r} has no colour meaning; convertible encodings: "
                f"{', '.join(sorted(PICTURE_ENCODINGS))}", cause="encoding")
    info = ENCODINGS[src]
    want_shape_tail = (info.channels,) if info.channels > 1 else ()
    if arr.dtype != info.dtype or arr.ndim != 2 + len(want_shape_tail) \
            or arr.shape[2:] != want_shape_tail:
        raise ImageConversionError(
            f"array of shape {arr.shape} and dtype {arr.dtype} does not fit encoding {src!r}", cause="array")
    if src == dst or {src, dst} <= GRAY8 or {src, dst} <= GRAY16:
        return arr

    if src in COLOUR_ORDER and dst in COLOUR_ORDER:       # reorder, drop or add alpha
        order_src = COLOUR_ORDER[src]
        planes = [arr[..., order_src.index(c)] if c in order_src else None for c in COLOUR_ORDER[dst]]
        return _stack_planes(planes)

    if src in COLOUR_ORDER:                          # colour -> grey
        order = COLOUR_ORDER[src]
        luma = (np.float32(0.299) * arr[..., order.index("R")]
                + np.float32(0.587) * arr[..., order.index("G")]
                + np.float32(0.114) * arr[..., order.index("B")])
        grey = np.rint(luma).astype(np.uint8)     # luma <= 255 by construction
        return grey if dst in GRAY8 else grey.astype(np.uint16) * np.uint16(257)

    grey8 = (arr >> 8).astype(np.uint8) if src in GRAY16 else arr
    if dst in GRAY8:
        return grey8
    if dst in GRAY16:
        return grey8.astype(np.uint16) * np.uint16(257)
    return _stack_planes([None if c == "A" else grey8 for c in COLOUR_ORDER[dst]])   # grey -> colour


def _stack_planes(planes: list[np.ndarray | None]) -> np.ndarray:
    """uint8 [H, W, len(planes)] from [H, W] planes; None = opaque alpha (255).

    One strided write per channel: faster than fancy indexing on the last axis, whose
    result is not C-contiguous.
    """
    shape = next(p for p in planes if p is not None).shape
    out = np.empty(shape + (len(planes),), np.uint8)
    for k, plane in enumerate(planes):
        out[..., k] = 255 if plane is None else plane
    return out


ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(np.dtype(np.uint8), 3),
    "bgr8": EncodingInfo(np.dtype(np.uint8), 3),
    "rgba8": EncodingInfo(np.dtype(np.uint8), 4),
    "bgra8": EncodingInfo(np.dtype(np.uint8), 4),
    "mono8": EncodingInfo(np.dtype(np.uint8), 1),
    "mono16": EncodingInfo(np.dtype(np.uint16), 1),
    "8UC1": EncodingInfo(np.dtype(np.uint8), 1),
    "8UC3": EncodingInfo(np.dtype(np.uint8), 3),
    "16UC1": EncodingInfo(np.dtype(np.uint16), 1),
    "32SC1": EncodingInfo(np.dtype(np.int32), 1),
    "32FC1": EncodingInfo(np.dtype(np.float32), 1),
}
