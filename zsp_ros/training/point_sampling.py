"""Point sampling of mask logits, as PointRend and Mask2Former use it for the mask losses.

Coordinates are normalised to the unit square, ``(x, y)`` with ``(0, 0)`` the top-left corner
of the top-left pixel and ``(1, 1)`` the bottom-right corner of the bottom-right pixel
(``grid_sample`` with ``align_corners=False``). Because of that, a prediction at H/4 and a target
at full resolution sampled at the same coordinates look at the same place in the image.

Randomness: every function that draws points takes an optional ``torch.Generator``. With one
generator per image (see :func:`image_generators`) the points an image gets depend only on that
generator's seed, not on which other images share the batch or the process — which is what
makes single-process and multi-process training give the same losses.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def point_sample(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``features`` at ``coords`` (zero outside the map).

    Args:
        features: float [N, C, H, W].
        coords: float [N, P, 2], (x, y) in [0, 1] (see the module docstring).

    Returns:
        float [N, C, P].
    """
    if features.dim() != 4 or coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(f"point_sample: features must be [N,C,H,W] and coords [N,P,2], got "
                         f"{tuple(features.shape)} and {tuple(coords.shape)}")
    if features.shape[0] != coords.shape[0]:
        raise ValueError(f"point_sample: features has {features.shape[0]} maps but coords has "
                         f"{coords.shape[0]} point sets")
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(features.dtype)       # [N, P, 1, 2] in [-1, 1]
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False).squeeze(3)               # [N, C, P]


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of a binary mask logit: ``-|logit|`` (highest where the logit is near 0)."""
    return -logits.abs()


def _rand(shape: tuple[int, ...], *, device: torch.device,
          generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def random_point_coords(num_sets: int, num_points: int, *, device: torch.device,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random coordinates, float32 [num_sets, num_points, 2] in [0, 1)."""
    return _rand((num_sets, num_points, 2), device=device, generator=generator)


def uncertain_point_coords(mask_logits: torch.Tensor, *, num_points: int,
                           oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance-sample points where the masks are least certain (PointRend / Mask2Former).

    ``int(num_points * oversample_ratio)`` uniform points are drawn per mask; the
    ``int(importance_sample_ratio * num_points)`` of them with the highest :func:`uncertainty`
    (computed on the *sampled* logits) are kept, and the rest of the ``num_points`` are new
    uniform points.

    Args:
        mask_logits: float [R, 1, h, w], one class-agnostic mask logit map per row.
        num_points: P, points per mask.
        oversample_ratio: >= 1.
        importance_sample_ratio: in [0, 1].
        generator: RNG for every draw; the global RNG when None.

    Returns:
        float32 [R, P, 2] coordinates (x, y) in [0, 1].
    """
    if mask_logits.dim() != 4 or mask_logits.shape[1] != 1:
        raise ValueError(f"uncertain_point_coords: mask_logits must be [R,1,h,w], got "
                         f"{tuple(mask_logits.shape)}")
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    num_sets, device = mask_logits.shape[0], mask_logits.device
    num_sampled = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain

    candidates = random_point_coords(num_sets, num_sampled, device=device, generator=generator)
    scores = uncertainty(point_sample(mask_logits, candidates))[:, 0]           # [R, S]
    top = scores.topk(num_uncertain, dim=1).indices                               # [R, U]
    chosen = candidates.gather(1, top.unsqueeze(-1).expand(-1, -1, 2))            # [R, U, 2]
    if num_random == 0:
        return chosen
    extra = random_point_coords(num_sets, num_random, device=device, generator=generator)
    return torch.cat([chosen, extra], dim=1)


def image_generators(seeds: Sequence[int], *, device: torch.device | str = "cpu"
                     ) -> list[torch.Generator]:
    """One freshly seeded ``torch.Generator`` per image (for point sampling)."""
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    return gens
