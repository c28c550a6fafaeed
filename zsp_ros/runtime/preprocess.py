"""Pure image pre-processing shared by every backend: validate, resize, pad, normalise.

numpy HWC uint8 RGB in; a float32 tensor [1,3,H,W] (H, W multiples of ``size_divisibility``,
or exactly a fixed export size) and the `Geometry` needed to map outputs back to the input.
Normalisation is detectron2's ImageNet mean/std in the 0-255 scale, as the model expects
(docs/CONTRACTS.md, "Model").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PIXEL_MEAN = (123.675, 116.28, 103.53)   # RGB, 0-255 scale (detectron2)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Geometry:
    """How an input image became the network input (all sizes in pixels, (height, width)).

    The network input is the image resized to ``resized_hw`` (aspect kept), placed at the
    top-left corner and zero-padded to ``padded_hw``.
    """
    input_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]

    @property
    def scale(self) -> float:
        """resized / input (same for both axes up to rounding)."""
        return self.resized_hw[0] / self.input_hw[0]


def validate_image(image: object) -> np.ndarray:
    """Check that ``image`` is a non-empty HWC uint8 RGB numpy array; return it.

    Raises TypeError (not a numpy array, wrong dtype) or ValueError (wrong ndim, channel count,
    zero size) with a message that names what was received.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (HWC uint8 RGB), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must have dtype uint8 (values 0-255), got {image.dtype}")
    if image.ndim != 3:
        raise ValueError(f"image must be HWC with 3 dimensions, got shape {image.shape}")
    if image.shape[2] != 3:
        raise ValueError(f"image must have 3 channels (RGB) in the last axis, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def resized_size(height: int, width: int, *, short_side: int, max_long_side: int) -> tuple[int, int]:
    """Size after scaling so the short side is ``short_side`` and the long side at most ``max_long_side``.

    Same rule as detectron2's ResizeShortestEdge (scale, then cap the long side; round half up).
    Never returns a side below 1.
    """
    if short_side <= 0 or max_long_side <= 0:
        raise ValueError(f"short_side and max_long_side must be positive, got {short_side}, {max_long_side}")
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_long_side:
        scale = max_long_side / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def fitted_size(height: int, width: int, *, fixed_hw: tuple[int, int]) -> tuple[int, int]:
    """Largest size with the input's aspect that fits inside ``fixed_hw`` (for fixed-shape engines)."""
    scale = min(fixed_hw[0] / height, fixed_hw[1] / width)
    return (min(fixed_hw[0], max(1, int(height * scale + 0.5))),
            min(fixed_hw[1], max(1, int(width * scale + 0.5))))


def preprocess(image: np.ndarray, *, short_side: int, max_long_side: int, size_divisibility: int = 32,
               fixed_hw: tuple[int, int] | None = None,
               device: str | torch.device = "cpu") -> tuple[torch.Tensor, Geometry]:
    """Turn one RGB image into the normalised network input.

    Args:
        image: HWC uint8 RGB, any size >= 1x1, contiguous or not.
        short_side, max_long_side: resize rule (see `resized_size`); ignored when ``fixed_hw`` is set.
        size_divisibility: pad height and width up to a multiple of this (32 for the model).
        fixed_hw: when given, resize to fit inside (H, W) keeping aspect and pad to exactly (H, W);
            both must be multiples of ``size_divisibility`` (a fixed-shape engine's input).
        device: where the returned tensor lives.

    Returns:
        images: float32 [1,3,Hp,Wp], (pixel - mean) / std inside the image, 0 in the padding.
        geometry: sizes to undo the resize and padding.
    """
    image = validate_image(image)
    height, width = image.shape[:2]
    if fixed_hw is not None:
        fixed_hw = (int(fixed_hw[0]), int(fixed_hw[1]))
        if min(fixed_hw) <= 0 or fixed_hw[0] % size_divisibility or fixed_hw[1] % size_divisibility:
            raise ValueError(f"fixed_hw {fixed_hw} must be positive multiples of {size_divisibility}")
        new_h, new_w = fitted_size(height, width, fixed_hw=fixed_hw)
        padded = fixed_hw
    else:
        new_h, new_w = resized_size(height, width, short_side=short_side, max_long_side=max_long_side)
        padded = (math.ceil(new_h / size_divisibility) * size_divisibility,
                  math.ceil(new_w / size_divisibility) * size_divisibility)

    # torch.from_numpy wants a writeable, C-ordered buffer; copy only when the input is not one.
    array = np.ascontiguousarray(image)
    if not array.flags.writeable:
        array = array.copy()
    x = torch.from_numpy(array)
    x = x.permute(2, 0, 1).unsqueeze(0)                               # [1,3,h,w] uint8, CPU
    if (new_h, new_w) != (height, width):
        # Resized in uint8, as detectron2 does with PIL (a huge frame never becomes a float copy);
        # antialias when shrinking so a large camera frame does not alias.
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False,
                          antialias=(new_h < height or new_w < width))
    x = x.to(device).float()                                          # 0-255
    mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    out = x.new_zeros((1, 3, padded[0], padded[1]))
    out[:, :, :new_h, :new_w] = x
    return out, Geometry(input_hw=(height, width), resized_hw=(new_h, new_w), padded_hw=padded)


