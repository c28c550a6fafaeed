"""Input limits on the node's picture input: InputLimits, the header reader, and the hostile frames
of issue 18 (PNG bombs, a zTXt bomb, a JPEG with a thousand scans, raw Images over the limits),
each refused before a pixel buffer exists, as an ImageConversionError with its cause."""
from __future__ import annotations

import array
import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import Image

from tests.compressed_samples import (
    PNG_SIGNATURE,
    encode,
    ihdr,
    message,
    png,
    png_chunk,
    png_of_zeros,
    sample_rgb,
    scans,
)
from zsp_ros.node import compressed_image
from zsp_ros.node.compressed_headers import PNG_MAX_CHUNKS, check_stream, read_header
from zsp_ros.node.frame_input import malformed_cause
from zsp_ros.node.image_conversion import check_picture, to_rgb8
from zsp_ros.node.image_encodings import CAUSES, ImageConversionError, normalise_to_grey8
from zsp_ros.node.input_limits import (
    DEFAULT_LIMITS,
    LIMIT_RANGES,
    MAX_PIXELS_CEILING,
    PARAMETER_FIELDS,
    InputLimits,
)
from zsp_ros.node.raw_image import numpy_to_image


def _refused(msg, cause: str, pattern: str = "", limits: InputLimits = DEFAULT_LIMITS) -> str:
    """Both front doors refuse ``msg`` with ``cause`` and the same message; returns it."""
    with pytest.raises(ImageConversionError, match=pattern or None) as converted:
        to_rgb8(msg, limits=limits)
    assert converted.value.cause == cause, str(converted.value)
    if cause == "too_large":
        assert str(converted.value).startswith("image too large: ")
    assert "\n" not in str(converted.value)
    return str(converted.value)


def _refused_by_header(msg, cause: str, pattern: str = "", limits: InputLimits = DEFAULT_LIMITS) -> str:
    text = _refused(msg, cause, pattern, limits)
    with pytest.raises(ImageConversionError) as checked:
        check_picture(msg, limits=limits)
    assert str(checked.value) == text and checked.value.cause == cause
    return text


