"""Contact sheets: a grid of equal-size RGB pictures, one captioned row per item, titled columns.

`contact_sheet(rows, captions, header)` is the package's one contact sheet, used by `zsp demo`
(camera | ground truth | before add | after add, per scene) and the data preview
(image | annotation, per image). Contract:

- ``rows[i][j]`` is a uint8 [H,W,3] RGB array; every tile is drawn at the size of ``rows[0][0]``
  times ``scale`` (nearest), so tiles of another size are stretched to it;
- ``header[j]`` is written above column j, ``captions[i]`` above row i (Pillow's default font);
- the result is a PIL RGB image on a dark background; no rows is a ValueError.

Needs numpy and Pillow.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], captions: Sequence[str], header: Sequence[str], *,
                  scale: int = 2) -> Image.Image:
    """A PIL image: one row per item, columns of equal-size RGB arrays, titles on top."""
    if not rows:
        raise ValueError("contact_sheet needs at least one row")
    if len(captions) != len(rows):
        raise ValueError(f"contact_sheet got {len(rows)} rows but {len(captions)} captions")
    h, w = rows[0][0].shape[:2]
    cw, ch, pad, top = w * scale, h * scale, 6, 18
    sheet = Image.new("RGB", (len(header) * (cw + pad) + pad, top + len(rows) * (ch + top + pad)), (25, 25, 25))
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(header):
        draw.text((pad + j * (cw + pad), 3), title, fill=(235, 235, 235))
    for i, (row, caption) in enumerate(zip(rows, captions)):
        y = top + i * (ch + top + pad)
        draw.text((pad, y + 2), caption, fill=(200, 200, 200))
        for j, cell in enumerate(row):
            tile = Image.fromarray(cell).resize((cw, ch), Image.NEAREST)
            sheet.paste(tile, (pad + j * (cw + pad), y + top))
    return sheet
