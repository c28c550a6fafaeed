"""Start a segmenter training run from a model kit's weights (`zsp train segmenter --init-from KIT`).

A kit keeps the segmenter's network (fp16 by default) and a seen-category head fitted on the real
bank, but no optimizer state, so `--resume` cannot continue the run that made it once that run's
checkpoints are gone. This loads what the kit has into a freshly built Mask2Former:

- ``network.safetensors`` -> every weight but the class head (fp16 values widened to fp32);
- ``head.safetensors`` (weight [K+1,E], bias [K+1]; row K = no-object) -> the class head
  ``sem_seg_head.predictor.class_embed``, which has the same shape and row order when the
  kit's categories are the run's training categories (checked: same ids, same order).

The optimizer starts fresh (AdamW moments at zero) and the caller places the poly schedule at
``--start-iteration``, so "the kit's 20,500-iteration network continued to 29,500" is
``--init-from KIT --start-iteration 20500 --iters 29500``. What differs from a true resume: the
AdamW moments (rebuilt within a few hundred steps at beta2 = 0.999) and the fp16 rounding of the
stored weights (|diff| <= 2^-11 relative).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from zsp_ros.kit.checks import CLASS_HEAD_PREFIX
from zsp_ros.kit.model_kit import KitError, load_kit
from zsp_ros.training import distributed


def load_kit_weights(model: nn.Module, kit_dir: str | Path, *, categories: Sequence[Mapping[str, Any]],
                     model_config: Mapping[str, Any]) -> dict[str, Any]:
    """Copy ``kit_dir``'s network and head into ``model`` (in place); returns what was loaded.

    Args:
        model: a Mask2Former built from ``model_config`` with ``len(categories)`` classes.
        kit_dir: a model kit directory (validated by :func:`load_kit`: sizes, hashes, shapes).
        categories: the run's training categories, class index order ({"id", "name", ...}).
        model_config: the run's ``model:`` section; it must equal the kit's.

    Raises:
        SystemExit: the kit is missing or damaged (the kit check's one-line reason), or was built for
            another model or another category list.
    """
    try:
        kit = load_kit(kit_dir)
    except KitError as exc:
        raise SystemExit(f"--init-from: {exc}") from exc
    if dict(kit.model_config) != dict(model_config):
        raise SystemExit(f"--init-from {kit_dir}: the kit's model_config differs from the run's "
                         "`model:` section; train with the config the kit was built from")
    kit_ids = [c.id for c in kit.categories]
    run_ids = [int(c["id"]) for c in categories]
    if kit_ids != run_ids:
        raise SystemExit(f"--init-from {kit_dir}: the kit's categories (ids {kit_ids[:8]}..., "
                         f"{len(kit_ids)}) are not the run's training categories (ids {run_ids[:8]}..., "
                         f"{len(run_ids)}) in the same order")
    target = distributed.unwrap_model(model)
    network = kit.network_state_dict()                 # read from disk once (a kit reads it on demand)
    state = {k: v.float() for k, v in network.items()}
    state[CLASS_HEAD_PREFIX + "weight"] = kit.head_weight.float()
    state[CLASS_HEAD_PREFIX + "bias"] = kit.head_bias.float()
    result = target.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise SystemExit(f"--init-from {kit_dir}: weights do not fit the model: missing "
                         f"{result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}")
    return {"kit": str(kit_dir), "kit_sha256": kit.sha256, "tensors": len(state),
            "network_dtype": str(next(iter(network.values())).dtype)}


def place_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, start_iteration: int) -> None:
    """Put a fresh per-iteration LambdaLR at ``start_iteration`` (as a resume would have it)."""
    scheduler.last_epoch = int(start_iteration)
    for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs,
                                   scheduler.lr_lambdas):
        group["lr"] = base * factor(int(start_iteration))
