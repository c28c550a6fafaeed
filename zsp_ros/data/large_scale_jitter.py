"""Large-scale jitter (LSJ) as Mask2Former's COCO "new baseline" mappers apply it.

Horizontal flip (p = 0.5), then detectron2's ``ResizeScale(min_scale=0.1, max_scale=2.0,
target_height=1024, target_width=1024)`` — the image is fitted into ``scale × target`` with
its aspect ratio kept — then ``FixedSizeCrop(1024)``: a random crop to at most the target,
padded at the bottom/right to exactly the target (image 128, masks False, sem_seg 255).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from zsp_ros.data.categories import IGNORE_INDEX

IMAGE_PAD_VALUE = 128   # detectron2 FixedSizeCrop pad_value (≈ 0 after ImageNet normalisation)


class LargeScaleJitter:
    """``(image uint8 [3,H,W], target) -> (image uint8 [3,S,S], target)`` with S = ``crop_size``.

    Target ``masks`` bool [N,H,W] and optional ``sem_seg`` int64 [H,W] follow the image (nearest).
    Randomness from ``generator`` if given, else torch's global RNG.
    """

    def __init__(self, *, crop_size: int = 1024, min_scale: float = 0.1, max_scale: float = 2.0,
                 flip_prob: float = 0.5) -> None:
        if crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {crop_size}")
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.crop_size, self.min_scale, self.max_scale, self.flip_prob = crop_size, min_scale, max_scale, flip_prob

    def __call__(self, image: torch.Tensor, target: dict[str, Any],
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        out = dict(target)
        masks, sem = target["masks"], target.get("sem_seg")
        if float(torch.rand((), generator=generator)) < self.flip_prob:
            image, masks = image.flip(-1), masks.flip(-1)
            sem = sem.flip(-1) if sem is not None else None
        h, w = image.shape[1:]
        s = self.crop_size
        scale = self.min_scale + (self.max_scale - self.min_scale) * float(torch.rand((), generator=generator))
        factor = min(scale * s / h, scale * s / w)
        nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
        img = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False,
                            antialias=factor < 1)[0].round().clamp(0, 255).to(torch.uint8)
        if masks.shape[0]:
            masks = F.interpolate(masks[None].to(torch.uint8), size=(nh, nw), mode="nearest")[0].bool()
        else:
            masks = torch.zeros((0, nh, nw), dtype=torch.bool)
        if sem is not None:
            sem = F.interpolate(sem[None, None].float(), size=(nh, nw), mode="nearest")[0, 0].long()
        top = int(torch.randint(0, max(nh - s, 0) + 1, (), generator=generator))
        left = int(torch.randint(0, max(nw - s, 0) + 1, (), generator=generator))
        img, masks = img[:, top:top + s, left:left + s], masks[:, top:top + s, left:left + s]
        ph, pw = s - img.shape[1], s - img.shape[2]
        out["masks"] = F.pad(masks, (0, pw, 0, ph))
        if sem is not None:
            out["sem_seg"] = F.pad(sem[top:top + s, left:left + s], (0, pw, 0, ph), value=IGNORE_INDEX)
        return F.pad(img, (0, pw, 0, ph), value=IMAGE_PAD_VALUE), out
