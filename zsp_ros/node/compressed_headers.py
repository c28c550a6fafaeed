"""PNG and JPEG streams read without decoding: the declared size, and a walk that bounds the decoder's work.

`read_header` reads what the stream declares (PNG IHDR; JPEG markers up to the first scan, with
the one frame header SOFn) and refuses a picture over ``InputLimits.max_pixels`` before any pixel
buffer exists. `check_stream` walks the rest: every PNG chunk (their number, and the metadata
chunks inflated against ``max_text_chunk_bytes``) or every JPEG marker after the first scan (the
scans against ``max_jpeg_scans``). Both take the bytes as a memoryview (no copy) and raise
ImageConversionError: cause "too_large" with a message starting "image too large:", or cause
"compressed" with "data is not a valid <codec> stream (format ...): <what>".

PNG (ISO/IEC 15948): the 8-byte signature, then chunks [length u32 BE][type: 4 letters][data]
[CRC u32]; IHDR comes first (13 bytes: width u32, height u32, bit depth, colour type, compression,
filter, interlace) and IEND last. JPEG (ITU-T T.81): SOI (FF D8), then segments FF xx [length u16
BE, counting itself][payload] up to the first SOS (FF DA); a frame header SOFn is FF C0..CF except
C4 (DHT), C8 (JPG) and CC (DAC): precision u8, height u16, width u16, components u8. After each SOS
comes entropy-coded data in which FF is followed by 00 (a stuffed byte) or D0..D7 (a restart
marker); any other FF xx starts the next marker. Pillow and libjpeg parse these themselves again:
this reader is stricter than both (it refuses junk between header segments and a second SOF), so
what it lets through has the size it checked (compressed_image.py also compares Pillow's size).
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from zsp_ros.node.image_encodings import ImageConversionError
from zsp_ros.node.input_limits import InputLimits

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow spends ~6 us of Python on each chunk: 32 MiB of empty chunks would take 15 s. Encoders
# write 8-64 KiB chunks (libpng: 8 KiB, i.e. 4096 in the default max_compressed_bytes).
PNG_MAX_CHUNKS = 65_536
# Segments before the first scan (APPn, DQT, DHT, SOF, DRI, COM; a camera writes < 20) and
# fill bytes (FF) between them; Pillow reads each in Python.
JPEG_MAX_HEADER_SEGMENTS = 1_024
JPEG_MAX_FILL_BYTES = 1_024

_PNG_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_METADATA = frozenset({b"tEXt", b"zTXt", b"iTXt", b"iCCP"})
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})     # TEM, RST0..7: no length field
_JPEG_FILL = re.compile(rb"\xff+")
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in entropy-coded data


@dataclass(frozen=True)
class StreamHeader:
    """What a PNG IHDR or a JPEG frame header declares.

    Attributes:
        codec: "PNG" or "JPEG".
        width, height: pixels.
        channels: samples per pixel (PNG: 1 for palette; JPEG: components).
        bit_depth: bits per sample (PNG bit depth; JPEG sample precision).
        progressive: JPEG SOF2/6/10/14, or PNG Adam7 interlacing.
        body_offset: byte offset where `check_stream` continues (after IHDR; the first SOS).
    """

    codec: str
    width: int
    height: int
    channels: int
    bit_depth: int
    progressive: bool
    body_offset: int


def read_header(data: memoryview, codec: str, fmt: str, limits: InputLimits) -> StreamHeader:
    """The declared header of a ``codec`` ("PNG" / "JPEG") stream, refused over ``limits.max_pixels``.

    Cost: PNG 33 bytes; JPEG one step per segment before the first scan (at most
    JPEG_MAX_HEADER_SEGMENTS). ``fmt`` (the message's format field) only goes into messages.
    """
    if codec == "PNG":
        return _png_header(data, fmt, limits)
    return _jpeg_header(data, fmt, limits)


def check_stream(data: memoryview, header: StreamHeader, fmt: str, limits: InputLimits) -> None:
    """Walk the stream after ``header``: PNG chunks and their metadata, JPEG scans.

    Cost: one step per PNG chunk (at most PNG_MAX_CHUNKS), or a C-speed search of the JPEG
    entropy data with one step per marker (at most 4 x max_jpeg_scans + 64).
    """
    if header.codec == "PNG":
        _png_chunks(data, header.body_offset, fmt, limits)
    else:
        _jpeg_scans(data, header.body_offset, limits)


def _invalid(codec: str, fmt: str, what: str) -> ImageConversionError:
    return ImageConversionError(f"data is not a valid {codec} stream (format {fmt!r}): {what}", cause="compressed")


def _too_large(what: str) -> ImageConversionError:
    return ImageConversionError(f"image too large: {what}", cause="too_large")


def _check_pixels(codec: str, width: int, height: int, limits: InputLimits) -> None:
    if width * height > limits.max_pixels:
        raise _too_large(f"{codec} declares {width} x {height} (width x height) = {width * height} pixels, "
                         f"over max_pixels={limits.max_pixels}")


# ------------------------------------------------------------------------ PNG


def _png_header(data: memoryview, fmt: str, limits: InputLimits) -> StreamHeader:
    if bytes(data[:8]) != PNG_SIGNATURE:
        raise _invalid("PNG", fmt, "no PNG signature")
    if len(data) < 33:
        raise _invalid("PNG", fmt, f"{len(data)} bytes end inside the IHDR chunk")
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length != 13:
        raise _invalid("PNG", fmt, f"the first chunk is {kind!r} of {length} bytes, not IHDR of 13")
    width, height, depth, colour, compression, filter_method, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise _invalid("PNG", fmt, f"IHDR declares {width} x {height} pixels (each must be in [1, 2^31))")
    if depth not in _PNG_BIT_DEPTHS.get(colour, ()):
        raise _invalid("PNG", fmt, f"IHDR declares colour type {colour} with bit depth {depth}")
    if compression != 0 or filter_method != 0 or interlace > 1:
        raise _invalid("PNG", fmt, f"IHDR declares compression {compression}, filter {filter_method}, "
                                   f"interlace {interlace} (0, 0, 0 or 1 defined)")
    _check_pixels("PNG", width, height, limits)
    return StreamHeader("PNG", width, height, _PNG_CHANNELS[colour], depth, interlace == 1, 33)


def _png_chunks(data: memoryview, pos: int, fmt: str, limits: InputLimits) -> None:
    """Every chunk after IHDR up to IEND (or the end, which Pillow tolerates)."""
    end_of_data, chunks, metadata = len(data), 1, 0
    while pos < end_of_data:
        if end_of_data - pos < 12:
            raise _invalid("PNG", fmt, f"{end_of_data - pos} bytes at byte {pos} are too few for a chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if not kind.isalpha():
            raise _invalid("PNG", fmt, f"chunk type {kind!r} at byte {pos} is not four letters")
        end = pos + 12 + length
        if length >= 2**31 or end > end_of_data:
            raise _invalid("PNG", fmt, f"chunk {kind.decode()} at byte {pos} declares {length} bytes; "
                                       f"{end_of_data - pos - 12} follow")
        chunks += 1
        if chunks > PNG_MAX_CHUNKS:
            raise _too_large(f"PNG has more than {PNG_MAX_CHUNKS} chunks")
        if kind in _PNG_METADATA:
            budget = limits.max_text_chunk_bytes - metadata
            metadata += _metadata_size(kind, data[pos + 8:end - 4], budget)
            if metadata > limits.max_text_chunk_bytes:
                raise _too_large(f"PNG metadata (tEXt, zTXt, iTXt, iCCP; here at chunk {kind.decode()} at byte "
                                 f"{pos}) inflates to more than max_text_chunk_bytes={limits.max_text_chunk_bytes}")
        if kind == b"IEND":
            return
        pos = end


def _metadata_size(kind: bytes, payload: memoryview, budget: int) -> int:
    """Bytes of one metadata chunk, its zlib part inflated; counting stops past ``budget``."""
    head = bytes(payload[:max(budget, 0) + 1])      # holds the separators of anything within budget
    start = _zlib_start(kind, head)
    if start is None or start > budget:
        return len(payload)
    try:
        inflated = zlib.decompressobj().decompress(payload[start:], budget - start + 1)
    except zlib.error:                               # Pillow then stores nothing for the chunk
        return start
    return start + len(inflated)


def _zlib_start(kind: bytes, head: bytes) -> int | None:
    """Offset of the zlib stream in a zTXt / iCCP / compressed iTXt chunk; None when stored as is."""
    key_end = head.find(b"\0")                       # keyword (1-79 bytes), then \0
    if kind == b"tEXt" or key_end < 0:
        return None
    if kind in (b"zTXt", b"iCCP"):                   # \0, method, zlib
        return key_end + 2
    if head[key_end + 1:key_end + 2] != b"\x01":      # iTXt: \0, compressed?, method, language \0, keyword \0
        return None
    language_end = head.find(b"\0", key_end + 3)
    keyword_end = head.find(b"\0", language_end + 1) if language_end >= 0 else -1
    return keyword_end + 1 if keyword_end >= 0 else None


# ------------------------------------------------------------------------ JPEG


def _jpeg_header(data: memoryview, fmt: str, limits: InputLimits) -> StreamHeader:
    """Segments from SOI to the first SOS; exactly one SOFn among them."""
    n = len(data)
    if n < 2 or data[0] != 0xFF or data[1] != 0xD8:
        raise _invalid("JPEG", fmt, "no SOI marker (FF D8) at the start")
    pos, segments, fill = 2, 0, 0
    frame: tuple[int, int, int, int, bool] | None = None     # width, height, components, precision, progressive
    while True:
        if pos + 2 > n:
            raise _invalid("JPEG", fmt, f"the data ends at byte {n}, before the first scan (SOS)")
        if data[pos] != 0xFF:
            raise _invalid("JPEG", fmt, f"byte {data[pos]:#04x} at {pos} where a marker should start")
        if data[pos + 1] == 0xFF:                             # fill bytes before the marker
            run = _JPEG_FILL.match(data, pos)
            assert run is not None
            fill += run.end() - 1 - pos
            if fill > JPEG_MAX_FILL_BYTES:
                raise _invalid("JPEG", fmt, f"more than {JPEG_MAX_FILL_BYTES} fill bytes (FF) between segments")
            pos = run.end() - 1
            continue
        marker = data[pos + 1]
        if marker in (0x00, 0xD8, 0xD9):
            raise _invalid("JPEG", fmt, f"marker FF {marker:02X} at byte {pos}, before the first scan")
        segments += 1
        if segments > JPEG_MAX_HEADER_SEGMENTS:
            raise _too_large(f"JPEG has more than {JPEG_MAX_HEADER_SEGMENTS} segments before its first scan")
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 4 > n:
            raise _invalid("JPEG", fmt, f"the data ends inside marker FF {marker:02X} at byte {pos}")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > n:
            raise _invalid("JPEG", fmt, f"segment FF {marker:02X} at byte {pos} declares {length} bytes; "
                                        f"{n - pos - 2} follow")
        if marker in _JPEG_SOF:
            if frame is not None:
                raise _invalid("JPEG", fmt, f"a second frame header (SOF) at byte {pos}")
            if length < 8:
                raise _invalid("JPEG", fmt, f"frame header at byte {pos} has {length} bytes (at least 8)")
            precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 4)
            if width == 0 or height == 0:                     # height 0: set by a DNL marker, which libjpeg refuses
                raise _invalid("JPEG", fmt, f"frame header declares {width} x {height} pixels")
            _check_pixels("JPEG", width, height, limits)
            frame = (width, height, components, precision, marker in _JPEG_PROGRESSIVE)
        elif marker == 0xDA:
            if frame is None:
                raise _invalid("JPEG", fmt, f"a scan (SOS) at byte {pos} before any frame header (SOF)")
            width, height, components, precision, progressive = frame
            return StreamHeader("JPEG", width, height, components, precision, progressive, pos)
        pos += 2 + length


def _jpeg_scans(data: memoryview, pos: int, limits: InputLimits) -> None:
    """Count the scans from the first SOS (at ``pos``) to EOI; what is broken here is left to the decoder."""
    n, scans, segments = len(data), 0, 0
    most_segments = 4 * limits.max_jpeg_scans + 64        # a DHT (sometimes DRI, COM) before each scan
    while pos + 2 <= n:
        marker = data[pos + 1]
        if marker == 0xD9:                                 # EOI: what follows (an MPO frame, junk) is not decoded
            return
        segments += 1
        if segments > most_segments:
            raise _too_large(f"JPEG has more than {most_segments} segments after its first scan")
        after = pos + 2
        if marker not in _JPEG_STANDALONE and marker != 0xD8 and pos + 4 <= n:
            (length,) = struct.unpack_from(">H", data, pos + 2)
            after += length
            if marker == 0xDA:
                scans += 1
                if scans > limits.max_jpeg_scans:
                    raise _too_large(f"JPEG has more than max_jpeg_scans={limits.max_jpeg_scans} scans "
                                     "(each a pass over the whole picture)")
        found = _JPEG_NEXT_MARKER.search(data, after)
        if found is None:
            return
        pos = found.start()
