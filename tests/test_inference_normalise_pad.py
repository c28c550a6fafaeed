"""The one normalise/pad of zsp_ros.inference.preprocess: what `preprocess`, training batches,
the validation cache and predict_panoptic all call."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zsp_ros.inference.preprocess import (
    PIXEL_MEAN,
    PIXEL_STD,
    denormalise,
    image_batch,
    normalise,
    pad_to,
    padded_size,
    preprocess,
)


def test_padded_size_rounds_up():
    assert padded_size(1, 32, 32) == (32, 32)
    assert padded_size(33, 64, 32) == (64, 64)
    assert padded_size(5, 7, 1) == (5, 7)


def test_normalise_matches_the_formula_and_inverts():
    x = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)
    y = normalise(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    assert torch.equal(y, (x.float() - mean) / std)
    assert torch.equal(normalise(x[0]), y[0])                       # [3,H,W] too
    torch.testing.assert_close(denormalise(y), x.float())
    assert normalise(x.double()).dtype == torch.float64


def test_pad_to_pads_bottom_right_and_never_crops():
    masks = torch.ones(2, 3, 4, dtype=torch.bool)
    out = pad_to(masks, (5, 6))
    assert out.dtype == torch.bool and out.shape == (2, 5, 6)
    assert out[:, :3, :4].all() and not out[:, 3:].any() and not out[:, :, 4:].any()
    assert pad_to(torch.zeros(3, 4, dtype=torch.long), (4, 4), value=255)[3].eq(255).all()
    with pytest.raises(ValueError, match="smaller"):
        pad_to(masks, (2, 6))


def test_image_batch_equals_per_image_preprocess_without_resize():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(20, 30), (40, 10)]]
    batch = image_batch(arrays, size_divisibility=32)
    assert batch.shape == (2, 3, 64, 32) and batch.dtype == torch.float32
    for i, a in enumerate(arrays):
        x, g = preprocess(a, short_side=min(a.shape[:2]), max_long_side=10**6)
        assert g.resized_hw == a.shape[:2]
        ph, pw = g.padded_hw
        assert torch.equal(batch[i, :, :ph, :pw], x[0])
        assert not batch[i, :, ph:].any() and not batch[i, :, :, pw:].any()
    assert image_batch(arrays, padded_hw=(64, 64)).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError):
        image_batch(arrays, padded_hw=(32, 32))
