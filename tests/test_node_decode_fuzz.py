"""Fuzz of the compressed-frame decode path (issue 18): seeded, bounded mutations of PNG and JPEG streams.

Whatever the bytes, `check_picture` and `to_rgb8` either return a uint8 [H, W, 3] picture within
the limits or raise ImageConversionError with a known cause; a refusal by `check_picture` is the
same refusal `to_rgb8` gives; no case takes long. Mutations: bit flips, byte overwrites,
truncation, spliced/deleted/duplicated slices, PNG chunk lengths and IHDR sizes (CRCs re-fixed in
half of the cases, so that Pillow reads on), JPEG segment lengths, SOF sizes and repeated scans.
Half of the cases run under tight limits, so that refusals by every limit are exercised too.
Run with ``-s`` for the statistics.
"""
from __future__ import annotations

import collections
import re
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.compressed_samples import encode, jpeg_segments, message, png_chunk, sample_rgb, scans
from zsp_ros.node.image_conversion import check_picture, to_rgb8
from zsp_ros.node.image_encodings import CAUSES, ImageConversionError
from zsp_ros.node.input_limits import DEFAULT_LIMITS, InputLimits

SEED = 18
CASES_PER_BASE = 300
SLOWEST_CASE_S = 5.0              # a garbage stream declaring ~16 MP (allowed) takes ~1.5 s
# What the node caught before issue 18; any other Pillow error ended its inference thread.
CAUGHT_BEFORE = {"UnidentifiedImageError", "OSError", "SyntaxError"}


def _bases() -> list[tuple[str, str, bytes]]:
    """(name, format field, data) of the streams that get mutated."""
    rgb, larger = sample_rgb(24, 32), sample_rgb(40, 56, seed=1)
    alpha = np.full((24, 32, 1), 200, np.uint8)
    grey16 = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 85)
    text = (png_chunk(b"tEXt", b"Software\0zsp") + png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"hi" * 50))
            + png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * 300)))
    plain = encode(rgb, "PNG")
    exif = PILImage.Exif()
    exif[0x010F] = "zsp camera"
    return [
        ("png-rgb", "png", plain),
        ("png-rgba", "bgra8; png compressed bgra8", encode(np.concatenate([rgb, alpha], axis=2), "PNG")),
        ("png-palette", "png", encode(PILImage.fromarray(rgb).quantize(colors=16), "PNG")),
        ("png-1bit", "png", encode(PILImage.fromarray(rgb[..., 0] > 128), "PNG")),
        ("png-grey16", "mono16; png compressed mono16", encode(grey16, "PNG")),
        ("png-metadata", "png", plain[:33] + text + plain[33:]),
        ("jpeg", "jpeg", encode(rgb, "JPEG", quality=90)),
        ("jpeg-exif", "", encode(rgb, "JPEG", exif=exif)),
        ("jpeg-restart", "bgr8; jpeg compressed bgr8", encode(larger, "JPEG", restart_marker_blocks=2)),
        ("jpeg-progressive", "rgb8; jpeg compressed bgr8", encode(larger, "JPEG", progressive=True)),
        ("jpeg-progressive-grey", "jpeg", encode(larger[..., 1], "JPEG", progressive=True, quality=75)),
        ("jpeg-progressive-cmyk", "jpeg", encode(PILImage.fromarray(rgb).convert("CMYK"), "JPEG", progressive=True)),
    ]


# ------------------------------------------------------------------------ mutations