def denormalise(images: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation: float32 [B,3,H,W] -> float32 [B,3,H,W] in 0-255 (for tests, drawing)."""
    mean = torch.tensor(PIXEL_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return images * std + mean


def masks_to_resized(mask_logits: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Undo the padding on mask logits, as Mask2Former does: float [N,h,w] at any stride -> [N,rh,rw].

    Upsamples (bilinear) to the padded network size, then crops the padding away; the result is at
    ``geometry.resized_hw``. N may be 0.
    """
    ph, pw = geometry.padded_hw
    rh, rw = geometry.resized_hw
    if mask_logits.shape[0] == 0:
        return mask_logits.new_zeros((0, rh, rw))
    if tuple(mask_logits.shape[-2:]) != (ph, pw):
        mask_logits = F.interpolate(mask_logits[None], size=(ph, pw), mode="bilinear",
                                    align_corners=False)[0]
    return mask_logits[:, :rh, :rw]


class MaskUpsampler:
    """`masks_to_resized` as two matrix products, planned once per (mask size, geometry).

    Bilinear resizing (align_corners=False) is separable: rows and columns are each a linear map,
    so upsample-then-crop is ``Ry @ M @ Rx.T`` with ``Ry`` [rh, h] and ``Rx`` [rw, w] the first
    rows of the 1-D interpolation matrices to the padded size. For the few kept queries of a frame
    this is ~10x cheaper on CPU than ``F.interpolate`` to the padded size followed by a crop, and
    equal to it up to float rounding (tests).
    """

    def __init__(self, mask_hw: tuple[int, int], geometry: Geometry, device: torch.device | str = "cpu"):
        (h, w), (ph, pw), (rh, rw) = mask_hw, geometry.padded_hw, geometry.resized_hw
        self.mask_hw = (int(h), int(w))
        self.rows = _linear_resize_matrix(h, ph)[:rh].to(device)          # [rh, h]
        self.cols_t = _linear_resize_matrix(w, pw)[:rw].t().contiguous().to(device)   # [w, rw]

    def __call__(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """float [N,h,w] -> float32 [N,rh,rw]; N may be 0."""
        if tuple(mask_logits.shape[-2:]) != self.mask_hw:
            raise ValueError(f"MaskUpsampler: planned for masks {self.mask_hw}, got {tuple(mask_logits.shape[-2:])}")
        n, h, w = mask_logits.shape
        columns = torch.mm(mask_logits.float().reshape(n * h, w), self.cols_t)     # [n*h, rw]: one 2-D product
        return torch.matmul(self.rows, columns.view(n, h, self.cols_t.shape[1]))


def _linear_resize_matrix(src: int, dst: int) -> torch.Tensor:
    """float32 [dst, src]: the weights of 1-D linear interpolation (align_corners=False) src -> dst."""
    eye = torch.eye(src, dtype=torch.float32)[None, None]                   # [1,1,src,src]
    return F.interpolate(eye, size=(dst, src), mode="bilinear", align_corners=False)[0, 0]


def labels_to_input(label_map: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Nearest-neighbour resize of an integer map [rh,rw] at the resized size back to the input size [H,W]
    (same dtype; sampling of ``F.interpolate(mode="nearest")``). Per-frame code keeps a `NearestResize`."""
    if tuple(label_map.shape) == geometry.input_hw:
        return label_map
    plan = NearestResize(tuple(label_map.shape), geometry.input_hw)
    return torch.from_numpy(plan.apply(label_map)).to(label_map.dtype)


class NearestResize:
    """Nearest-neighbour resize of integer maps [h,w] -> [H,W], with the same sampling as
    ``F.interpolate(mode="nearest")``, planned once per (small, input) size pair.

    ``apply`` is two numpy ``take`` calls on int32 (~0.1 ms at 640x480 on this CPU, 10x faster
    than interpolating a float copy and casting back). The plan also holds what the segment
    records need: input rows per small row and input columns per small column (``row_weight`` [h],
    ``col_weight`` [w], in ``weight_dtype``: float32 when every integer sum of them is exact in
    it, else float64; a small pixel stands for row_weight[y] * col_weight[x] input pixels), which
    small pixels any input pixel reads (``reached`` bool [h,w]), and the first / last input row
    (column) that reads each small row (column): ``first_row`` / ``last_row`` int64 [h] (and
    ``first_col`` / ``last_col`` [w]; meaningless where the weight is 0).
    """

    def __init__(self, small_hw: tuple[int, int], input_hw: tuple[int, int]):
        (h, w), (big_h, big_w) = small_hw, input_hw
        self.small_hw = (int(h), int(w))
        self.identity = self.small_hw == (int(big_h), int(big_w))
        self.src_y = _nearest_source(h, big_h).numpy().astype(np.intp)   # [H], non-decreasing
        self.src_x = _nearest_source(w, big_w).numpy().astype(np.intp)   # [W]
        rows = np.bincount(self.src_y, minlength=h)                        # input rows per small row
        cols = np.bincount(self.src_x, minlength=w)
        self.weight_dtype = np.float32 if big_h * big_w < 2 ** 24 else np.float64
        self.row_weight, self.col_weight = rows.astype(self.weight_dtype), cols.astype(self.weight_dtype)
        self.reached = (rows[:, None] > 0) & (cols[None, :] > 0)                   # bool [h,w]
        # first / last input row (column) reading each small row (column); src_* is non-decreasing
        small_y, small_x = np.arange(h), np.arange(w)
        self.first_row = np.searchsorted(self.src_y, small_y).astype(np.int64)
        self.last_row = (np.searchsorted(self.src_y, small_y, side="right") - 1).astype(np.int64)
        self.first_col = np.searchsorted(self.src_x, small_x).astype(np.int64)
        self.last_col = (np.searchsorted(self.src_x, small_x, side="right") - 1).astype(np.int64)
        self.all_reached = bool(self.reached.all())                                 # always when enlarging

    def apply(self, label_map: torch.Tensor | np.ndarray) -> np.ndarray:
        """int map [h,w] (tensor on any device, or numpy) -> int32 numpy [H,W] (a new array)."""
        small = label_map.to(torch.int32).cpu().numpy() if isinstance(label_map, torch.Tensor) \
            else np.asarray(label_map, dtype=np.int32)
        if self.identity:
            return small.copy()
        # columns first, then whole rows: ~3x faster than rows first (row takes are plain copies)
        return small.take(self.src_x, axis=1).take(self.src_y, axis=0)


def _nearest_source(src: int, dst: int) -> torch.Tensor:
    """int64 [dst]: the source index F.interpolate(mode="nearest") reads for each output index."""
    if src == dst:
        return torch.arange(dst)
    index = torch.arange(src, dtype=torch.float32)[None, None, :, None]
    return torch.nn.functional.interpolate(index, size=(dst, 1), mode="nearest")[0, 0, :, 0].long()