@pytest.fixture
def no_pillow(monkeypatch):
    """Fail the test if Pillow is asked to open anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("Pillow was asked to decode")
    monkeypatch.setattr(compressed_image.PILImage, "open", refuse)


# ------------------------------------------------------------------------ InputLimits


def test_defaults_and_ranges():
    assert DEFAULT_LIMITS == InputLimits()
    assert DEFAULT_LIMITS.max_pixels == 4096 * 4096 > 3840 * 2160
    assert DEFAULT_LIMITS.max_raw_bytes == 2 * 4 * DEFAULT_LIMITS.max_pixels
    assert DEFAULT_LIMITS.max_compressed_bytes == 32 << 20
    assert DEFAULT_LIMITS.max_text_chunk_bytes == 64 << 10
    assert MAX_PIXELS_CEILING == 89_478_485                       # Pillow's default MAX_IMAGE_PIXELS
    assert PILImage.MAX_IMAGE_PIXELS is not None and PILImage.MAX_IMAGE_PIXELS <= MAX_PIXELS_CEILING
    assert set(PARAMETER_FIELDS.values()) == set(LIMIT_RANGES)
    for field, (low, high) in LIMIT_RANGES.items():
        InputLimits(**{field: low})
        InputLimits(**{field: high})


@pytest.mark.parametrize("field, value, problem", [
    ("max_pixels", 0, r"max_pixels must be in \[1, 89478485\], got 0"),
    ("max_pixels", MAX_PIXELS_CEILING + 1, r"max_pixels must be in"),
    ("max_compressed_bytes", -5, r"max_compressed_bytes must be in"),
    ("max_raw_bytes", 2.5, r"max_raw_bytes must be an integer .* got 2.5 \(float\)"),
    ("max_text_chunk_bytes", True, r"max_text_chunk_bytes must be an integer .* \(bool\)"),
    ("max_text_chunk_bytes", (1 << 20) + 1, r"max_text_chunk_bytes must be in \[0, 1048576\]"),
    ("max_jpeg_scans", 0, r"max_jpeg_scans must be in \[1, 1000\]"),
])
def test_limits_are_validated_with_one_line(field, value, problem):
    with pytest.raises(ValueError, match=problem) as info:
        InputLimits(**{field: value})
    assert "\n" not in str(info.value)


def test_from_parameters_names_the_parameter():
    limits = InputLimits.from_parameters({"max_input_pixels": 640 * 480, "max_raw_bytes": 1 << 20})
    assert limits == InputLimits(max_pixels=640 * 480, max_raw_bytes=1 << 20)
    assert InputLimits.from_parameters({}) == DEFAULT_LIMITS
    with pytest.raises(ValueError, match=r"^max_input_pixels must be in \[1, "):
        InputLimits.from_parameters({"max_input_pixels": 0})
    with pytest.raises(ValueError, match=r"^max_compressed_bytes must be an integer"):
        InputLimits.from_parameters({"max_compressed_bytes": "32M"})
    with pytest.raises(ValueError, match=r"unknown input limit parameter\(s\) \['max_pixels'\]"):
        InputLimits.from_parameters({"max_pixels": 5})


# ------------------------------------------------------------------------ causes


def test_every_cause_is_known_and_matches_the_message_patterns():
    """The cause attribute and frame_input's message patterns agree (too_large is new to the patterns)."""
    rgb = np.zeros((4, 6, 3), np.uint8)
    cases = [
        numpy_to_image(rgb[..., 0].astype(np.int32), "32SC1"),
        message(b"", "jpeg"),
        message(b"II*\x00", "tiff"),
        message(b"nothing", ""),
        message(b"\x89PNG", "16UC1; compressedDepth png"),
        message(encode(rgb, "PNG"), "yuv9; png compressed rgb8"),
        message(b"\xff\xd8garbage", "jpeg"),
        message(encode(rgb, "PNG")[:40], "png"),
    ]
    for bad in ({"encoding": "yuv422_weird"}, {"height": 0, "width": 0, "step": 0, "data": []},
                {"step": 5}, {"data": [0] * 10}):
        msg = numpy_to_image(rgb, "rgb8")
        for k, v in bad.items():
            setattr(msg, k, v)
        cases.append(msg)
    seen = set()
    for msg in cases:
        with pytest.raises(ImageConversionError) as info:
            to_rgb8(msg)
        assert info.value.cause in CAUSES and info.value.cause == malformed_cause(info.value), str(info.value)
        seen.add(info.value.cause)
    assert seen == {"encoding", "empty", "step", "size", "compressed", "not_picture"}
    assert ImageConversionError("cosmic ray").cause == "other"


# ------------------------------------------------------------------------ PNG


def test_png_bomb_20000_square_refused_from_ihdr(no_pillow):
    data = png_of_zeros(20000, 20000)                               # 396 KB -> 400 MB of pixels
    assert len(data) < 400_000
    _refused_by_header(message(data, "png"), "too_large",
                       r"PNG declares 20000 x 20000 \(width x height\) = 400000000 pixels, over max_pixels=16777216")


def test_png_12000_square_refused_fast_without_allocating(no_pillow):
    msg = message(png_of_zeros(12000, 12000), "png")                # 142 KB; 18 s and 3.8 GB before
    tracemalloc.start()
    try:
        start = time.perf_counter()
        for call in (check_picture, to_rgb8):
            with pytest.raises(ImageConversionError, match="image too large: PNG declares 12000 x 12000"):
                call(msg)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5 and peak < 256 << 10, (elapsed, peak)


