"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

PyPI's ``cv-bridge`` is the 2020 ROS 1 copy (breaks under numpy 2, maps 16UC1 to uint8),
so the node uses this module instead. Importing it needs only numpy; sensor_msgs and
Pillow are imported by the functions that use them.

Array layouts (all returned arrays are native-endian):

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

``image_to_numpy`` honours ``step`` (padded rows) and ``is_bigendian`` and, where the data
is already native-endian, returns a zero-copy view of ``msg.data``. ``numpy_to_image``
builds a tightly packed (``step = width * pixel bytes``), native-endian message.
Compressed images (JPEG, PNG) go through Pillow. Every malformed input raises
``ImageConversionError`` whose message names the offending field.
"""
from __future__ import annotations

import array
import io
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


class ImageConversionError(ValueError):
    """An image message or array cannot be converted; the message names the bad field."""


@dataclass(frozen=True)
class EncodingInfo:
    """Layout of one ``sensor_msgs/Image`` encoding: element dtype and channels per pixel."""

    dtype: np.dtype          # native-endian element type
    channels: int

    @property
    def pixel_bytes(self) -> int:
        return self.dtype.itemsize * self.channels


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

# Encodings with a defined colour meaning, the only ones `convert_encoding` and the
# compressed codecs accept. 8UC3 has no channel order; 32SC1 / 32FC1 are not pictures.
_COLOUR = {"rgb8": "RGB", "bgr8": "BGR", "rgba8": "RGBA", "bgra8": "BGRA"}
_GRAY8 = {"mono8", "8UC1"}
_GRAY16 = {"mono16", "16UC1"}
_PICTURE_ENCODINGS = set(_COLOUR) | _GRAY8 | _GRAY16

_BIG_ENDIAN_HOST = sys.byteorder == "big"


def encoding_info(encoding: str) -> EncodingInfo:
    """Layout of ``encoding``; raises ImageConversionError naming ``encoding`` if unknown."""
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageConversionError(
            f"encoding {encoding!r} is not supported; supported encodings: "
            f"{', '.join(ENCODINGS)}") from None


def _as_byte_array(data: Any, field: str = "data") -> np.ndarray:
    """uint8 [N] view of a message's byte buffer (array.array, bytes, ...); list -> copy."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageConversionError(
                f"{field} must be a byte buffer or a sequence of ints in [0, 255]: {exc}") from None


# --------------------------------------------------------------------------- raw images


def _raw_layout(msg: Any) -> tuple[EncodingInfo, int, int, int, np.ndarray]:
    """(encoding info, height, width, step, data as a uint8 view) of a raw Image, checked against each other."""
    info = encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(
            f"image is empty: height={height}, width={width} (both must be > 0)")
    row_bytes = width * info.pixel_bytes
    if step < row_bytes:
        raise ImageConversionError(
            f"step={step} is smaller than width x pixel bytes = {width} x {info.pixel_bytes} "
            f"= {row_bytes} for encoding {msg.encoding!r}")
    raw = _as_byte_array(msg.data)                    # a view for buffers: no copy
    if raw.size != height * step:
        raise ImageConversionError(
            f"data has {raw.size} bytes but height x step = {height} x {step} = "
            f"{height * step} for encoding {msg.encoding!r}")
    return info, height, width, step, raw


def _check_picture_encoding(encoding: str) -> None:
    if encoding not in _PICTURE_ENCODINGS:
        raise ImageConversionError(
            f"encoding {encoding!r} cannot be shown as RGB (not a colour or grey picture); "
            f"publish one of {', '.join(sorted(_PICTURE_ENCODINGS))}")


