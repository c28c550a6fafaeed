"""Contact sheets: images beside colour-coded panoptic overlays labelled with category names.

Works on any COCO panoptic JSON + PNG folder (the synthetic world, or predictions written in
the same format). Each segment is tinted with its category's ``color`` (a fixed colour per
category id when the JSON has none), segment borders are white, and each segment's name is
written at its most interior pixel.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from zsp_ros.data.coco_format import load_json, panoptic_folder, read_panoptic_png, read_png


def _category_colour(cat: dict[str, Any]) -> np.ndarray:
    if "color" in cat:
        return np.asarray(cat["color"], dtype=np.float32)
    rng = np.random.default_rng(int(cat["id"]))
    return rng.uniform(40, 255, size=3).astype(np.float32)


def overlay_panoptic(image: np.ndarray, pan: np.ndarray, segments_info: Sequence[dict],
                     categories: dict[int, dict], *, scale: int = 3, alpha: float = 0.6) -> Image.Image:
    """Tinted, outlined, labelled overlay of one image.

    image: uint8 [H, W, 3]; pan: int [H, W] segment ids (0 = void, left untinted);
    segments_info: COCO panoptic segments ({"id", "category_id", ...}); categories: id -> category.
    Returns a PIL RGB image of size (W*scale, H*scale).
    """
    from scipy.ndimage import distance_transform_edt

    big_img = np.repeat(np.repeat(image, scale, 0), scale, 1).astype(np.float32)
    big_pan = np.repeat(np.repeat(pan, scale, 0), scale, 1)
    tint = big_img.copy()
    labels = []
    for k, seg in enumerate(segments_info):
        mask = big_pan == seg["id"]
        if not mask.any():
            continue
        cat = categories[seg["category_id"]]
        colour = _category_colour(cat) * (1.0 - 0.12 * (k % 3))   # instances of one category differ a bit
        tint[mask] = colour
        dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        labels.append((int(x), int(y), cat["name"]))
    out = (1 - alpha) * big_img + alpha * tint
    border = np.zeros(big_pan.shape, dtype=bool)
    border[:-1] |= big_pan[:-1] != big_pan[1:]
    border[:, :-1] |= big_pan[:, :-1] != big_pan[:, 1:]
    out[border] = 255
    sheet = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(9, 4 * scale))
    width, height = sheet.size
    for x, y, name in labels:
        half = draw.textlength(name, font=font) / 2 + 2
        x = min(max(x, half), width - half)              # keep the name inside the image
        y = min(max(y, 8), height - 8)
        draw.text((x, y), name, font=font, fill=(255, 255, 255), anchor="mm",
                  stroke_width=2, stroke_fill=(0, 0, 0))
    return sheet


def contact_sheet(rows: Sequence[tuple[np.ndarray, np.ndarray, Sequence[dict], str]],
                  categories: dict[int, dict], *, scale: int = 3, columns: int = 2) -> Image.Image:
    """Grid of (image | overlay) pairs; ``rows`` holds (image, pan ids, segments_info, caption)."""
    cells = []
    font = ImageFont.load_default(size=14)
    for image, pan, segments, caption in rows:
        h, w = image.shape[:2]
        cell = Image.new("RGB", (2 * w * scale + 6, h * scale + 22), (30, 30, 30))
        cell.paste(Image.fromarray(image).resize((w * scale, h * scale), Image.NEAREST), (0, 22))
        cell.paste(overlay_panoptic(image, pan, segments, categories, scale=scale), (w * scale + 6, 22))
        ImageDraw.Draw(cell).text((4, 3), caption, font=font, fill=(230, 230, 230))
        cells.append(cell)
    if not cells:
        raise ValueError("contact_sheet needs at least one image")
    cw, ch = cells[0].size
    n_rows = (len(cells) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cw + (columns - 1) * 8, n_rows * ch + (n_rows - 1) * 8), (0, 0, 0))
    for i, cell in enumerate(cells):
        sheet.paste(cell, ((i % columns) * (cw + 8), (i // columns) * (ch + 8)))
    return sheet


def write_panoptic_preview(panoptic_json: str | os.PathLike, image_root: str | os.PathLike,
                           out: str | os.PathLike, *, count: int = 8, scale: int = 3,
                           panoptic_root: str | os.PathLike | None = None) -> Path:
    """Contact sheet of the first ``count`` images of a COCO panoptic JSON, written as PNG to ``out``."""
    data = load_json(panoptic_json, what="panoptic JSON")
    folder = panoptic_folder(panoptic_json, data, panoptic_root)
    categories = {c["id"]: c for c in data["categories"]}
    images = {im["id"]: im for im in data["images"]}
    rows = []
    for ann in data["annotations"][:count]:
        im = images[ann["image_id"]]
        image = read_png(Path(image_root) / im["file_name"], what="image", image=im["id"], mode="RGB")
        pan = read_panoptic_png(folder / ann["file_name"], image=im["id"])
        rows.append((image, pan, ann["segments_info"], f"image {im['id']}  ({im['file_name']})"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(rows, categories, scale=scale).save(out)
    return out


def write_world_preview(root: str | os.PathLike, *, split: str = "val", count: int = 8,
                        out: str | os.PathLike | None = None, scale: int = 3) -> Path:
    """Contact sheet of a synthetic world's split (default DIR/preview.png)."""
    root = Path(root)
    return write_panoptic_preview(root / "annotations" / f"panoptic_{split}.json", root / "images" / split,
                                  out if out is not None else root / "preview.png", count=count, scale=scale)