def test_png_within_limits_is_decoded_and_a_smaller_limit_refuses_it():
    msg = message(png_of_zeros(300, 200), "png")
    out = to_rgb8(msg)
    assert out.shape == (200, 300, 3) and out.dtype == np.uint8 and not out.any()
    _refused_by_header(msg, "too_large", "over max_pixels=59999", InputLimits(max_pixels=59_999))
    to_rgb8(msg, limits=InputLimits(max_pixels=60_000))


def test_ztxt_bomb_refused_before_pillow(no_pillow):
    text = zlib.compress(b"A" * (4 << 20), 9)                       # 4 MB of text in ~4 KB
    data = png(8, 8, zlib.compress(bytes(8 * 9)), extra=png_chunk(b"zTXt", b"Comment\0\0" + text))
    msg = message(data, "png")
    check_picture(msg)                                               # the header is fine
    _refused(msg, "too_large", r"PNG metadata .* zTXt .* more than max_text_chunk_bytes=65536")


@pytest.mark.parametrize("kind, payload", [
    (b"tEXt", b"Comment\0" + b"x" * 70_000),
    (b"iTXt", b"Comment\0\x01\0en\0\0" + zlib.compress(b"x" * 70_000)),
    (b"iCCP", b"icc\0\0" + zlib.compress(b"x" * 70_000)),
])
def test_every_metadata_chunk_counts(kind, payload):
    idat = zlib.compress(bytes(8 * 9))
    _refused(message(png(8, 8, idat, extra=png_chunk(kind, payload)), "png"), "too_large", kind.decode())
    small = png(8, 8, idat, extra=png_chunk(b"tEXt", b"Software\0zsp"))
    assert to_rgb8(message(small, "png")).shape == (8, 8, 3)
    _refused(message(small, "png"), "too_large", "max_text_chunk_bytes=0", InputLimits(max_text_chunk_bytes=0))


def test_metadata_is_counted_over_all_chunks():
    many = png_chunk(b"tEXt", b"k\0" + b"v" * 1000) * 70                # 70 x 1002 bytes > 64 KiB
    _refused(message(png(8, 8, zlib.compress(bytes(72)), extra=many), "png"), "too_large", "tEXt")


def test_png_with_too_many_chunks_refused(no_pillow):
    filler = png_chunk(b"abCd", b"") * PNG_MAX_CHUNKS                    # 786 KB of empty private chunks
    _refused(message(png(8, 8, zlib.compress(bytes(72)), extra=filler), "png"), "too_large",
             f"more than {PNG_MAX_CHUNKS} chunks")


@pytest.mark.parametrize("data, what", [
    (PNG_SIGNATURE + png_chunk(b"IDAT", b"x" * 13), "not IHDR of 13"),
    (PNG_SIGNATURE + ihdr(0, 5), r"IHDR declares 0 x 5 pixels"),
    (PNG_SIGNATURE + ihdr(5, 5, depth=16, colour=3), "colour type 3 with bit depth 16"),
    (PNG_SIGNATURE + ihdr(5, 5)[:20], "end inside the IHDR"),
])
def test_broken_png_headers(data, what):
    _refused_by_header(message(data, "png"), "compressed", what)


def test_png_chunk_running_past_the_end():
    data = png(4, 4, zlib.compress(bytes(20)))
    broken = data[:33] + struct.pack(">I", 10_000) + data[37:]
    _refused(message(broken, "png"), "compressed", r"chunk IDAT at byte 33 declares 10000 bytes")


def test_16bit_png_decodes():
    grey = (np.arange(30 * 20, dtype=np.uint16).reshape(20, 30) * 109)
    with pytest.raises(ImageConversionError, match="'mono16' holds measurements"):     # 16 bits: depth-like
        to_rgb8(message(encode(grey, "PNG"), "png"))
    out = to_rgb8(message(encode(grey, "PNG"), "png"), depth_policy="normalise")
    np.testing.assert_array_equal(out, np.repeat(normalise_to_grey8(grey)[..., None], 3, axis=2))


