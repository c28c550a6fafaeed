"""PNG and JPEG byte streams for the decode-path tests: Pillow-written samples, and hand-built
streams (chunks with CRCs, a zlib stream of zeros of any length built in milliseconds)."""
from __future__ import annotations

import array
import io
import struct
import zlib

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def message(data: bytes, fmt: str = "") -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", data)
    return msg


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def ihdr(width: int, height: int, depth: int = 8, colour: int = 0, interlace: int = 0) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def png(width: int, height: int, idat: bytes, *, depth: int = 8, colour: int = 0, extra: bytes = b"") -> bytes:
    """A PNG of the given IHDR, ``extra`` chunks before one IDAT holding ``idat`` (a zlib stream)."""
    return PNG_SIGNATURE + ihdr(width, height, depth, colour) + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def zlib_of_zeros(total: int, block: int = 1 << 20) -> bytes:
    """zlib stream of ``total`` zero bytes, ~1000:1 as zlib level 9, without deflating them all.

    After a full flush deflate starts afresh, so every full block compresses to the same bytes:
    the stream is the first block, the repeated one, the rest, and the Adler-32 of zeros
    (A = 1, B = total mod 65521).
    """
    n_blocks, rest = divmod(total, block)
    if n_blocks == 0:
        return zlib.compress(bytes(total), 9)
    deflater = zlib.compressobj(9)
    first = deflater.compress(bytes(block)) + deflater.flush(zlib.Z_FULL_FLUSH)
    repeated = deflater.compress(bytes(block)) + deflater.flush(zlib.Z_FULL_FLUSH)
    tail = deflater.compress(bytes(rest)) + deflater.flush()
    return first + repeated * (n_blocks - 1) + tail[:-4] + struct.pack(">I", ((total % 65521) << 16) | 1)


def png_of_zeros(width: int, height: int) -> bytes:
    """An all-black 8-bit grey PNG: a decompression bomb once large (20000 x 20000: 388 KB -> 400 MB)."""
    return png(width, height, zlib_of_zeros(height * (width + 1)))


def sample_rgb(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth picture with some noise: JPEG-friendly and not trivially compressible."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 12, (height, width, 3))
    base = np.stack([x * 255 / width, y * 255 / height, 128 + 60 * np.sin(x / 3)], axis=2)
    return (base + noise).clip(0, 255).astype(np.uint8)


def encode(picture: np.ndarray | PILImage.Image, codec: str, **options: object) -> bytes:
    """``picture`` (an array or a Pillow image) saved by Pillow as ``codec`` ("PNG", "JPEG")."""
    img = PILImage.fromarray(picture) if isinstance(picture, np.ndarray) else picture
    buf = io.BytesIO()
    img.save(buf, format=codec, **options)
    return buf.getvalue()


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(offset, marker) of the JPEG segments up to the first SOS, and of every later marker (naive scan)."""
    found, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        found.append((pos, marker))
        if marker == 0xDA:
            break
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    for i in range(pos + 2, len(data) - 1):
        if data[i] == 0xFF and data[i + 1] not in (0x00, 0xFF) and not 0xD0 <= data[i + 1] <= 0xD7:
            found.append((i, data[i + 1]))
    return found


def scans(data: bytes) -> list[bytes]:
    """The byte ranges of a JPEG's scans (SOS header and entropy data), in order."""
    sos = [pos for pos, marker in jpeg_segments(data) if marker == 0xDA]
    markers = sorted(pos for pos, _ in jpeg_segments(data))
    out = []
    for start in sos:
        end = next((m for m in markers if m > start), len(data))
        out.append(data[start:end])
    return out
