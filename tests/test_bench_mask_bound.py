"""The stride bound: what survives Mask2Former's stride-4 masks, on hand-made id maps."""
from __future__ import annotations

import numpy as np

from experiments.mask_bound import through_stride


def test_a_cell_aligned_partition_survives_exactly():
    ids = np.zeros((16, 16), np.int64)
    ids[:, :8] = 5                      # two segments covering the image, split on a cell border
    ids[:, 8:] = 7
    assert (through_stride(ids, [5, 7], 4) == ids).all()


def test_a_small_object_vanishes_and_a_big_one_keeps_its_core_but_loses_corners():
    ids = np.zeros((16, 16), np.int64)
    ids[1, 1] = 3                       # 1 pixel: covers 1/16 of its cell, never reaches 0.5
    ids[4:12, 4:12] = 9                 # 8x8 square on void: bilinear rounds its corners
    out = through_stride(ids, [3, 9], 4)
    assert not (out == 3).any()
    assert (out[5:11, 5:11] == 9).all() and (out[:3] == 0).all()
    assert out[4, 4] == 0 and out[4, 8] == 9          # corner pixel lost, edge middle kept
    assert 0.85 < (out == 9).sum() / 64 < 1.0


def test_sizes_not_divisible_by_the_stride_and_no_segments():
    ids = np.ones((10, 13), np.int64)
    out = through_stride(ids, [1], 4)
    assert out.shape == (10, 13) and (out == 1).all()  # border-touching segments are not punished
    assert (through_stride(ids, [], 4) == 0).all()