# ------------------------------------------------------------------------ JPEG


def test_jpeg_headers_match_pillow():
    rgb = sample_rgb(24, 40)
    for data in (encode(rgb, "JPEG"), encode(rgb, "JPEG", progressive=True), encode(rgb[..., 0], "JPEG")):
        header = read_header(memoryview(data), "JPEG", "jpeg", DEFAULT_LIMITS)
        with PILImage.open(io.BytesIO(data)) as img:
            assert (header.width, header.height) == img.size
            assert header.progressive == bool(img.info.get("progressive"))
            assert header.channels == len(img.getbands())


def test_progressive_jpeg_decodes():
    rgb = sample_rgb(48, 64, seed=3)
    data = encode(rgb, "JPEG", quality=95, progressive=True)
    assert len(scans(data)) == 10
    with PILImage.open(io.BytesIO(data)) as img:
        expected = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(to_rgb8(message(data, "jpeg")), expected)
    assert np.abs(expected.astype(int) - rgb).mean() < 10


def test_jpeg_with_a_thousand_scans_refused_fast(no_pillow):
    """A progressive JPEG whose last scan is repeated: each repeat is a pass over all blocks (29 s at 4096^2 before)."""
    data = encode(np.full((512, 512, 3), 128, np.uint8), "JPEG", progressive=True)
    smallest = min(scans(data)[1:], key=len)
    bomb = data[:-2] + smallest * 1000 + b"\xff\xd9"
    msg = message(bomb, "jpeg")
    check_picture(msg)
    start = time.perf_counter()
    _refused(msg, "too_large", r"JPEG has more than max_jpeg_scans=32 scans")
    assert time.perf_counter() - start < 0.5


def test_jpeg_scan_limit_is_configurable():
    data = encode(np.full((64, 64, 3), 128, np.uint8), "JPEG", progressive=True)
    bomb = data[:-2] + min(scans(data)[1:], key=len) * 30 + b"\xff\xd9"      # 40 scans
    _refused(message(bomb, "jpeg"), "too_large", "max_jpeg_scans=32")
    assert to_rgb8(message(bomb, "jpeg"), limits=InputLimits(max_jpeg_scans=40)).shape == (64, 64, 3)
    _refused(message(data, "jpeg"), "too_large", "max_jpeg_scans=9", InputLimits(max_jpeg_scans=9))


def _with_sof(data: bytes, width: int, height: int) -> bytes:
    pos = data.index(b"\xff\xc0")
    return data[:pos + 5] + struct.pack(">HH", height, width) + data[pos + 9:]


def test_jpeg_huge_frame_refused_from_sof(no_pillow):
    data = encode(sample_rgb(), "JPEG")
    _refused_by_header(message(_with_sof(data, 65535, 65535), "jpeg"), "too_large",
                       "JPEG declares 65535 x 65535")
    _refused_by_header(message(_with_sof(data, 32, 0), "jpeg"), "compressed", r"declares 32 x 0 pixels")


@pytest.mark.parametrize("edit, what", [
    (lambda d: d[:2] + d[d.index(b"\xff\xc0"):d.index(b"\xff\xc4")] + d[2:], "a second frame header"),
    (lambda d: d[:2] + d[d.index(b"\xff\xda"):], r"scan \(SOS\) at byte 2 before any frame header"),
    (lambda d: d[:2] + b"\x00" + d[2:], "byte 0x00 at 2 where a marker should start"),
    (lambda d: d[:2] + b"\xff" * 2000 + d[2:], "fill bytes"),
    (lambda d: d[:4] + b"\x00\x01" + d[6:], r"segment FF E0 at byte 2 declares 1 bytes"),
    (lambda d: d[:d.index(b"\xff\xda")], "before the first scan"),
])
def test_broken_jpeg_headers(edit, what):
    _refused_by_header(message(edit(encode(sample_rgb(), "JPEG")), "jpeg"), "compressed", what)


