"""Hungarian matching between predicted queries and ground-truth segments (Mask2Former).

Cost of assigning query q to target t, per image:

    cost_class * (-p_q[label_t]) + cost_mask * BCE(q, t) + cost_dice * dice(q, t)

where p_q is the softmax over the K+1 classes and both mask costs are measured on the same
``num_points`` uniform random points for the predictions and the targets (the masks may have
different resolutions: coordinates are normalised, see zsp_ros/training/point_sampling.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from zsp_ros.training.point_sampling import point_sample, random_point_coords


def pairwise_sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of every prediction against every target.

    Args:
        logits: float [Q, P] mask logits at P points.
        targets: float [N, P] in {0, 1} (or soft) at the same points.

    Returns:
        float [Q, N]: mean over the P points of BCE-with-logits.
    """
    num_points = logits.shape[1]
    pos = F.softplus(-logits)      # BCE against 1
    neg = F.softplus(logits)       # BCE against 0
    cost = torch.einsum("qp,np->qn", pos, targets) + torch.einsum("qp,np->qn", neg, 1 - targets)
    return cost / num_points


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss (with +1 smoothing) of every prediction against every target.

    Args:
        logits: float [Q, P]; targets: float [N, P].

    Returns:
        float [Q, N]: ``1 - (2 |p ∩ t| + 1) / (|p| + |t| + 1)`` with p = sigmoid(logits).
    """
    probs = logits.sigmoid()
    numerator = 2 * torch.einsum("qp,np->qn", probs, targets)
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets minimising the Mask2Former matching cost.

    Queries left unassigned are "no object". Matching is done image by image, so a batch gives
    the same result as calling the matcher on each image alone with the same generators.
    """

    def __init__(self, *, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544) -> None:
        """
        Args:
            cost_class: weight of the class cost (-probability of the target class).
            cost_mask: weight of the point-sampled sigmoid cross-entropy.
            cost_dice: weight of the point-sampled dice cost.
            num_points: random points per image shared by all predictions and targets.
        """
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: all cost weights are 0")
        if num_points < 1:
            raise ValueError(f"HungarianMatcher: num_points must be >= 1, got {num_points}")
        self.cost_class = float(cost_class)
        self.cost_mask = float(cost_mask)
        self.cost_dice = float(cost_dice)
        self.num_points = int(num_points)

    @torch.no_grad()
    def cost_matrix(self, class_logits: torch.Tensor, mask_logits: torch.Tensor,
                    labels: torch.Tensor, masks: torch.Tensor, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Matching cost of one image.

        Args:
            class_logits: float [Q, K+1].
            mask_logits: float [Q, h, w].
            labels: int64 [N] in [0, K).
            masks: bool or float [N, H, W].
            generator: RNG for the shared random points.

        Returns:
            float32 [Q, N] on the CPU.
        """
        num_queries = class_logits.shape[0]
        if labels.numel() == 0:
            return torch.zeros(num_queries, 0)
        probs = class_logits.float().softmax(-1)                                   # [Q, K+1]
        cost_class = -probs[:, labels]                                             # [Q, N]
        coords = random_point_coords(1, self.num_points, device=mask_logits.device,
                                     generator=generator)                          # [1, P, 2]
        pred = point_sample(mask_logits.float()[:, None],
                            coords.expand(num_queries, -1, -1))[:, 0]             # [Q, P]
        tgt = point_sample(masks.to(device=mask_logits.device, dtype=torch.float32)[:, None],
                           coords.expand(masks.shape[0], -1, -1))[:, 0]           # [N, P]
        cost = (self.cost_class * cost_class + self.cost_mask * pairwise_sigmoid_ce(pred, tgt)
                + self.cost_dice * pairwise_dice(pred, tgt))
        return cost.cpu()

    @torch.no_grad()
    def forward(self, outputs: dict, targets: Sequence[dict], *,
                generators: Sequence[torch.Generator] | None = None
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match each image's queries to its targets.

        Args:
            outputs: ``pred_logits`` float [B, Q, K+1] and ``pred_masks`` float [B, Q, h, w].
            targets: B dicts with ``labels`` int64 [N_b] and ``masks`` bool [N_b, H, W].
            generators: optional, one per image, for the random points.

        Returns:
            B pairs ``(query_index, target_index)``, int64 [min(Q, N_b)] each, the query indices
            sorted ascending.
        """
        class_logits, mask_logits = outputs["pred_logits"], outputs["pred_masks"]
        batch = class_logits.shape[0]
        if len(targets) != batch:
            raise ValueError(f"HungarianMatcher: {len(targets)} targets for a batch of {batch}")
        if generators is not None and len(generators) != batch:
            raise ValueError(f"HungarianMatcher: {len(generators)} generators for a batch of {batch}")
        indices = []
        for b, target in enumerate(targets):
            cost = self.cost_matrix(class_logits[b], mask_logits[b], target["labels"],
                                    target["masks"],
                                    generator=None if generators is None else generators[b])
            if cost.shape[1] == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            if not torch.isfinite(cost).all():
                raise ValueError(f"HungarianMatcher: non-finite matching cost in image {b} "
                                 "(NaN or inf in pred_logits / pred_masks?)")
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64),
                            torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    def extra_repr(self) -> str:
        return (f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
                f"cost_dice={self.cost_dice}, num_points={self.num_points}")
