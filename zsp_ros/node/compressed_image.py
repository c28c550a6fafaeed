"""sensor_msgs/CompressedImage (JPEG, PNG) <-> numpy through Pillow.

The ``format`` field is read as image_transport writes it ("<encoding>; <jpeg|png> compressed
<encoding>") or as a bare codec name. Decoding is guarded: the data length, then the declared
size (compressed_headers.read_header), then the stream's structure (check_stream) are checked
against the InputLimits before Pillow sees the bytes, and every error Pillow raises becomes an
`ImageConversionError` (cause "compressed"; "too_large" for its own decompression-bomb guard).

Pillow's Image.MAX_IMAGE_PIXELS is process-wide: importing this module lowers it to
MAX_PIXELS_CEILING if it was raised above (or disabled), and leaves it alone otherwise (Pillow's
default equals the ceiling). The configurable limits are applied here, per call, before Pillow.
"""
from __future__ import annotations

import array
import io
from typing import Any

import numpy as np
from PIL import Image as PILImage

from zsp_ros.node.compressed_headers import StreamHeader, check_stream, read_header
from zsp_ros.node.image_encodings import (
    COLOUR_ORDER,
    ENCODINGS,
    GRAY8,
    GRAY16,
    PICTURE_ENCODINGS,
    ImageConversionError,
    as_byte_array,
    byte_length,
    convert_encoding,
)
from zsp_ros.node.input_limits import DEFAULT_LIMITS, MAX_PIXELS_CEILING, InputLimits

if PILImage.MAX_IMAGE_PIXELS is None or PILImage.MAX_IMAGE_PIXELS > MAX_PIXELS_CEILING:
    PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS_CEILING

_CODECS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}


def parse_format(fmt: str, data: np.ndarray) -> tuple[str, str | None]:
    """(Pillow codec name, original encoding or None) from a CompressedImage ``format``.

    Accepts image_transport's "<encoding>; <jpeg|png> compressed <encoding>" as well as a
    bare "jpeg" / "png"; an empty format is resolved from the data's magic bytes.
    """
    text = fmt.strip()
    lowered = text.lower()
    if "compresseddepth" in lowered:
        raise ImageConversionError(
            f"format {fmt!r}: compressedDepth streams are not supported; publish raw 16UC1 "
            "or a plain png", cause="compressed")
    if not text:
        head = bytes(data[:8])
        if head.startswith(b"\xff\xd8"):
            return "JPEG", None
        if head.startswith(b"\x89PNG"):
            return "PNG", None
        raise ImageConversionError(
            "format is empty and data does not start with a JPEG or PNG signature", cause="compressed")
    original = text.split(";", 1)[0].strip() if ";" in text else None
    words = lowered.replace(";", " ").split()
    codecs = [_CODECS[w] for w in words if w in _CODECS]
    if not codecs:
        raise ImageConversionError(
            f"format {fmt!r} names no supported codec (jpeg, png)", cause="compressed")
    if original is not None and original not in ENCODINGS:
        raise ImageConversionError(
            f"format {fmt!r}: original encoding {original!r} is unknown; supported "
            f"encodings: {', '.join(ENCODINGS)}", cause="encoding")
    return codecs[0], original


def check_compressed(msg: Any, *, limits: InputLimits = DEFAULT_LIMITS) -> StreamHeader:
    """The declared header of a CompressedImage, checked without decoding; cost independent of the pixels.

    Checks, in order: ``data`` not empty ("empty"), not over ``limits.max_compressed_bytes``
    ("too_large"), the ``format`` field ("compressed", "encoding"), the PNG IHDR or the JPEG
    segments up to the first scan ("compressed") and the declared pixels ("too_large").

    Raises:
        ImageConversionError: with the cause in parentheses above.
    """
    return _checked(msg, limits)[2]


def _checked(msg: Any, limits: InputLimits) -> tuple[np.ndarray, str | None, StreamHeader]:
    """(data as uint8 [N], original encoding from ``format`` or None, declared header)."""
    size = byte_length(msg.data)                  # before as_byte_array: a list would be copied
    if size == 0:
        raise ImageConversionError("data is empty (0 bytes)", cause="empty")
    if size > limits.max_compressed_bytes:
        raise ImageConversionError(
            f"image too large: CompressedImage data has {size} bytes, "
            f"over max_compressed_bytes={limits.max_compressed_bytes}", cause="too_large")
    data = as_byte_array(msg.data)
    codec, original = parse_format(msg.format, data)
    return data, original, read_header(data.data, codec, msg.format, limits)