# ------------------------------------------------------------------------ Pillow's own errors


@pytest.mark.parametrize("error, cause", [
    (ValueError("Decompressed data too large"), "compressed"),
    (struct.error("unpack requires a buffer"), "compressed"),
    (IndexError("index out of range"), "compressed"),
    (TypeError("bad operand"), "compressed"),
    (EOFError(), "compressed"),
    (ZeroDivisionError("division by zero"), "compressed"),
    (MemoryError(), "compressed"),
    (SyntaxError("broken PNG file"), "compressed"),
    (OSError("image file is truncated"), "compressed"),
    (PILImage.DecompressionBombError("too many pixels"), "too_large"),
    (PILImage.DecompressionBombWarning("many pixels"), "too_large"),
])
def test_every_pillow_error_becomes_a_conversion_error(monkeypatch, error, cause):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(compressed_image.PILImage, "open", fail)
    text = _refused(message(encode(sample_rgb(), "PNG"), "png"), cause)
    assert type(error).__name__ in text or cause == "too_large"


def test_pillow_reading_another_size_is_refused():
    data = encode(sample_rgb(), "PNG")
    header = read_header(memoryview(data), "PNG", "png", DEFAULT_LIMITS)
    check_stream(memoryview(data), header, "png", DEFAULT_LIMITS)
    wrong = type(header)(**{**header.__dict__, "width": header.width + 1})
    with pytest.raises(ImageConversionError, match="Pillow reads 32 x 24 pixels where the header declares 33 x 24"):
        compressed_image._decode(np.frombuffer(data, np.uint8), wrong, "png")


# ------------------------------------------------------------------------ compressed and raw bytes


def test_compressed_data_over_the_byte_limit():
    data = encode(sample_rgb(), "PNG")
    limits = InputLimits(max_compressed_bytes=len(data) - 1)
    _refused_by_header(message(data, "png"), "too_large", f"data has {len(data)} bytes, over max_compressed_bytes", limits)
    listed = message(b"", "png")
    listed._data = [0] * 50                                           # a list is not converted to see its length
    _refused_by_header(listed, "too_large", "50 bytes", InputLimits(max_compressed_bytes=49))


def _raw(height: int, width: int, data, encoding: str = "rgb8", step: int | None = None) -> Image:
    msg = Image(height=height, width=width, encoding=encoding, step=width * 3 if step is None else step)
    msg._data = data                                                  # no per-element check
    return msg


def test_raw_image_over_the_pixel_limit_refused_from_the_header():
    _refused_by_header(_raw(20000, 20000, array.array("B")), "too_large",
                       r"Image of 20000 x 20000 \(width x height\) = 400000000 pixels, over max_pixels")
    ok = numpy_to_image(np.zeros((10, 20, 3), np.uint8), "rgb8")
    _refused_by_header(ok, "too_large", "over max_pixels=199", InputLimits(max_pixels=199))
    assert to_rgb8(ok, limits=InputLimits(max_pixels=200)).shape == (10, 20, 3)


def test_raw_image_over_the_byte_limit_refused_before_reading_the_data():
    ok = numpy_to_image(np.zeros((10, 20, 3), np.uint8), "rgb8")
    _refused_by_header(ok, "too_large", "Image data has 600 bytes, over max_raw_bytes=599", InputLimits(max_raw_bytes=599))
    padded = _raw(10, 20, [0] * 10 * 1000, step=1000)                 # a list: len() only, no copy
    _refused_by_header(padded, "too_large", "10000 bytes, over max_raw_bytes=9999", InputLimits(max_raw_bytes=9999))


def test_packed_rgb8_stays_zero_copy_under_limits():
    msg = numpy_to_image(sample_rgb(), "rgb8")
    out = to_rgb8(msg, limits=InputLimits(max_pixels=24 * 32, max_raw_bytes=24 * 32 * 3))
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