_HUGE = [0, 1, 2, 255, 256, 4095, 4097, 65535, 2**31 - 1, 2**31, 2**32 - 1]


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the chunks that fit in the data, following the declared lengths."""
    out, pos = [], 8
    while pos + 12 <= len(data):
        length = struct.unpack_from(">I", data, pos)[0]
        if pos + 12 + length > len(data):
            break
        out.append((pos, length))
        pos += 12 + length
    return out


def _fix_png_crcs(data: bytearray) -> None:
    for pos, length in _png_chunks(bytes(data)):
        data[pos + 8 + length:pos + 12 + length] = struct.pack(">I", zlib.crc32(bytes(data[pos + 4:pos + 8 + length])))


def _mutate(data: bytes, is_png: bool, rng: np.random.Generator) -> tuple[str, bytes]:
    out = bytearray(data)
    kinds = ["flip", "overwrite", "truncate", "splice", "length", "size"] + ([] if is_png else ["scans"])
    kind = str(rng.choice(kinds))
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            out[int(rng.integers(len(out)))] ^= 1 << int(rng.integers(8))
    elif kind == "overwrite":
        for _ in range(int(rng.integers(1, 5))):
            out[int(rng.integers(len(out)))] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80, 0xD9, 0xDA, int(rng.integers(256))]))
    elif kind == "truncate":
        out = out[:int(rng.integers(1, len(out)))]
    elif kind == "splice":
        a, b = sorted(int(x) for x in rng.integers(0, len(out), 2))
        how = int(rng.integers(3))
        if how == 0:
            out[a:b] = b""                                               # delete a slice
        elif how == 1:
            out[a:a] = out[a:b] * int(rng.integers(1, 4))                # duplicate it
        else:
            out[a:a] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == "length" and is_png:
        pos, length = _png_chunks(data)[int(rng.integers(len(_png_chunks(data))))]
        new = int(rng.choice(_HUGE + [length - 1, length + 1, int(rng.integers(2**16))]))
        out[pos:pos + 4] = struct.pack(">I", new % 2**32)
    elif kind == "length":
        pos, _ = [s for s in jpeg_segments(data) if s[1] not in (0xD8, 0xD9)][int(rng.integers(len(jpeg_segments(data)) - 1))]
        out[pos + 2:pos + 4] = struct.pack(">H", int(rng.choice([0, 1, 2, 3, 65535, int(rng.integers(2**16))])))
    elif kind == "size" and is_png:
        out[16:24] = struct.pack(">II", *(int(rng.choice(_HUGE + [int(rng.integers(1, 5000))])) % 2**32 for _ in range(2)))
    elif kind == "size":
        sof = next(pos for pos, marker in jpeg_segments(data) if marker in (0xC0, 0xC1, 0xC2))
        out[sof + 5:sof + 9] = struct.pack(">HH", *(int(rng.choice(_HUGE[:8] + [int(rng.integers(1, 5000))])) % 2**16
                                                    for _ in range(2)))
    else:                                                                  # repeat one scan many times
        scan = scans(data)[int(rng.integers(len(scans(data))))]
        at = data.index(scan) + len(scan)
        out[at:at] = scan * int(rng.integers(1, 80))
    if is_png and rng.random() < 0.5:
        _fix_png_crcs(out)
    return kind, bytes(out)


def _limits(rng: np.random.Generator, size: int) -> InputLimits:
    if rng.random() < 0.5:
        return DEFAULT_LIMITS
    return InputLimits(max_pixels=int(rng.choice([100, 768, 1500, 3000])),
                       max_compressed_bytes=int(rng.choice([size // 2 + 1, size, 1 << 20])),
                       max_raw_bytes=1 << 20,
                       max_text_chunk_bytes=int(rng.choice([0, 16, 200, 1 << 20])),
                       max_jpeg_scans=int(rng.choice([1, 6, 10, 32])))


# ------------------------------------------------------------------------ the fuzz


def _outcome(msg, limits: InputLimits) -> str:
    """"decoded" or "refused:<cause>", after checking the contract of both front doors."""
    try:
        check_picture(msg, limits=limits, depth_policy="normalise")     # 16-bit PNGs decoded too
        header_error = None
    except ImageConversionError as exc:
        header_error = exc
    try:
        out = to_rgb8(msg, limits=limits, depth_policy="normalise")
    except ImageConversionError as exc:
        assert exc.cause in CAUSES and "\n" not in str(exc)
        assert (exc.cause == "too_large") == str(exc).startswith("image too large:"), str(exc)
        if header_error is not None:
            assert (str(exc), exc.cause) == (str(header_error), header_error.cause)
        return f"refused:{exc.cause}"
    assert header_error is None, f"check_picture refused what to_rgb8 decoded: {header_error}"
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.flags.c_contiguous
    assert 0 < out.shape[0] * out.shape[1] <= limits.max_pixels
    return "decoded"


@pytest.mark.filterwarnings("ignore::UserWarning")           # Pillow on corrupt EXIF: expected here
def test_no_exception_but_the_conversion_error_escapes():
    rng = np.random.default_rng(SEED)
    outcomes: collections.Counter[str] = collections.Counter()
    pillow_errors: collections.Counter[str] = collections.Counter()
    per_base: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    slowest = (0.0, "")
    start_all = time.perf_counter()
    for name, fmt, base in _bases():
        assert _outcome(message(base, fmt), DEFAULT_LIMITS) == "decoded", name
        for case in range(CASES_PER_BASE):
            kind, data = _mutate(base, name.startswith("png"), rng)
            limits = _limits(rng, len(data))
            msg = message(data, fmt if rng.random() < 0.8 else "")
            start = time.perf_counter()
            try:
                outcome = _outcome(msg, limits)
            except Exception as exc:            # report the reproducible case
                pytest.fail(f"{name} case {case} ({kind}, seed {SEED}): {type(exc).__name__}: {exc}; "
                            f"data={data[:64].hex()}... ({len(data)} bytes), limits={limits}")
            elapsed = time.perf_counter() - start
            slowest = max(slowest, (elapsed, f"{name} case {case} ({kind})"))
            outcomes[outcome] += 1
            per_base[name][outcome] += 1
            if outcome == "refused:compressed":
                try:
                    to_rgb8(msg, limits=limits)
                except ImageConversionError as exc:
                    found = re.search(r"stream \(format .*?\): (\w+): ", str(exc))
                    if found:
                        pillow_errors[found.group(1)] += 1
    total = sum(outcomes.values())
    print(f"\n{total} cases in {time.perf_counter() - start_all:.1f} s; slowest {slowest[0] * 1e3:.0f} ms "
          f"({slowest[1]})\noutcomes: {dict(outcomes.most_common())}\nPillow errors converted: "
          f"{dict(pillow_errors.most_common())}\nof which the node did not catch before: "
          f"{sum(n for k, n in pillow_errors.items() if k not in CAUGHT_BEFORE)}")
    for name, counts in per_base.items():
        print(f"  {name:24s} {dict(counts.most_common())}")
    assert total == CASES_PER_BASE * len(per_base)
    assert slowest[0] < SLOWEST_CASE_S, slowest
    assert outcomes["decoded"] > total // 20 and total - outcomes["decoded"] > total // 5
    assert {"refused:too_large", "refused:compressed"} <= set(outcomes)
