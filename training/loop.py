"""The iteration loop shared by the segmenter and oracle trainings (and usable with any model
whose forward returns the Mask2Former output dict).

One step: per-image generators from (seed, iteration, slot) -> batch (flip, pad, normalise) ->
forward -> criterion -> weighted total -> backward -> full-model clipping -> AdamW -> LR
schedule. Every ``log_period`` steps the losses (averaged over processes; ``step_s``, the wall
time of a step, averaged over the period) go to TensorBoard and ``metrics.jsonl`` (the tqdm
bar shows every step); every ``checkpoint_period`` steps a checkpoint is saved.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training import checkpoint, distributed
from training.batching import (Augment, StreamBatchSampler, collate_list, image_seed,
                               prepare_batch)
from training.criterion import LOSS_NAMES, SetCriterion, weighted_total
from training.optim import clip_full_model
from training.point_sampling import image_generators


@dataclass(frozen=True)
class LoopSettings:
    """How to iterate (not what to optimise). Iterations count optimizer steps."""

    max_iters: int
    global_batch: int
    seed: int
    clip_grad_norm: float = 0.01
    flip: bool = True
    size_divisibility: int = 32
    log_period: int = 20
    checkpoint_period: int = 500
    keep_last: int = 3
    num_workers: int = 0
    progress: bool = True
    augment: Augment | None = None


def train_step(model: nn.Module, criterion: SetCriterion, images: torch.Tensor,
               targets: Sequence[dict], *, generators: Sequence[torch.Generator],
               optimizer: torch.optim.Optimizer, scheduler: Any,
               clip_grad_norm: float) -> dict[str, float]:
    """One optimizer step; returns this process's losses (last layer), ``total``, ``grad_norm``
    and ``lr`` (of the first parameter group, before the scheduler step)."""
    outputs = model(images)
    losses = criterion(outputs, targets, generators=generators)
    total = weighted_total(losses, criterion.weight_dict)
    if not torch.isfinite(total):
        raise FloatingPointError(f"loss is {total.item()}: "
                                 + ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items()))
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = clip_full_model(model.parameters(), clip_grad_norm)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    stats = {name: losses[name].item() for name in LOSS_NAMES}
    stats.update(total=total.item(), grad_norm=grad_norm, lr=lr)
    return stats


def run_training(*, model: nn.Module, criterion: SetCriterion, optimizer: torch.optim.Optimizer,
                 scheduler: Any, dataset: torch.utils.data.Dataset, info: distributed.DistInfo,
                 settings: LoopSettings, start_iter: int = 0, out_dir: str | Path | None = None
                 ) -> list[dict[str, float]]:
    """Train from ``start_iter`` to ``settings.max_iters``.

    Args:
        model: the bare model, already on ``info.device`` (wrapped in DDP here when needed).
        dataset: items ``(image uint8 [3,H,W], target)`` as docs/CONTRACTS.md describes.
        out_dir: run folder for ``checkpoints/``, ``tensorboard/`` and ``metrics.jsonl``
            (rank 0 writes); None writes nothing (tests).

    Returns:
        One dict per iteration (losses averaged over processes, ``iteration``), on every rank.
    """
    sampler = StreamBatchSampler(dataset_size=len(dataset), global_batch=settings.global_batch,
                                 seed=settings.seed, rank=info.rank, world_size=info.world_size,
                                 start_iter=start_iter)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler,
                                         collate_fn=collate_list,
                                         num_workers=settings.num_workers,
                                         persistent_workers=settings.num_workers > 0)
    net = distributed.wrap_model(model, info)
    net.train()
    criterion = criterion.to(info.device)
    writer, metrics_file, ckpt_dir = None, None, None
    if out_dir is not None:
        ckpt_dir = Path(out_dir) / "checkpoints"
        if info.is_main:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"),
                                   purge_step=start_iter)
            metrics_file = open(Path(out_dir) / "metrics.jsonl", "a")
    progress = None
    if settings.progress and info.is_main:
        from tqdm import tqdm
        progress = tqdm(total=settings.max_iters, initial=start_iter, desc="train",
                        dynamic_ncols=True)
    history: list[dict[str, float]] = []
    slots = sampler.slots()
    batches = iter(loader)
    try:
        for it in range(start_iter, settings.max_iters):
            t0 = time.perf_counter()
            items = next(batches)
            gens = image_generators([image_seed(settings.seed, it, s) for s in slots])
            images, targets = prepare_batch(items, generators=gens,
                                            size_divisibility=settings.size_divisibility,
                                            flip=settings.flip, augment=settings.augment,
                                            device=info.device)
            stats = train_step(net, criterion, images, targets, generators=gens,
                               optimizer=optimizer, scheduler=scheduler,
                               clip_grad_norm=settings.clip_grad_norm)
            lr, grad_norm = stats.pop("lr"), stats.pop("grad_norm")
            stats = distributed.reduce_mean(stats, info.device)
            stats.update(lr=lr, grad_norm=grad_norm, iteration=it + 1,
                         step_s=time.perf_counter() - t0)
            history.append(stats)
            done = it + 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{stats['total']:.3f}", lr=f"{lr:.2e}")
            if done % settings.log_period == 0 or done == settings.max_iters:
                period = history[-min(len(history), settings.log_period):]
                stats = {**stats, "step_s": sum(h["step_s"] for h in period) / len(period)}
                if writer is not None:
                    for key, value in stats.items():
                        if key != "iteration" and math.isfinite(value):
                            writer.add_scalar(f"train/{key}", value, done)
                if metrics_file is not None:
                    metrics_file.write(json.dumps(stats) + "\n")
                    metrics_file.flush()
            if ckpt_dir is not None and (done % settings.checkpoint_period == 0
                                         or done == settings.max_iters):
                checkpoint.save_checkpoint(ckpt_dir, model=model, optimizer=optimizer,
                                           scheduler=scheduler, iteration=done,
                                           keep_last=settings.keep_last)
    finally:
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        if metrics_file is not None:
            metrics_file.close()
    return history
