"""Data stream sharding/resume and batch preparation (padding, normalisation, flips)."""
from __future__ import annotations

import itertools

import pytest
import torch

from zsp_ros.inference.preprocess import PIXEL_MEAN, PIXEL_STD
from zsp_ros.training.batching import StreamBatchSampler, image_seed, prepare_batch
from zsp_ros.training.point_sampling import image_generators


def _take(sampler: StreamBatchSampler, n: int) -> list[list[int]]:
    return list(itertools.islice(iter(sampler), n))


def test_ranks_split_the_single_process_batches_and_resume_continues():
    single = _take(StreamBatchSampler(dataset_size=10, global_batch=4, seed=1), 6)
    ranks = [_take(StreamBatchSampler(dataset_size=10, global_batch=4, seed=1, rank=r,
                                      world_size=2), 6) for r in range(2)]
    assert [a + b for a, b in zip(*ranks)] == single
    stream = [i for batch in single for i in batch]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]                                # a new order each epoch
    resumed = _take(StreamBatchSampler(dataset_size=10, global_batch=4, seed=1, start_iter=3), 3)
    assert resumed == single[3:]
    assert image_seed(1, 3, 0) != image_seed(1, 3, 1) != image_seed(1, 4, 1)
    with pytest.raises(ValueError, match="not divisible"):
        StreamBatchSampler(dataset_size=10, global_batch=3, seed=0, world_size=2)


def test_prepare_batch_pads_normalises_and_flips_deterministically():
    image = torch.zeros(3, 30, 20, dtype=torch.uint8)
    image[:, :, :5] = 255
    masks = torch.zeros(2, 30, 20, dtype=torch.bool)
    masks[0, :, :5] = True
    masks[1, :10] = True
    target = {"labels": torch.tensor([0, 1]), "masks": masks}
    images, targets = prepare_batch([(image, target)], generators=image_generators([0]))
    assert images.shape == (1, 3, 32, 32) and targets[0]["masks"].shape == (2, 32, 32)
    mean, std = torch.tensor(PIXEL_MEAN), torch.tensor(PIXEL_STD)
    assert torch.allclose(images[0, :, 0, 0], (255 - mean) / std)
    assert torch.allclose(images[0, :, 0, 10], -mean / std)
    assert images[0, :, 30:].abs().sum() == 0 and images[0, :, :, 20:].abs().sum() == 0
    assert not targets[0]["masks"][:, 30:].any() and not targets[0]["masks"][:, :, 20:].any()
    assert torch.equal(targets[0]["masks"][:, :30, :20], masks)

    flips = []
    for seed in range(8):
        imgs, tgts = prepare_batch([(image, target)], generators=image_generators([seed]),
                                   flip=True)
        again, _ = prepare_batch([(image, target)], generators=image_generators([seed]), flip=True)
        assert torch.equal(imgs, again)
        flipped = bool(tgts[0]["masks"][0, 0, 19])
        assert flipped == bool(imgs[0, 0, 0, 19] > 0) and flipped != bool(tgts[0]["masks"][0, 0, 0])
        flips.append(flipped)
    assert any(flips) and not all(flips)


def test_augment_runs_per_image_and_empty_masks_are_dropped():
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[1, 4:, 4:] = True
    target = {"labels": torch.tensor([3, 4]), "masks": masks,
              "category_ids": torch.tensor([30, 40])}

    def crop_away_first(img, tgt, generator):
        return img, {**tgt, "masks": torch.cat([torch.zeros_like(tgt["masks"][:1]),
                                                tgt["masks"][1:]])}

    _, targets = prepare_batch([(image, target)], generators=image_generators([0]),
                               augment=crop_away_first, size_divisibility=8)
    assert targets[0]["labels"].tolist() == [4] and targets[0]["masks"].shape == (1, 8, 8)
    with pytest.raises(ValueError, match="do not match image"):
        prepare_batch([(image, {**target, "masks": masks[:, :4]})],
                      generators=image_generators([0]))
