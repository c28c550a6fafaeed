"""Pre-processing: validation, resize rule, padding, normalisation, and the way back."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zsp_ros.inference.preprocess import (
    PIXEL_MEAN,
    PIXEL_STD,
    Geometry,
    denormalise,
    preprocess,
    resized_size,
    validate_image,
)
from zsp_ros.inference.resize import labels_to_input, masks_to_resized


def test_resize_rule_short_side_and_long_cap():
    assert resized_size(480, 640, short_side=256, max_long_side=1024) == (256, 341)
    assert resized_size(100, 1000, short_side=256, max_long_side=512) == (51, 512)   # long side capped
    assert resized_size(1, 1, short_side=64, max_long_side=128) == (64, 64)
    assert resized_size(1, 5000, short_side=64, max_long_side=128) == (1, 128)      # never below 1
    with pytest.raises(ValueError, match="positive"):
        resized_size(10, 10, short_side=0, max_long_side=10)


def test_output_shape_padding_and_normalisation():
    img = np.full((48, 80, 3), (123, 116, 103), dtype=np.uint8)
    x, geo = preprocess(img, short_side=48, max_long_side=200)
    assert x.dtype == torch.float32 and x.shape == (1, 3, 64, 96)
    assert geo == Geometry(input_hw=(48, 80), resized_hw=(48, 80), padded_hw=(64, 96))
    expected = (torch.tensor([123, 116, 103.0]) - torch.tensor(PIXEL_MEAN)) / torch.tensor(PIXEL_STD)
    torch.testing.assert_close(x[0, :, :48, :80].mean((1, 2)), expected)
    assert x[0, :, 48:, :].abs().max() == 0 and x[0, :, :, 80:].abs().max() == 0   # zero padding
    torch.testing.assert_close(denormalise(x)[0, :, 10, 10], torch.tensor([123, 116, 103.0]))


def test_channel_order_is_rgb():
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    img[..., 0] = 255
    x, _ = preprocess(img, short_side=32, max_long_side=32)
    torch.testing.assert_close(x[0, :, 0, 0], (torch.tensor([255.0, 0, 0]) - torch.tensor(PIXEL_MEAN))
                               / torch.tensor(PIXEL_STD))


def test_fixed_export_size_keeps_aspect():
    img = np.zeros((100, 300, 3), dtype=np.uint8)
    x, geo = preprocess(img, short_side=1, max_long_side=1, fixed_hw=(96, 160))
    assert x.shape == (1, 3, 96, 160)
    assert geo.resized_hw == (53, 160) and geo.padded_hw == (96, 160)
    with pytest.raises(ValueError, match="multiples of 32"):
        preprocess(img, short_side=1, max_long_side=1, fixed_hw=(100, 160))


def test_non_contiguous_and_readonly_inputs_equal_contiguous():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    views = [base[:, ::-1], base[::2, ::2], np.asfortranarray(base)]
    ro = base.copy()
    ro.flags.writeable = False
    for view in views + [ro]:
        x, geo = preprocess(view, short_side=32, max_long_side=64)
        y, _ = preprocess(np.ascontiguousarray(view), short_side=32, max_long_side=64)
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("bad, exc, match", [
    ([[1, 2, 3]], TypeError, "numpy array"),
    (np.zeros((4, 4, 3), np.float32), TypeError, "dtype uint8"),
    (np.zeros((4, 4, 3), np.uint16), TypeError, "dtype uint8"),
    (np.zeros((4, 4), np.uint8), ValueError, "3 dimensions"),
    (np.zeros((4, 4, 4), np.uint8), ValueError, "3 channels"),
    (np.zeros((3, 4, 4), np.uint8), ValueError, "3 channels"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
    (np.zeros((4, 0, 3), np.uint8), ValueError, "empty"),
])
def test_validation_errors_name_the_problem(bad, exc, match):
    with pytest.raises(exc, match=match):
        validate_image(bad)
    with pytest.raises(exc, match=match):
        preprocess(bad, short_side=32, max_long_side=32)


def test_masks_back_to_resized_and_labels_back_to_input():
    geo = Geometry(input_hw=(30, 50), resized_hw=(60, 100), padded_hw=(64, 128))
    masks = torch.zeros(2, 16, 32)
    masks[1] = 1.0
    out = masks_to_resized(masks, geo)
    assert out.shape == (2, 60, 100) and out[1].min() == 1.0
    assert masks_to_resized(torch.zeros(0, 16, 32), geo).shape == (0, 60, 100)
    labels = torch.arange(60 * 100, dtype=torch.int32).view(60, 100)
    back = labels_to_input(labels, geo)
    assert back.shape == (30, 50) and back.dtype == torch.int32
    assert back[0, 0] == 0 and back[1, 1] == labels[2, 2]


@pytest.mark.parametrize("input_hw, resized_hw, padded_hw", [
    ((480, 640), (128, 171), (128, 192)), ((128, 128), (128, 128), (128, 128)),
    ((1, 1), (128, 128), (128, 128)), ((2000, 100), (640, 32), (640, 32))])
def test_mask_upsampler_equals_interpolate_then_crop(input_hw, resized_hw, padded_hw):
    from zsp_ros.inference.resize import MaskUpsampler

    geometry = Geometry(input_hw=input_hw, resized_hw=resized_hw, padded_hw=padded_hw)
    logits = torch.randn(5, padded_hw[0] // 4, padded_hw[1] // 4, generator=torch.Generator().manual_seed(0)) * 5
    upsample = MaskUpsampler(tuple(logits.shape[-2:]), geometry)
    got, want = upsample(logits), masks_to_resized(logits, geometry)
    assert got.shape == want.shape == (5, *resized_hw)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert upsample(logits[:0]).shape == (0, *resized_hw)
    with pytest.raises(ValueError, match="planned for masks"):
        upsample(logits[:, :-1])
