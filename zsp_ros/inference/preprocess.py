"""Pure image pre-processing shared by every backend, training and evaluation: validate, resize, pad, normalise.

`preprocess`: numpy HWC uint8 RGB in; a float32 tensor [1,3,H,W] (H, W multiples of
``size_divisibility``, or exactly a fixed export size) and the `Geometry` needed to map outputs
back to the input. Normalisation is detectron2's ImageNet mean/std in the 0-255 scale, as the
model expects (docs/CONTRACTS.md, "Model").

The pieces, for callers that batch images themselves (training, evaluation caches):
- `normalise`: [..., 3, H, W] in 0-255 -> float (pixel - mean) / std; `denormalise` undoes it;
- `padded_size`: (H, W) rounded up to multiples of ``size_divisibility``;
- `pad_to`: pad the last two axes bottom/right to a size (0, or ``value``);
- `image_batch`: HWC uint8 RGB arrays at their own size -> float32 [B,3,Hp,Wp], each normalised
  and padded with 0 at the bottom/right (no resize).
"""
from __future__ import annotations

from collections.abc import Sequence
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


def padded_size(height: int, width: int, size_divisibility: int) -> tuple[int, int]:
    """(height, width) rounded up to multiples of ``size_divisibility`` (>= 1)."""
    d = int(size_divisibility)
    return -(-int(height) // d) * d, -(-int(width) // d) * d


def pad_to(tensor: torch.Tensor, padded_hw: tuple[int, int], *, value: float = 0) -> torch.Tensor:
    """Pad the last two axes (H, W) of ``tensor`` at the bottom/right up to ``padded_hw``.

    Any dtype (bool masks included); the padding holds ``value``. A size below the tensor's raises
    ValueError (padding never crops).
    """
    h, w = tensor.shape[-2:]
    ph, pw = int(padded_hw[0]), int(padded_hw[1])
    if ph < h or pw < w:
        raise ValueError(f"cannot pad {(h, w)} to the smaller size {(ph, pw)}")
    return F.pad(tensor, (0, pw - w, 0, ph - h), value=value)


def _mean_std(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """PIXEL_MEAN and PIXEL_STD as [3,1,1] tensors (broadcast over [...,3,H,W])."""
    return (torch.tensor(PIXEL_MEAN, dtype=dtype, device=device).view(3, 1, 1),
            torch.tensor(PIXEL_STD, dtype=dtype, device=device).view(3, 1, 1))


def normalise(images: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] pixels in 0-255 -> (pixel - mean) / std, same shape and device.

    uint8 (or any integer) input becomes float32; a floating input keeps its dtype.
    """
    if not images.is_floating_point():
        images = images.float()
    mean, std = _mean_std(images.dtype, images.device)
    return (images - mean) / std


def image_batch(images: Sequence[np.ndarray], *, size_divisibility: int = 32,
                padded_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """HWC uint8 RGB images at their own sizes -> one normalised float32 CPU batch [B,3,Hp,Wp].

    Each image sits at the top-left corner, 0 in the padding (no resize). ``padded_hw`` fixes
    (Hp, Wp) (no image may exceed it); by default it is the largest height and width of the
    images rounded up to ``size_divisibility``.
    """
    if not images:
        raise ValueError("image_batch: no images")
    images = [validate_image(a) for a in images]
    if padded_hw is None:
        padded_hw = padded_size(max(a.shape[0] for a in images), max(a.shape[1] for a in images),
                                size_divisibility)
    return torch.stack([pad_to(normalise(torch.from_numpy(np.array(a, dtype=np.uint8, copy=True))
                                         .permute(2, 0, 1)), padded_hw) for a in images])


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
        padded = padded_size(new_h, new_w, size_divisibility)

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
    x = normalise(x.to(device).float())                               # from 0-255
    return pad_to(x, padded), Geometry(input_hw=(height, width), resized_hw=(new_h, new_w), padded_hw=padded)


def denormalise(images: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalise`: float [...,3,H,W] -> the same shape in 0-255 (for tests, drawing)."""
    mean, std = _mean_std(images.dtype, images.device)
    return images * std + mean


