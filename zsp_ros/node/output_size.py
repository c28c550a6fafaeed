"""Output at the network's resolution (``output_resolution: network``): the frame shrunk first, by the
very resize the Segmenter's preprocessing would apply to it, so the network sees the same input and
every output (id image, semantic map, colour mask, overlay) comes at that smaller size: less to
upsample, copy, send and receive. The published header is the camera frame's; consumers scale by
``id_image.width / camera width``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zsp_ros.inference.preprocess import fitted_size, resized_size


def network_hw(height: int, width: int, segmenter: Any) -> tuple[int, int]:
    """(h, w) a frame of ``height`` x ``width`` is resized to before padding: the kit's rule (fixed-shape
    backends: fit inside their input)."""
    if segmenter.fixed_hw is not None:
        return fitted_size(height, width, fixed_hw=segmenter.fixed_hw)
    return resized_size(height, width, short_side=segmenter.short_side, max_long_side=segmenter.max_long_side)


def network_sized(rgb: np.ndarray, segmenter: Any) -> np.ndarray:
    """uint8 [h, w, 3] RGB: ``rgb`` ([H, W, 3]) resized as preprocess does (bilinear in uint8, antialiased
    when shrinking); ``rgb`` itself when already that size."""
    height, width = rgb.shape[:2]
    new_h, new_w = network_hw(height, width, segmenter)
    if (new_h, new_w) == (height, width):
        return rgb
    array = np.ascontiguousarray(rgb)
    if not array.flags.writeable:
        array = array.copy()
    x = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False,
                      antialias=(new_h < height or new_w < width))
    return x[0].permute(1, 2, 0).contiguous().numpy()