def image_to_numpy(msg: Any, *, copy: bool = False) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into a native-endian array (layout: module docstring).

    Args:
        msg: a ``sensor_msgs.msg.Image`` (or anything with its fields).
        copy: if False (default) the result is a view of ``msg.data`` whenever no byte
            swap is needed (it may then be non-contiguous for padded rows and read-only
            for ``bytes`` data); if True it is always a fresh C-contiguous array.

    Returns:
        [H, W] for one-channel encodings, else [H, W, C].

    Raises:
        ImageConversionError: unknown ``encoding``; zero ``height`` or ``width``; ``step``
            smaller than width x pixel bytes; ``data`` length different from height x step.
    """
    info, height, width, step, raw = _raw_layout(msg)

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
            f"array shape {arr.shape} does not fit encoding {encoding!r}: expected {want}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageConversionError(f"array is empty: shape {arr.shape}")
    if arr.dtype != info.dtype:
        if not np.can_cast(arr.dtype, info.dtype, casting="safe"):
            raise ImageConversionError(
                f"array dtype {arr.dtype} cannot be stored losslessly as {info.dtype} "
                f"(encoding {encoding!r}); convert it first")
        arr = arr.astype(info.dtype)
    arr = np.ascontiguousarray(arr)             # no copy when already packed and native

    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_BIG_ENDIAN_HOST)
    msg.step = int(arr.shape[1]) * info.pixel_bytes
    msg.data = _to_byte_array(arr)
    return msg


def _to_byte_array(arr: np.ndarray) -> array.array:
    """One memcpy into the array.array('B') rclpy stores (no per-byte Python checks)."""
    out = array.array("B")
    out.frombytes(memoryview(arr).cast("B"))
    return out


# --------------------------------------------------------------------------- colour


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
        if enc not in _PICTURE_ENCODINGS:
            raise ImageConversionError(
                f"{name} encoding {enc!r} has no colour meaning; convertible encodings: "
                f"{', '.join(sorted(_PICTURE_ENCODINGS))}")
    info = ENCODINGS[src]
    want_shape_tail = (info.channels,) if info.channels > 1 else ()
    if arr.dtype != info.dtype or arr.ndim != 2 + len(want_shape_tail) \
            or arr.shape[2:] != want_shape_tail:
        raise ImageConversionError(
            f"array of shape {arr.shape} and dtype {arr.dtype} does not fit encoding {src!r}")
    if src == dst or {src, dst} <= _GRAY8 or {src, dst} <= _GRAY16:
        return arr

    if src in _COLOUR and dst in _COLOUR:       # reorder, drop or add alpha
        order_src = _COLOUR[src]
        planes = [arr[..., order_src.index(c)] if c in order_src else None for c in _COLOUR[dst]]
        return _stack_planes(planes)

    if src in _COLOUR:                          # colour -> grey
        order = _COLOUR[src]
        luma = (np.float32(0.299) * arr[..., order.index("R")]
                + np.float32(0.587) * arr[..., order.index("G")]
                + np.float32(0.114) * arr[..., order.index("B")])
        grey = np.rint(luma).astype(np.uint8)     # luma <= 255 by construction
        return grey if dst in _GRAY8 else grey.astype(np.uint16) * np.uint16(257)

    grey8 = (arr >> 8).astype(np.uint8) if src in _GRAY16 else arr
    if dst in _GRAY8:
        return grey8
    if dst in _GRAY16:
        return grey8.astype(np.uint16) * np.uint16(257)
    return _stack_planes([None if c == "A" else grey8 for c in _COLOUR[dst]])   # grey -> colour


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


def check_picture(msg: Any) -> None:
    """Raise ImageConversionError for what can be told wrong without decoding; O(1), copies nothing.

    Raw Image: the encoding (known and a picture), height/width/step and the data length.
    CompressedImage: empty data and the ``format`` field (codec, original encoding); whether the
    bytes decode is only known by decoding (``to_rgb8``). A message that passes may still fail
    ``to_rgb8``; one that fails here always would.
    """
    if hasattr(msg, "format"):                  # sensor_msgs/CompressedImage
        data = _as_byte_array(msg.data)
        if data.size == 0:
            raise ImageConversionError("data is empty (0 bytes)")
        _parse_format(msg.format, data)
        return
    _raw_layout(msg)
    _check_picture_encoding(msg.encoding)


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
    _check_picture_encoding(encoding)
    return np.ascontiguousarray(convert_encoding(arr, encoding, "rgb8"))


# --------------------------------------------------------------------------- compressed

_CODECS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}


def _parse_format(fmt: str, data: np.ndarray) -> tuple[str, str | None]:
    """(Pillow codec name, original encoding or None) from a CompressedImage ``format``.

    Accepts image_transport's "<encoding>; <jpeg|png> compressed <encoding>" as well as a
    bare "jpeg" / "png"; an empty format is resolved from the data's magic bytes.
    """
    text = fmt.strip()
    lowered = text.lower()
    if "compresseddepth" in lowered:
        raise ImageConversionError(
            f"format {fmt!r}: compressedDepth streams are not supported; publish raw 16UC1 "
            "or a plain png")
    if not text:
        head = bytes(data[:8])
        if head.startswith(b"\xff\xd8"):
            return "JPEG", None
        if head.startswith(b"\x89PNG"):
            return "PNG", None
        raise ImageConversionError(
            "format is empty and data does not start with a JPEG or PNG signature")
    original = text.split(";", 1)[0].strip() if ";" in text else None
    words = lowered.replace(";", " ").split()
    codecs = [_CODECS[w] for w in words if w in _CODECS]
    if not codecs:
        raise ImageConversionError(
            f"format {fmt!r} names no supported codec (jpeg, png)")
    if original is not None and original not in ENCODINGS:
        raise ImageConversionError(
            f"format {fmt!r}: original encoding {original!r} is unknown; supported "
            f"encodings: {', '.join(ENCODINGS)}")
    return codecs[0], original


def compressed_to_numpy(msg: Any) -> tuple[np.ndarray, str]:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) with Pillow.

    Returns:
        (array, encoding): the decoded picture in the original encoding named by ``format``
        ("bgr8; jpeg compressed bgr8" -> bgr8 [H, W, 3]) when that is a picture encoding,
        otherwise as decoded: rgb8 [H, W, 3], rgba8 [H, W, 4], mono8 [H, W] or
        mono16 [H, W] uint16. Always a fresh array.

    Raises:
        ImageConversionError: empty ``data``, unsupported ``format``, or undecodable data.
    """
    from PIL import Image as PILImage, UnidentifiedImageError

    data = _as_byte_array(msg.data)
    if data.size == 0:
        raise ImageConversionError("data is empty (0 bytes)")
    codec, original = _parse_format(msg.format, data)
    try:
        with PILImage.open(io.BytesIO(data.tobytes()), formats=[codec]) as img:
            img.load()
            arr, encoding = _pil_to_numpy(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageConversionError(
            f"data is not a valid {codec} stream (format {msg.format!r}): {exc}") from None
    if original in _PICTURE_ENCODINGS and original != encoding:
        arr = convert_encoding(arr, encoding, original)
        encoding = original
    return arr, encoding


def _pil_to_numpy(img: Any) -> tuple[np.ndarray, str]:
    """A decoded Pillow image as (array, encoding) with encoding rgb8/rgba8/mono8/mono16."""
    mode = img.mode
    if mode == "L":
        return np.asarray(img, dtype=np.uint8), "mono8"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img).astype(np.uint16), "mono16"
    if mode == "I":                             # some Pillow versions decode 16-bit PNG as I
        return np.asarray(img).astype(np.uint16), "mono16"
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8), "rgb8"
    if mode == "RGBA":
        return np.asarray(img, dtype=np.uint8), "rgba8"
    has_alpha = "A" in mode or "transparency" in img.info
    converted = img.convert("RGBA" if has_alpha else "RGB")
    return np.asarray(converted, dtype=np.uint8), "rgba8" if has_alpha else "rgb8"