def compressed_to_numpy(msg: Any, *, limits: InputLimits = DEFAULT_LIMITS) -> tuple[np.ndarray, str]:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) with Pillow, within ``limits``.

    Returns:
        (array, encoding): the decoded picture in the original encoding named by ``format``
        ("bgr8; jpeg compressed bgr8" -> bgr8 [H, W, 3]) when that is a picture encoding,
        otherwise as decoded: rgb8 [H, W, 3], rgba8 [H, W, 4], mono8 [H, W] or
        mono16 [H, W] uint16. Always a fresh array, of at most ``limits.max_pixels`` pixels.

    Raises:
        ImageConversionError: everything `check_compressed` refuses; a stream whose structure
            is over the limits (PNG metadata or chunk count, JPEG scans: "too_large") or broken
            ("compressed"); and any error of Pillow's while decoding ("compressed").
    """
    data, original, header = _checked(msg, limits)
    check_stream(data.data, header, msg.format, limits)
    # Untrusted bytes through a large C library and its Python plugins: besides OSError and
    # SyntaxError, corrupt streams make Pillow raise ValueError, struct.error, IndexError,
    # TypeError, EOFError, ZeroDivisionError, MemoryError, ... (and a warning turned into an
    # error). None of them may end the caller's loop, so all become the one documented error.
    try:
        arr, encoding = _decode(data, header, msg.format)
    except ImageConversionError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageConversionError(f"image too large: Pillow refuses it: {_one_line(exc)}",
                                   cause="too_large") from None
    except Exception as exc:
        raise ImageConversionError(
            f"data is not a valid {header.codec} stream (format {msg.format!r}): "
            f"{type(exc).__name__}: {_one_line(exc)}", cause="compressed") from None
    if original in PICTURE_ENCODINGS and original != encoding:
        arr = convert_encoding(arr, encoding, original)
        encoding = original
    return arr, encoding


def _decode(data: np.ndarray, header: StreamHeader, fmt: str) -> tuple[np.ndarray, str]:
    """Pillow's decoding of ``data``, once Pillow's reading of the header agrees with ``header``."""
    with PILImage.open(io.BytesIO(data.data), formats=[header.codec]) as img:
        if img.size != (header.width, header.height):
            raise ImageConversionError(
                f"data is not a valid {header.codec} stream (format {fmt!r}): Pillow reads {img.size[0]} x "
                f"{img.size[1]} pixels where the header declares {header.width} x {header.height}",
                cause="compressed")
        img.load()
        return _pil_to_numpy(img)


def _one_line(exc: BaseException, most: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= most else text[:most] + "..."


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
    from sensor_msgs.msg import CompressedImage

    codec = _CODECS.get(format.lower())
    if codec is None:
        raise ImageConversionError(f"format {format!r} is not supported; use 'jpeg' or 'png'", cause="compressed")
    if encoding not in PICTURE_ENCODINGS:
        raise ImageConversionError(
            f"encoding {encoding!r} cannot be compressed; supported: "
            f"{', '.join(sorted(PICTURE_ENCODINGS))}", cause="encoding")
    arr = np.asarray(array_)
    if arr.ndim == 3 and arr.shape[2] == 1 and ENCODINGS[encoding].channels == 1:
        arr = arr[:, :, 0]
    if arr.ndim < 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageConversionError(f"array is empty or not an image: shape {arr.shape}", cause="empty")
    if codec == "JPEG" and (encoding in GRAY16 or ENCODINGS[encoding].channels == 4):
        raise ImageConversionError(
            f"encoding {encoding!r} cannot be stored as JPEG (8-bit grey or RGB only); use png", cause="encoding")

    if encoding in COLOUR_ORDER:
        target = "rgba8" if ENCODINGS[encoding].channels == 4 else "rgb8"
        pil = PILImage.fromarray(convert_encoding(arr, encoding, target))   # RGB / RGBA
        stored = "bgra8" if target == "rgba8" else "bgr8"
    elif encoding in GRAY8:
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
