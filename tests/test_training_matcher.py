"""Hungarian matcher: known assignments, batched == per image, empty targets, cost terms."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from zsp_ros.training.matcher import HungarianMatcher, pairwise_dice, pairwise_sigmoid_ce
from zsp_ros.training.point_sampling import image_generators, point_sample, uncertain_point_coords


@pytest.fixture(autouse=True)
def _one_thread(_few_torch_threads):
    """Tiny tensors: one thread is faster than two on a shared 2-core machine."""
    torch.set_num_threads(1)


def _random_batch(batch: int, queries: int, classes: int, counts: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(batch, queries, classes + 1, generator=g),
               "pred_masks": torch.randn(batch, queries, 8, 8, generator=g) * 3}
    targets = [{"labels": torch.randint(0, classes, (n,), generator=g),
                "masks": torch.rand(n, 32, 32, generator=g) > 0.5} for n in counts]
    return outputs, targets


def test_recovers_a_planted_permutation():
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[0, :8, :8] = True
    masks[1, 8:, :] = True
    masks[2, :8, 8:] = True
    labels = torch.tensor([2, 0, 1])
    planted = [4, 0, 2]                                  # target t is query planted[t]
    logits = torch.full((1, 5, 4), -5.0)
    mask_logits = torch.full((1, 5, 4, 4), -8.0)
    for t, q in enumerate(planted):
        logits[0, q, labels[t]] = 5.0
        mask_logits[0, q] = torch.where(F.avg_pool2d(masks[t][None].float(), 4)[0] > 0.5, 8.0, -8.0)
    matcher = HungarianMatcher(num_points=256)
    (rows, cols), = matcher({"pred_logits": logits, "pred_masks": mask_logits},
                            [{"labels": labels, "masks": masks}])
    assert rows.tolist() == sorted(planted)
    assert {int(q): int(t) for q, t in zip(rows, cols)} == {q: t for t, q in enumerate(planted)}


def test_assignment_is_the_minimum_cost_one():
    outputs, targets = _random_batch(1, 5, 3, [3], seed=1)
    matcher = HungarianMatcher(num_points=64)
    cost = matcher.cost_matrix(outputs["pred_logits"][0], outputs["pred_masks"][0],
                               targets[0]["labels"], targets[0]["masks"],
                               generator=torch.Generator().manual_seed(7))
    (rows, cols), = matcher(outputs, targets, generators=image_generators([7]))
    got = cost[rows, cols].sum()
    best = min(sum(cost[q, t] for t, q in enumerate(perm))
               for perm in itertools.permutations(range(5), 3))
    assert torch.isclose(got, torch.as_tensor(best))


def test_batched_equals_per_image():
    outputs, targets = _random_batch(3, 6, 4, [2, 0, 5], seed=2)
    matcher = HungarianMatcher(num_points=50)
    batched = matcher(outputs, targets, generators=image_generators([10, 11, 12]))
    for b in range(3):
        single = matcher({k: v[b:b + 1] for k, v in outputs.items()}, [targets[b]],
                         generators=image_generators([10 + b]))[0]
        assert torch.equal(batched[b][0], single[0]) and torch.equal(batched[b][1], single[1])
    # with the global RNG too: same seed, same order of draws
    torch.manual_seed(3)
    batched = matcher(outputs, targets)
    torch.manual_seed(3)
    per_image = [matcher({k: v[b:b + 1] for k, v in outputs.items()}, [targets[b]])[0]
                 for b in range(3)]
    for (r1, c1), (r2, c2) in zip(batched, per_image):
        assert torch.equal(r1, r2) and torch.equal(c1, c2)


def test_empty_targets_and_more_targets_than_queries():
    outputs, targets = _random_batch(2, 3, 4, [0, 5], seed=4)
    (r0, c0), (r1, c1) = HungarianMatcher(num_points=20)(outputs, targets)
    assert r0.numel() == 0 and c0.numel() == 0 and r0.dtype == torch.int64
    assert len(r1) == len(c1) == 3 and len(set(c1.tolist())) == 3


def test_pairwise_costs_match_their_definitions():
    g = torch.Generator().manual_seed(5)
    logits, targets = torch.randn(4, 30, generator=g), (torch.rand(3, 30, generator=g) > 0.5).float()
    ce = pairwise_sigmoid_ce(logits, targets)
    dice = pairwise_dice(logits, targets)
    for q in range(4):
        for t in range(3):
            ref_ce = F.binary_cross_entropy_with_logits(logits[q], targets[t])
            p = logits[q].sigmoid()
            ref_dice = 1 - (2 * (p * targets[t]).sum() + 1) / (p.sum() + targets[t].sum() + 1)
            assert torch.isclose(ce[q, t], ref_ce, atol=1e-6)
            assert torch.isclose(dice[q, t], ref_dice, atol=1e-6)


def test_cost_weights_and_same_points_for_preds_and_targets():
    """A prediction equal to its target (same resolution) has the lowest dice cost of all."""
    g = torch.Generator().manual_seed(6)
    coarse = torch.rand(4, 1, 4, 4, generator=g) > 0.5     # blocky: few boundary points
    masks = F.interpolate(coarse.float(), scale_factor=8, mode="nearest")[:, 0] > 0.5
    mask_logits = torch.where(masks, 20.0, -20.0)            # query q == target q, exactly
    class_logits = torch.zeros(4, 3)
    dice_only = HungarianMatcher(cost_class=0, cost_mask=0, cost_dice=1, num_points=200)
    cost = dice_only.cost_matrix(class_logits, mask_logits, torch.zeros(4, dtype=torch.long),
                                 masks, generator=g)
    assert torch.equal(cost.argmin(0), torch.arange(4))
    assert cost.diagonal().max() < 0.05


def test_non_finite_cost_is_a_clear_error():
    outputs, targets = _random_batch(1, 3, 2, [2])
    outputs["pred_masks"][0, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        HungarianMatcher(num_points=10)(outputs, targets)


def test_uncertain_points_concentrate_on_the_boundary():
    x = (torch.arange(32) + 0.5) / 32
    logits = (20 * (x - 0.5)).expand(1, 1, 32, 32)          # boundary (logit 0) at x = 0.5
    coords = uncertain_point_coords(logits, num_points=400, oversample_ratio=3.0,
                                    importance_sample_ratio=0.75,
                                    generator=torch.Generator().manual_seed(0))
    assert coords.shape == (1, 400, 2)
    # the importance part (first 300) is the most uncertain quarter of 1200 uniform draws:
    # |x - 0.5| below about 0.125; the remaining 100 are uniform
    assert ((coords[0, :300, 0] - 0.5).abs() < 0.15).float().mean() > 0.95
    assert ((coords[0, 300:, 0] - 0.5).abs() > 0.25).float().mean() > 0.3
    values = point_sample(logits, coords)
    assert values.shape == (1, 1, 400)
