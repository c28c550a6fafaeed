"""The iteration loop shared by the segmenter and oracle trainings (and usable with any model
whose forward returns the Mask2Former output dict).

One step: per-image generators from (seed, iteration, slot) -> batch (flip, pad, normalise) ->
forward -> criterion -> weighted total -> backward -> full-model clipping -> AdamW -> LR
schedule. Every ``log_period`` steps the losses (averaged over processes; ``step_s``, the wall
time of a step, averaged over the period) go to TensorBoard and ``metrics.jsonl`` (the tqdm
bar shows every step); every ``checkpoint_period`` steps a checkpoint is saved.

Mixed precision (``LoopSettings.amp``, see :func:`resolve_amp`): "bf16" or "fp16" autocast
around the network forward only, CUDA only. The outputs are cast to float32 before the
matcher and criterion, which run with autocast off: the Hungarian costs, the point sampling
(grid_sample of mask logits at uncertain points), the sigmoid focal / dice / cross-entropy
losses and their normalisers stay in fp32, as Mask2Former keeps its losses in fp32 (and its
MSDeformAttn function under ``custom_fwd(cast_inputs=float32)``; here the whole pixel decoder
disables autocast, zsp_ros/model/pixel_decoder.py). fp16 adds a GradScaler (dynamic loss
scaling); gradients are unscaled before the full-model clipping, so ``clip_grad_norm`` keeps
its meaning. bf16 needs no scaler (fp32's exponent range).
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

from zsp_ros.training import checkpoint, distributed
from zsp_ros.training.batching import Augment, StreamBatchSampler, collate_list, image_seed, prepare_batch
from zsp_ros.training.criterion import LOSS_NAMES, SetCriterion, weighted_total
from zsp_ros.training.optim import clip_full_model
from zsp_ros.training.point_sampling import image_generators

AMP_MODES = ("off", "bf16", "fp16")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_amp(value: Any, device: torch.device | str) -> str:
    """``train.amp`` -> "off", "bf16" or "fp16", checked against the device.

    Accepts False / None / "off" (fp32), "bf16", "fp16", and True = "fp16" (detectron2's
    ``SOLVER.AMP.ENABLED``: fp16 autocast + GradScaler). Mixed precision is CUDA only: on any
    other device a request is refused with a ValueError (not silently dropped), since CPU
    autocast is slower than fp32 for these models and a CPU run with amp on would not test
    what the config claims.
    """
    if value is None or value is False:
        mode = "off"
    elif value is True:
        mode = "fp16"
    elif isinstance(value, str) and value.lower() in AMP_MODES:
        mode = value.lower()
    else:
        raise ValueError(f"train.amp must be false, true (= fp16), 'off', 'bf16' or 'fp16'; "
                         f"got {value!r}")
    device = torch.device(device)
    if mode != "off" and device.type != "cuda":
        raise ValueError(f"train.amp {value!r} needs a CUDA device, but this process trains on "
                         f"{device}; set train.amp: false for CPU runs")
    return mode


def build_grad_scaler(amp: str, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A GradScaler for ``amp == "fp16"`` on ``device`` (None otherwise). Create it before
    resuming and pass it to `checkpoint.load_checkpoint` and `run_training`."""
    return torch.amp.GradScaler(torch.device(device).type) if amp == "fp16" else None


def outputs_to_float32(outputs: Any) -> Any:
    """The network's output dict (nested dicts / lists / tuples of tensors) with every
    floating-point tensor cast to float32 (autograd flows through the casts)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: outputs_to_float32(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(outputs_to_float32(v) for v in outputs)
    return outputs


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
    amp: str = "off"              # "off", "bf16", "fp16" (resolve_amp); CUDA only


def train_step(model: nn.Module, criterion: SetCriterion, images: torch.Tensor,
               targets: Sequence[dict], *, generators: Sequence[torch.Generator],
               optimizer: torch.optim.Optimizer, scheduler: Any,
               clip_grad_norm: float, amp: str = "off",
               scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One optimizer step; returns this process's losses (last layer), ``total``, ``grad_norm``
    (before clipping, of the unscaled gradients) and ``lr`` (of the first parameter group,
    before the scheduler step).

    ``amp`` "bf16" / "fp16" autocasts the forward on ``images.device`` (this function does not
    check the device; `run_training` does, via `resolve_amp`); the criterion always gets fp32.
    With ``scaler`` the loss is scaled for backward, the gradients unscaled before clipping,
    and the optimizer step is skipped when they hold inf/nan (the scale then backs off; the LR
    schedule still advances, as detectron2's AMP trainer).
    """
    if amp not in AMP_MODES:
        raise ValueError(f"train_step: amp must be one of {AMP_MODES}, got {amp!r}")
    with torch.autocast(device_type=images.device.type, dtype=AMP_DTYPES.get(amp),
                        enabled=amp != "off"):
        outputs = model(images)
    outputs = outputs_to_float32(outputs)
    with torch.autocast(device_type=images.device.type, enabled=False):
        losses = criterion(outputs, targets, generators=generators)     # fp32 matcher + losses
        total = weighted_total(losses, criterion.weight_dict)
    if not torch.isfinite(total):
        raise FloatingPointError(f"loss is {total.item()}: "
                                 + ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items()))
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
    else:
        total.backward()
    grad_norm = clip_full_model(model.parameters(), clip_grad_norm)
    lr = optimizer.param_groups[0]["lr"]
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    stats = {name: losses[name].item() for name in LOSS_NAMES}
    stats.update(total=total.item(), grad_norm=grad_norm, lr=lr)
    return stats


def run_training(*, model: nn.Module, criterion: SetCriterion, optimizer: torch.optim.Optimizer,
                 scheduler: Any, dataset: torch.utils.data.Dataset, info: distributed.DistInfo,
                 settings: LoopSettings, start_iter: int = 0, out_dir: str | Path | None = None,
                 scaler: torch.amp.GradScaler | None = None) -> list[dict[str, float]]:
    """Train from ``start_iter`` to ``settings.max_iters``.

    Args:
        model: the bare model, already on ``info.device`` (wrapped in DDP here when needed).
        dataset: items ``(image uint8 [3,H,W], target)`` as docs/CONTRACTS.md describes.
        out_dir: run folder for ``checkpoints/``, ``tensorboard/`` and ``metrics.jsonl``
            (rank 0 writes); None writes nothing (tests).
        scaler: the GradScaler of an fp16 run (restored by `checkpoint.load_checkpoint` on
            resume); None with ``settings.amp == "fp16"`` starts a fresh one. Saved in the
            checkpoints.

    Returns:
        One dict per iteration (losses averaged over processes, ``iteration``), on every rank.
    """
    amp = resolve_amp(settings.amp, info.device)
    if amp == "fp16" and scaler is None:
        scaler = build_grad_scaler(amp, info.device)
    elif amp != "fp16" and scaler is not None:
        raise ValueError(f"run_training: a GradScaler was passed but settings.amp is {amp!r}")
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
                               clip_grad_norm=settings.clip_grad_norm, amp=amp,
                               scaler=scaler)
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
                                           keep_last=settings.keep_last, scaler=scaler)
    finally:
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        if metrics_file is not None:
            metrics_file.close()
    return history
