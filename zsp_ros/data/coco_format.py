"""COCO file-format helpers shared by the writers, the loaders and the evaluators (numpy + PIL).

- Panoptic PNGs encode a segment id per pixel as ``id = R + 256 G + 256² B`` (0 = void).
- A panoptic JSON's PNG folder is, by COCO convention, the folder next to it with the JSON's
  stem (``panoptic_val.json`` -> ``panoptic_val/``). A *view* JSON that reuses another
  folder's PNGs (the synthetic world's ``panoptic_train_zsp.json``) names that folder,
  relative to the JSON, in ``info["segmentations_folder"]``.
Errors name the file (and the image where there is one).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

VOID_ID = 0


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> int64 [H, W] segment ids (R + 256 G + 256² B)."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """int [H, W] segment ids (< 256³) -> uint8 [H, W, 3]."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= 256 ** 3):
        raise ValueError(f"segment ids must lie in [0, 256³), got [{ids.min()}, {ids.max()}]")
    little = np.ascontiguousarray(ids, dtype="<u4")
    return little.view(np.uint8).reshape(*ids.shape, 4)[..., :3].copy()


def load_json(path: str | os.PathLike, *, what: str = "annotation file") -> Any:
    """Read JSON; a missing or malformed file raises an error naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from None


def panoptic_folder(json_path: str | os.PathLike, data: dict | None = None,
                    folder: str | os.PathLike | None = None) -> Path:
    """The PNG folder of a COCO panoptic JSON.

    ``folder`` if given; else ``info["segmentations_folder"]`` (relative to the JSON's
    folder) if the JSON names one; else the sibling folder with the JSON's stem.
    """
    if folder is not None:
        return Path(folder)
    json_path = Path(json_path)
    info = (data or {}).get("info") or {}
    if isinstance(info, dict) and info.get("segmentations_folder"):
        return json_path.parent / info["segmentations_folder"]
    return json_path.parent / json_path.stem


def read_png(path: str | os.PathLike, *, what: str, image: Any = None, mode: str | None = None) -> np.ndarray:
    """Read a PNG as a numpy array (``mode`` "RGB" or "L" converts/checks); errors name the file and image."""
    path = Path(path)
    where = f" (image {image})" if image is not None else ""
    try:
        with Image.open(path) as im:
            if mode == "RGB" and im.mode != "RGB":
                if im.mode in ("RGBA", "P", "L"):
                    im = im.convert("RGB")
                else:
                    raise ValueError(f"{what} {path}{where} has PNG mode {im.mode}; want RGB")
            if mode == "L" and im.mode not in ("L", "P"):
                raise ValueError(f"{what} {path}{where} has PNG mode {im.mode}; want 8-bit single channel")
            return np.asarray(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path}{where} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{what} {path}{where} cannot be read as an image: {exc}") from None


def read_panoptic_png(path: str | os.PathLike, *, image: Any = None) -> np.ndarray:
    """int64 [H, W] segment ids of a COCO panoptic PNG."""
    return rgb2id(read_png(path, what="panoptic PNG", image=image, mode="RGB"))


def encode_png(array: np.ndarray, *, level: int = 1) -> bytes:
    """Encode uint8 [H, W] (grey) or [H, W, 3] (RGB) as PNG bytes, deterministically.

    Every row uses PNG filter 2 ("Up"), then one zlib stream; about 3x faster than PIL's
    adaptive filtering at a similar size. Readable by any PNG decoder.
    """
    import struct
    import zlib

    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"encode_png wants uint8 [H, W] or [H, W, 3], got {array.dtype} {array.shape}")
    h, w = array.shape[:2]
    rows = array.reshape(h, -1)
    raw = np.empty((h, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = 2
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])   # uint8 arithmetic wraps mod 256

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour_type = 2 if array.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))
