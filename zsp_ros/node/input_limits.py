"""How big an input picture may be: `InputLimits`, checked before any pixel buffer is allocated.

A frame over a limit is refused with an ImageConversionError whose ``cause`` is "too_large" and
whose message starts "image too large:" (image_conversion.py). The node exposes the limits as
parameters (``PARAMETER_FIELDS``: parameter name -> field); `InputLimits.from_parameters` builds
the limits from them, naming the parameter in its error.

Defaults (``DEFAULT_LIMITS``) and why:

====================  ==========  ===========================================================
field                 default     why
====================  ==========  ===========================================================
max_pixels            16,777,216  4096 x 4096: twice a 4K UHD frame (3840 x 2160 = 8.3 MP), and
                                  12 / 16 MP machine-vision sensors fit. Decoding one costs at
                                  most ~64 MiB in Pillow (4 bytes a pixel) + 48 MiB of rgb8.
max_compressed_bytes  33,554,432  32 MiB: 1.3 x the raw size of a 4K rgb8 frame, so a JPEG or
                                  PNG of any 4K frame fits (and a 16 MP one as JPEG).
max_raw_bytes         134,217,728 128 MiB: max_pixels x 4 bytes (rgba8, 32FC1) x 2 for padded
                                  rows (``step``).
max_text_chunk_bytes  65,536      64 KiB of PNG metadata (tEXt, zTXt, iTXt, iCCP; all chunks
                                  of one image together, counted inflated): encoders write
                                  < 1 KiB, an sRGB ICC profile is 3 KiB.
max_jpeg_scans        32          every scan of a progressive JPEG is a pass over the whole
                                  picture (~30 ms at 16.8 MP): 1,000 copies of one 33-byte scan
                                  took 29 s. libjpeg's progressive JPEGs have 10 scans.
====================  ==========  ===========================================================

The ceilings (``LIMIT_RANGES``) keep Pillow's own, process-wide guards behind ours: above
89,478,485 pixels (Pillow's MAX_IMAGE_PIXELS) Pillow warns, and above 1 MiB of one text chunk
(PngImagePlugin.MAX_TEXT_CHUNK) it raises.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping

MIB = 1 << 20

# Pillow's default Image.MAX_IMAGE_PIXELS (1 GiB / 4 bytes / 3): the most pixels a limit may allow.
MAX_PIXELS_CEILING = 1024 * 1024 * 1024 // 4 // 3

# field -> (lowest, highest) value it may take.
LIMIT_RANGES: dict[str, tuple[int, int]] = {
    "max_pixels": (1, MAX_PIXELS_CEILING),
    "max_compressed_bytes": (1, 1024 * MIB),
    "max_raw_bytes": (1, 4096 * MIB),
    "max_text_chunk_bytes": (0, MIB),
    "max_jpeg_scans": (1, 1000),
}

# The node's parameter name -> the InputLimits field it sets.
PARAMETER_FIELDS: dict[str, str] = {
    "max_input_pixels": "max_pixels",
    "max_compressed_bytes": "max_compressed_bytes",
    "max_raw_bytes": "max_raw_bytes",
    "max_text_chunk_bytes": "max_text_chunk_bytes",
    "max_jpeg_scans": "max_jpeg_scans",
}


def _range_problem(value: object, low: int, high: int) -> str | None:
    """None when ``value`` is an int in [low, high], else what is wrong with it (one line)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer in [{low}, {high}], got {value!r} ({type(value).__name__})"
    if not low <= value <= high:
        return f"must be in [{low}, {high}], got {value}"
    return None


@dataclass(frozen=True)
class InputLimits:
    """Upper bounds on one input frame; all in pixels, bytes or scans (defaults: module docstring).

    Attributes:
        max_pixels: decoded width x height, raw or compressed.
        max_compressed_bytes: length of a CompressedImage's ``data``.
        max_raw_bytes: length of an Image's ``data`` (height x step).
        max_text_chunk_bytes: PNG metadata of one image (tEXt, zTXt, iTXt, iCCP chunks
            together, counted after inflation); 0 refuses any.
        max_jpeg_scans: scans (SOS markers) of one JPEG.

    Raises:
        ValueError: a field is not an int within ``LIMIT_RANGES`` (one line naming it).
    """

    max_pixels: int = 4096 * 4096
    max_compressed_bytes: int = 32 * MIB
    max_raw_bytes: int = 128 * MIB
    max_text_chunk_bytes: int = 64 * 1024
    max_jpeg_scans: int = 32

    def __post_init__(self) -> None:
        for field in fields(self):
            problem = _range_problem(getattr(self, field.name), *LIMIT_RANGES[field.name])
            if problem is not None:
                raise ValueError(f"{field.name} {problem}")

    @classmethod
    def from_parameters(cls, values: Mapping[str, object]) -> InputLimits:
        """Limits from node parameters named as in ``PARAMETER_FIELDS``; absent ones keep their default.

        Raises:
            ValueError: an unknown name, or a value out of range (one line naming the parameter).
        """
        unknown = sorted(set(values) - set(PARAMETER_FIELDS))
        if unknown:
            raise ValueError(f"unknown input limit parameter(s) {unknown}; known: {sorted(PARAMETER_FIELDS)}")
        chosen: dict[str, int] = {}
        for name, value in values.items():
            field = PARAMETER_FIELDS[name]
            problem = _range_problem(value, *LIMIT_RANGES[field])
            if problem is not None:
                raise ValueError(f"{name} {problem}")
            assert isinstance(value, int)
            chosen[field] = value
        return cls(**chosen)


DEFAULT_LIMITS = InputLimits()
