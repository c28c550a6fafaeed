"""PADing losses on hand-checkable inputs (zsp_ros/pading/losses.py)."""
from __future__ import annotations

import math

import pytest
import torch

from zsp_ros.pading import losses as L


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    return q


def test_mmd_of_identical_sets_is_zero():
    x = torch.randn(20, 16, generator=torch.Generator().manual_seed(0))
    assert float(L.mmd_loss(x, x.clone())) < 1e-3


def test_mmd_of_two_points_matches_the_formula():
    # one fake at 0, one real at distance d: MMD^2 = sum_b 2 (1 - exp(-d^2 / (2 b)))
    d = 3.0
    fake, real = torch.zeros(1, 4), torch.tensor([[d, 0.0, 0.0, 0.0]])
    expected = math.sqrt(sum(2 * (1 - math.exp(-d * d / (2 * b))) for b in L.MMD_BANDWIDTHS))
    assert float(L.mmd_loss(fake, real)) == pytest.approx(expected, rel=1e-5)


def test_mmd_grows_with_the_shift_and_has_gradients():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(30, 8, generator=g)
    base = torch.randn(30, 8, generator=g)
    values = [float(L.mmd_loss(base + shift, real)) for shift in (0.0, 1.0, 3.0)]
    assert values[0] < values[1] < values[2]
    fake = (base + 1.0).requires_grad_(True)
    L.mmd_loss(fake, real).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


def test_mmd_rejects_empty_and_mismatched_inputs():
    with pytest.raises(ValueError, match="both sides"):
        L.mmd_loss(torch.zeros(0, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\[M, E\]"):
        L.mmd_loss(torch.zeros(2, 4), torch.zeros(3, 5))


def test_classwise_mmd_is_the_mean_of_per_category_mmd():
    g = torch.Generator().manual_seed(2)
    fake, real = torch.randn(30, 8, generator=g), torch.randn(40, 8, generator=g)
    yf, yr = torch.randint(0, 4, (30,), generator=g), torch.randint(0, 5, (40,), generator=g)
    shared = [c for c in range(5) if (yf == c).any() and (yr == c).any()]
    expected = torch.stack([L.mmd_loss(fake[yf == c], real[yr == c]) for c in shared]).mean()
    assert float(L.classwise_mmd_loss(fake, yf, real, yr)) == pytest.approx(float(expected), rel=1e-5)
    # identical per-category sets -> ~0, even though categories differ from each other
    assert float(L.classwise_mmd_loss(real, yr, real.clone(), yr)) < 1e-3
    with pytest.raises(ValueError, match="no category"):
        L.classwise_mmd_loss(fake, torch.zeros(30, dtype=torch.long), real, torch.ones(40, dtype=torch.long))


def test_softmax_kl_zero_for_equal_and_matches_hand_value():
    a = torch.tensor([[0.3, -0.2, 0.5]])
    assert float(L.softmax_kl(a, a.clone())) == pytest.approx(0.0, abs=1e-7)
    # T = 1, two logits: KL(q || p) / numel with p = softmax(pred), q = softmax(target)
    pred, target = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    q = torch.tensor([0.75, 0.25])
    expected = float((q * (q.log() - math.log(0.5))).sum()) / 2
    assert float(L.softmax_kl(pred, target, temperature=1.0)) == pytest.approx(expected, rel=1e-5)


def test_alignment_kl_is_zero_when_structures_match():
    g = torch.Generator().manual_seed(3)
    sem_seen, sem_unseen = torch.randn(6, 12, generator=g), torch.randn(4, 12, generator=g)
    rot = _orthogonal(12, 4)
    # features = rotated, rescaled semantics: every cosine similarity is unchanged
    feat_seen, feat_unseen = 3.0 * sem_seen @ rot, 0.5 * sem_unseen @ rot
    loss = L.alignment_loss(feat_seen, sem_seen, feat_unseen, sem_unseen, temperature=0.1)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    shuffled = feat_unseen[torch.tensor([1, 0, 3, 2])]
    assert float(L.alignment_loss(feat_seen, sem_seen, shuffled, sem_unseen)) > 1e-3


def test_alignment_without_unseen_uses_only_the_seen_term():
    g = torch.Generator().manual_seed(5)
    feat, sem = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    only_seen = L.alignment_loss(feat, sem, torch.zeros(0, 8), torch.zeros(0, 8))
    assert float(only_seen) == pytest.approx(float(L.structure_kl(feat, feat, sem, sem)), rel=1e-6)


def test_unrelated_kl_relation_and_reconstruction():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(8, 16, generator=g)
    value = L.unrelated_kl_loss(x, generator=torch.Generator().manual_seed(0))
    assert float(value) >= 0 and torch.isfinite(value)
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    right, wrong = torch.tensor([0, 1]), torch.tensor([1, 0])
    assert float(L.relation_loss(scores, right)) < float(L.relation_loss(scores, wrong))
    assert float(L.reconstruction_loss(x, x)) == 0.0
    assert float(L.reconstruction_loss(x + 1, x)) == pytest.approx(1.0)
