"""SetCriterion: values against hand computations, deep supervision, empty targets, overfitting."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers_training import TinySegmenter, toy_item

from zsp_ros.training.batching import prepare_batch
from zsp_ros.training.criterion import (
    SetCriterion,
    aux_weight_dict,
    build_criterion,
    dice_loss,
    sigmoid_ce_loss,
    weighted_total,
)
from zsp_ros.training.matcher import HungarianMatcher
from zsp_ros.training.optim import build_optimizer
from zsp_ros.training.point_sampling import image_generators


@pytest.fixture(autouse=True)
def _one_thread(_few_torch_threads):
    """Tiny tensors: one thread is faster than two on a shared 2-core machine."""
    torch.set_num_threads(1)

TRAIN_CFG = {"loss_weights": {"class": 2.0, "mask": 5.0, "dice": 5.0},
             "no_object_weight": 0.1, "num_points": 64, "oversample_ratio": 3.0,
             "importance_sample_ratio": 0.75}


def _criterion(num_classes: int = 3, num_aux: int = 1, num_points: int = 64) -> SetCriterion:
    return build_criterion({**TRAIN_CFG, "num_points": num_points}, num_classes=num_classes,
                           num_aux=num_aux)


def _outputs(batch: int, queries: int, classes: int, layers: int = 2, seed: int = 0,
             requires_grad: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    preds = [{"pred_logits": torch.randn(batch, queries, classes + 1, generator=g),
              "pred_masks": torch.randn(batch, queries, 8, 8, generator=g)}
             for _ in range(layers)]
    if requires_grad:
        for p in preds:
            for v in p.values():
                v.requires_grad_(True)
    out = dict(preds[-1])
    out["aux_outputs"] = preds[:-1]
    return out


def test_losses_are_finite_with_deep_supervision_keys():
    crit = _criterion(num_aux=2)
    targets = [toy_item(0)[1], toy_item(1)[1]]
    losses = crit(_outputs(2, 5, 3, layers=3), targets, generators=image_generators([1, 2]))
    assert set(losses) == {f"{n}{s}" for n in ("loss_ce", "loss_mask", "loss_dice")
                           for s in ("", "_0", "_1")}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    assert set(crit.weight_dict) == set(losses)
    total = weighted_total(losses, crit.weight_dict)
    expected = sum(2.0 * losses[k] if k.startswith("loss_ce") else 5.0 * losses[k] for k in losses)
    assert torch.isclose(total, expected)


def test_class_loss_is_weighted_ce_with_no_object_weight():
    crit = SetCriterion(num_classes=3, matcher=HungarianMatcher(num_points=16), eos_coef=0.1,
                        num_points=16)
    logits = torch.randn(1, 4, 4)
    indices = [(torch.tensor([1, 3]), torch.tensor([1, 0]))]
    targets = [{"labels": torch.tensor([2, 0]), "masks": torch.zeros(2, 8, 8, dtype=torch.bool)}]
    got = crit.loss_labels(logits, targets, indices)
    classes = [3, 0, 3, 2]                        # query 1 -> target 1 (label 0), 3 -> target 0
    weights = [0.1, 1.0, 0.1, 1.0]
    nll = [-F.log_softmax(logits[0, q], -1)[c] for q, c in enumerate(classes)]
    expected = sum(w * term for w, term in zip(weights, nll)) / sum(weights)
    assert torch.isclose(got, expected, atol=1e-6)


def test_mask_losses_match_the_definitions():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    bce = sum(F.binary_cross_entropy_with_logits(logits[i], labels[i]) for i in range(2)) / 4.0
    p = logits.sigmoid()
    dice = sum(1 - (2 * (p[i] * labels[i]).sum() + 1) / (p[i].sum() + labels[i].sum() + 1)
               for i in range(2)) / 4.0
    assert torch.isclose(sigmoid_ce_loss(logits, labels, 4.0), bce)
    assert torch.isclose(dice_loss(logits, labels, 4.0), dice)


def test_perfect_prediction_has_small_losses_and_importance_sampling_finds_edges():
    full = torch.zeros(2, 32, 32, dtype=torch.bool)          # edges on the coarse grid
    full[0, :16, :16] = True
    full[1, 16:, 8:24] = True
    target = {"labels": torch.tensor([2, 0]), "masks": full}
    n = 2
    masks = F.avg_pool2d(full[:, None].float(), 4)[:, 0]                        # [N, 8, 8]
    pred_masks = torch.full((1, 5, 8, 8), -30.0)
    pred_masks[0, :n] = torch.where(masks > 0.5, 30.0, -30.0)
    pred_logits = torch.full((1, 5, 4), -20.0)
    pred_logits[0, torch.arange(n), target["labels"]] = 20.0
    pred_logits[0, n:, 3] = 20.0
    outputs = {"pred_logits": pred_logits, "pred_masks": pred_masks}
    uniform = build_criterion({**TRAIN_CFG, "num_points": 400, "importance_sample_ratio": 0.0},
                              num_classes=3, num_aux=0)(outputs, [target],
                                                         generators=image_generators([0]))
    assert uniform["loss_ce"] < 1e-6
    assert uniform["loss_dice"] < 0.05 and uniform["loss_mask"] < 0.5
    # the only errors of this prediction are at the (coarse) mask edges, where the importance
    # sampler puts 75 % of its points: the losses must grow
    important = build_criterion({**TRAIN_CFG, "num_points": 400}, num_classes=3, num_aux=0)(
        outputs, [target], generators=image_generators([0]))
    assert important["loss_dice"] > 2 * uniform["loss_dice"]
    assert important["loss_mask"] > 2 * uniform["loss_mask"]


def test_normalisation_makes_losses_additive_over_images():
    """sum_b loss(b) * masks(b) == loss(batch) * masks(batch): what lets DDP match one process."""
    crit = _criterion(num_aux=0)
    out = _outputs(2, 5, 3, layers=1, seed=3)
    targets = [toy_item(4, objects=1)[1], toy_item(5, objects=3)[1]]
    both = crit(out, targets, generators=image_generators([7, 8]))
    singles = [crit({k: v[b:b + 1] for k, v in out.items() if k != "aux_outputs"}, [targets[b]],
                    generators=image_generators([7 + b])) for b in range(2)]
    for name in ("loss_mask", "loss_dice"):
        total = sum(s[name] * len(t["labels"]) for s, t in zip(singles, targets))
        assert torch.isclose(both[name] * 4, total, atol=1e-5)
    # class loss: weighted mean; weights 1 for the min(Q, N) matched queries, 0.1 for the rest
    weight = [1 + 0.1 * 4, 3 + 0.1 * 2]
    total = sum(s["loss_ce"] * w for s, w in zip(singles, weight))
    assert torch.isclose(both["loss_ce"] * sum(weight), total, atol=1e-5)


def test_empty_targets_give_no_mask_loss_but_a_graph():
    crit = _criterion(num_aux=1)
    out = _outputs(2, 4, 3, requires_grad=True)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32, dtype=torch.bool)}
    losses = crit(out, [empty, dict(empty)])
    assert losses["loss_mask"] == 0 and losses["loss_dice"] == 0
    weighted_total(losses, crit.weight_dict).backward()
    assert out["pred_masks"].grad is not None and out["pred_logits"].grad.abs().sum() > 0


def test_bad_labels_and_missing_weights_are_clear_errors():
    crit = _criterion()
    target = {"labels": torch.tensor([5]), "masks": torch.zeros(1, 8, 8, dtype=torch.bool)}
    with pytest.raises(ValueError, match="labels outside"):
        crit(_outputs(1, 3, 3), [target])
    with pytest.raises(KeyError, match="loss_dice_7"):
        weighted_total({"loss_dice_7": torch.tensor(1.0)}, aux_weight_dict(
            class_weight=2, mask_weight=5, dice_weight=5, num_aux=1))
    with pytest.raises(KeyError, match="num_points"):
        build_criterion({k: v for k, v in TRAIN_CFG.items() if k != "num_points"},
                        num_classes=3, num_aux=0)


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = TinySegmenter(num_classes=3, num_queries=6, dim=16)
    crit = _criterion(num_aux=1, num_points=64)
    items = [toy_item(i) for i in range(2)]
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.0, backbone_multiplier=1.0)
    totals = []
    for step in range(60):
        gens = image_generators([step * 10, step * 10 + 1])
        images, targets = prepare_batch(items, generators=gens)
        loss = weighted_total(crit(model(images), targets, generators=gens), crit.weight_dict)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert all(math.isfinite(t) for t in totals)
    assert sum(totals[-5:]) / 5 < 0.4 * sum(totals[:5]) / 5, totals
