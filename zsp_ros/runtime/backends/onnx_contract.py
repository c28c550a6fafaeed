"""The contract of an exported ONNX file, as backends check it before running one.

    input   images        float32 [1, 3, H, W]   normalised (zsp_ros.inference.preprocess), H, W multiples of 32
    output  mask_logits   float32 [1, Q, H/4, W/4]
    output  query_embeds  float32 [1, Q, E]

``metadata_props`` (all strings): ``zsp_format`` = "zsp-onnx", ``zsp_format_version``, ``kit_sha256``,
``input_hw`` ("HxW"), ``msda`` (variant), ``msda_plugin_version`` (plugin only), ``num_queries``,
``embed_dim``, ``opset``, ``torch_version``. Writing such a file is zsp_ros.export.onnx_export's job;
this module only reads and checks (no torch, no onnx export code).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

ONNX_FORMAT = "zsp-onnx"
ONNX_FORMAT_VERSION = 1
INPUT_NAME = "images"
OUTPUT_NAMES = ("mask_logits", "query_embeds")
VARIANTS = ("plugin", "portable")


class OnnxExportError(ValueError):
    """An export request or an exported file is invalid; the message says which and why."""


def parse_size(text: str) -> tuple[int, int]:
    """"480x640" (HxW, pixels) -> (480, 640); both positive multiples of 32."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise OnnxExportError(f"size {text!r} must be HxW in pixels, e.g. 480x640") from None
    check_size(h, w)
    return h, w


def check_size(height: int, width: int) -> None:
    """Raise OnnxExportError unless both sides are positive multiples of 32."""
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise OnnxExportError(f"input size {height}x{width} (HxW): both sides must be positive multiples of 32")


def read_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an ONNX file as a dict (the graph's weights are not loaded)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxExportError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise OnnxExportError(f"{path} is not a readable ONNX file ({exc})") from None
    return {p.key: p.value for p in model.metadata_props}


def check_metadata(path: str | Path, *, kit_sha256: str | None = None, variant: str | None = None,
                   input_hw: tuple[int, int] | None = None) -> dict[str, str]:
    """Read and check an exported file's metadata; return it.

    Raises:
        OnnxExportError: not a zsp export, another format version, or a kit / variant / size other
            than the expected one (the message names both values).
    """
    meta = read_metadata(path)
    if meta.get("zsp_format") != ONNX_FORMAT:
        raise OnnxExportError(f"{path}: not an ONNX file written by `zsp export onnx` (zsp_format is "
                              f"{meta.get('zsp_format')!r})")
    if meta.get("zsp_format_version") != str(ONNX_FORMAT_VERSION):
        raise OnnxExportError(f"{path}: zsp_format_version {meta.get('zsp_format_version')!r}, this code reads "
                              f"{ONNX_FORMAT_VERSION}; export it again")
    if kit_sha256 is not None and meta.get("kit_sha256") != kit_sha256:
        raise OnnxExportError(f"{path}: exported from kit {meta.get('kit_sha256', '')[:12]}…, but the kit in use is "
                              f"{kit_sha256[:12]}…; export it again from this kit")
    if variant is not None and meta.get("msda") != variant:
        raise OnnxExportError(f"{path}: deformable attention variant is {meta.get('msda')!r}, {variant!r} is needed")
    if input_hw is not None and meta.get("input_hw") != f"{input_hw[0]}x{input_hw[1]}":
        raise OnnxExportError(f"{path}: input size is {meta.get('input_hw')}, {input_hw[0]}x{input_hw[1]} is needed")
    return meta


def metadata_input_hw(meta: Mapping[str, str]) -> tuple[int, int]:
    """The fixed (H, W) recorded in metadata_props."""
    return parse_size(meta["input_hw"])
