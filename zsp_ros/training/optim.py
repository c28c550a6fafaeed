"""Optimizer, learning-rate schedule and gradient clipping as Mask2Former trains.

- AdamW; parameters of modules whose name contains ``backbone`` get ``lr * backbone_multiplier``;
  normalisation layers and embeddings get ``weight_decay_norm`` / ``weight_decay_embed``
  (both 0 in Mask2Former).
- Poly schedule ``(1 - it / max_iters) ** power`` after a linear warmup from
  ``warmup_factor`` to 1 over ``warmup_iters`` iterations (detectron2's WarmupPolyLR).
- Full-model gradient clipping: one L2 norm over every parameter's gradient.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
              nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm,
              nn.LocalResponseNorm)


def _is_norm(module: nn.Module) -> bool:
    # detectron2's FrozenBatchNorm2d has no parameters; any module named like a norm counts
    return isinstance(module, NORM_TYPES) or "Norm" in type(module).__name__


def param_groups(model: nn.Module, *, lr: float, weight_decay: float, backbone_multiplier: float,
                 weight_decay_norm: float = 0.0, weight_decay_embed: float = 0.0) -> list[dict]:
    """Trainable parameters grouped by (lr, weight decay), in module order, no duplicates."""
    groups: dict[tuple[float, float], dict] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            p_lr = lr * backbone_multiplier if "backbone" in module_name else lr
            p_wd = weight_decay
            if _is_norm(module):
                p_wd = weight_decay_norm
            elif isinstance(module, nn.Embedding):
                p_wd = weight_decay_embed
            group = groups.setdefault((p_lr, p_wd), {"params": [], "names": [], "lr": p_lr,
                                                     "weight_decay": p_wd})
            group["params"].append(param)
            group["names"].append(f"{module_name}.{name}" if module_name else name)
    if not groups:
        raise ValueError("param_groups: the model has no trainable parameters")
    return list(groups.values())


def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float,
                    backbone_multiplier: float, weight_decay_norm: float = 0.0,
                    weight_decay_embed: float = 0.0) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (each group keeps its ``names`` for inspection)."""
    groups = param_groups(model, lr=lr, weight_decay=weight_decay,
                          backbone_multiplier=backbone_multiplier,
                          weight_decay_norm=weight_decay_norm,
                          weight_decay_embed=weight_decay_embed)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


class WarmupPoly:
    """LR factor at iteration ``it``: linear warmup, then ``(1 - it/max_iters) ** power``."""

    def __init__(self, *, max_iters: int, power: float = 0.9, warmup_iters: int = 0,
                 warmup_factor: float = 1.0) -> None:
        if max_iters < 1:
            raise ValueError(f"WarmupPoly: max_iters must be >= 1, got {max_iters}")
        self.max_iters = int(max_iters)
        self.power = float(power)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, it: int) -> float:
        warm = 1.0
        if it < self.warmup_iters:
            alpha = it / self.warmup_iters
            warm = self.warmup_factor * (1 - alpha) + alpha
        return warm * max(0.0, 1.0 - it / self.max_iters) ** self.power


def build_scheduler(optimizer: torch.optim.Optimizer, *, max_iters: int, power: float,
                    warmup_iters: int, warmup_factor: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration LambdaLR with :class:`WarmupPoly` (step it once per optimizer step)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupPoly(max_iters=max_iters, power=power, warmup_iters=warmup_iters,
                              warmup_factor=warmup_factor))


def clip_full_model(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the global L2 norm of all gradients to ``max_norm`` (no-op if <= 0); returns the norm
    before clipping (nan if no gradients)."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return float("nan")
    if max_norm <= 0:
        return float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params])))
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
