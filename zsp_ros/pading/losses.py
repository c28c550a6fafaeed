"""PADing's losses as pure functions (weights are applied by the training loop, not here).

- `mmd_loss`: maximum mean discrepancy between generated and real features with a sum of
  Gaussian kernels k(x, y) = exp(-||x - y||^2 / (2 b)) over bandwidths b (2, 5, 10, 20, 40, 80;
  b plays the role of sigma^2, as in the released GMMN loss); returns sqrt(MMD^2).
- `classwise_mmd_loss`: the mean of `mmd_loss` over the categories present in both sets.
- `softmax_kl`: PADing's `kl_loss`: KL(softmax(target / T) || softmax(prediction / T)) row-wise,
  summed and divided by the number of elements of ``prediction``.
- `alignment_loss`: semantic-visual structure alignment: `softmax_kl` between the
  cosine-similarity matrices of features and of semantic vectors, averaged over seen x seen,
  unseen x unseen and seen x unseen.
- `unrelated_kl_loss`: pushes the semantic-unrelated part towards N(0, I); as released, the
  `softmax_kl` between the features and a fresh N(0, I) sample of the same shape.
- `relation_loss`: cross-entropy of relation scores [N, C] against the true category.
- `reconstruction_loss`: L1.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

MMD_BANDWIDTHS: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)


def _kernel_sum(x: torch.Tensor, bandwidths: Sequence[float]) -> torch.Tensor:
    """sum_b exp(-||xi - xj||^2 / (2 b)) for all pairs of rows of x [N, E] -> [N, N]."""
    sq = x.pow(2).sum(1, keepdim=True)
    neg_half_dist = x @ x.t() - 0.5 * sq - 0.5 * sq.t()          # -||xi - xj||^2 / 2
    return sum(torch.exp(neg_half_dist / b) for b in bandwidths)


def _check_pair(fake: torch.Tensor, real: torch.Tensor) -> None:
    if fake.ndim != 2 or real.ndim != 2 or fake.shape[1] != real.shape[1]:
        raise ValueError(f"fake and real must be [M, E] and [N, E], got {tuple(fake.shape)} "
                         f"and {tuple(real.shape)}")
    if fake.shape[0] == 0 or real.shape[0] == 0:
        raise ValueError(f"MMD needs samples on both sides, got {fake.shape[0]} fake and "
                         f"{real.shape[0]} real")


def mmd_loss(fake: torch.Tensor, real: torch.Tensor, *,
             bandwidths: Sequence[float] = MMD_BANDWIDTHS) -> torch.Tensor:
    """sqrt(MMD^2) between fake [M, E] and real [N, E] with a multi-bandwidth Gaussian kernel.

    Returns a scalar >= 0 (0 for identical sets, up to rounding). Empty inputs are an error.
    """
    _check_pair(fake, real)
    m, n = fake.shape[0], real.shape[0]
    kernel = _kernel_sum(torch.cat([fake, real], dim=0), bandwidths)
    s = torch.cat([kernel.new_full((m,), 1.0 / m), kernel.new_full((n,), -1.0 / n)])
    return torch.sqrt((s @ kernel @ s).clamp(min=1e-12))


def classwise_mmd_loss(fake: torch.Tensor, fake_labels: torch.Tensor, real: torch.Tensor,
                       real_labels: torch.Tensor, *,
                       bandwidths: Sequence[float] = MMD_BANDWIDTHS) -> torch.Tensor:
    """Mean over the categories present on both sides of `mmd_loss` between that category's
    fakes and reals (fake [M, E] + labels [M] int, real [N, E] + labels [N] int).

    One kernel matrix over all samples; category c's MMD^2 is s_c^T K s_c with s_c = 1/m_c on
    its fakes, -1/n_c on its reals and 0 elsewhere.
    """
    _check_pair(fake, real)
    classes = torch.unique(torch.cat([fake_labels, real_labels]))
    onehot_fake = (fake_labels[None, :] == classes[:, None]).to(fake.dtype)   # [C, M]
    onehot_real = (real_labels[None, :] == classes[:, None]).to(fake.dtype)   # [C, N]
    m_c, n_c = onehot_fake.sum(1), onehot_real.sum(1)
    both = (m_c > 0) & (n_c > 0)
    if not bool(both.any()):
        raise ValueError("classwise_mmd_loss: no category has both fake and real samples")
    s = torch.cat([onehot_fake[both] / m_c[both, None], -onehot_real[both] / n_c[both, None]], dim=1)
    kernel = _kernel_sum(torch.cat([fake, real], dim=0), bandwidths)
    mmd2 = ((s @ kernel) * s).sum(1)                                          # [C']
    return torch.sqrt(mmd2.clamp(min=1e-12)).mean()


def softmax_kl(prediction: torch.Tensor, target: torch.Tensor, *,
               temperature: float = 0.1) -> torch.Tensor:
    """sum_rows KL(softmax(target/T) || softmax(prediction/T)) / prediction.numel() (scalar >= 0).

    prediction, target: [N, C] with the same shape; gradients flow into both.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    if prediction.numel() == 0:
        return prediction.new_zeros(())
    return F.kl_div(F.log_softmax(prediction / temperature, dim=1),
                    F.log_softmax(target / temperature, dim=1),
                    reduction="sum", log_target=True) / prediction.numel()


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of a [N, D] with every row of b [M, D] -> [N, M]."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()


def structure_kl(features_a: torch.Tensor, features_b: torch.Tensor, semantic_a: torch.Tensor,
                 semantic_b: torch.Tensor, *, temperature: float = 0.1) -> torch.Tensor:
    """`softmax_kl` of cos(features_a, features_b) [N, M] towards cos(semantic_a, semantic_b) [N, M]."""
    return softmax_kl(cosine_similarity_matrix(features_a, features_b),
                      cosine_similarity_matrix(semantic_a, semantic_b), temperature=temperature)


def alignment_loss(seen_features: torch.Tensor, seen_semantic: torch.Tensor,
                   unseen_features: torch.Tensor, unseen_semantic: torch.Tensor, *,
                   temperature: float = 0.1) -> torch.Tensor:
    """Semantic-visual structure alignment: mean of the seen x seen, unseen x unseen and
    seen x unseen `structure_kl` terms.

    seen_features [Ns, E] pairs row by row with seen_semantic [Ns, Dq]; likewise unseen
    [Nu, E] with [Nu, Dq]. With no unseen rows only the seen x seen term is used.
    """
    terms = [structure_kl(seen_features, seen_features, seen_semantic, seen_semantic,
                          temperature=temperature)]
    if unseen_features.shape[0] > 0:
        terms.append(structure_kl(unseen_features, unseen_features, unseen_semantic, unseen_semantic,
                                  temperature=temperature))
        terms.append(structure_kl(seen_features, unseen_features, seen_semantic, unseen_semantic,
                                  temperature=temperature))
    return torch.stack(terms).mean()


def unrelated_kl_loss(unrelated: torch.Tensor, *, temperature: float = 0.1,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """`softmax_kl` of the semantic-unrelated features [N, E] towards a fresh N(0, I) sample."""
    noise = torch.randn(unrelated.shape, generator=generator, device=unrelated.device,
                        dtype=unrelated.dtype)
    return softmax_kl(unrelated, noise, temperature=temperature)


def relation_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of relation scores [N, C] (as logits, as released) against labels [N] in [0, C)."""
    return F.cross_entropy(scores, labels)


def reconstruction_loss(reconstruction: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between the decoder's reconstruction and the features."""
    return F.l1_loss(reconstruction, features)