def numpy_to_compressed(array_: np.ndarray, encoding: str, *, format: str = "jpeg",
                        quality: int = 90, header: Any = None) -> Any:
    """Encode a picture array as a ``sensor_msgs/CompressedImage`` (Pillow).

    Args:
        array_: picture in ``encoding`` (one of rgb8, bgr8, rgba8, bgra8, mono8, 8UC1,
            mono16, 16UC1; layouts in the module docstring).
        encoding: its encoding, recorded in ``format`` as image_transport does
            ("bgr8; jpeg compressed bgr8") so that decoders restore it.
        format: "jpeg" (8-bit grey or 3-channel colour only) or "png" (all of the above).
        quality: JPEG quality 1..95.
        header: ``std_msgs/Header`` to copy; default empty.

    Raises:
        ImageConversionError: unsupported encoding/format pair or a bad array.
    """
    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage

    codec = _CODECS.get(format.lower())
    if codec is None:
        raise ImageConversionError(f"format {format!r} is not supported; use 'jpeg' or 'png'")
    if encoding not in _PICTURE_ENCODINGS:
        raise ImageConversionError(
            f"encoding {encoding!r} cannot be compressed; supported: "
            f"{', '.join(sorted(_PICTURE_ENCODINGS))}")
    arr = np.asarray(array_)
    if arr.ndim == 3 and arr.shape[2] == 1 and ENCODINGS[encoding].channels == 1:
        arr = arr[:, :, 0]
    if arr.ndim < 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageConversionError(f"array is empty or not an image: shape {arr.shape}")
    if codec == "JPEG" and (encoding in _GRAY16 or ENCODINGS[encoding].channels == 4):
        raise ImageConversionError(
            f"encoding {encoding!r} cannot be stored as JPEG (8-bit grey or RGB only); use png")

    if encoding in _COLOUR:
        target = "rgba8" if ENCODINGS[encoding].channels == 4 else "rgb8"
        pil = PILImage.fromarray(convert_encoding(arr, encoding, target))   # RGB / RGBA
        stored = "bgra8" if target == "rgba8" else "bgr8"
    elif encoding in _GRAY8:
        pil = PILImage.fromarray(convert_encoding(arr, encoding, "mono8"))  # L
        stored = "mono8"
    else:
        grey16 = convert_encoding(arr, encoding, "mono16")
        pil = PILImage.fromarray(np.ascontiguousarray(grey16))             # I;16
        stored = "mono16"

    buf = io.BytesIO()
    if codec == "JPEG":
        pil.save(buf, format="JPEG", quality=int(quality))
    else:
        pil.save(buf, format="PNG")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    # image_transport convention; the stream itself holds standard (RGB-ordered) colour.
    msg.format = f"{encoding}; {format.lower()} compressed {stored}"
    out = array.array("B")
    out.frombytes(buf.getbuffer())
    msg.data = out
    return msg
