"""Multi-process training helpers: torchrun environment, process group, DDP, reductions.

One process per device. Started by ``torchrun --nproc_per_node N -m zsp_ros.training.train_segmenter``
or ``-m zsp_ros.training.train_pading`` (or ``torchrun --no-python zsp train ...``), a process reads RANK / WORLD_SIZE / LOCAL_RANK from the environment;
without them it is a single process and every helper here is a no-op. The backend is NCCL
when the process drives a CUDA device, gloo otherwise (CPU).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str = "auto", *, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; or the named one."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA device")
    return device


def init_distributed(device: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op alone).

    Args:
        device: ``auto``, ``cpu`` or ``cuda``; with ``cuda``/``auto`` each process takes
            ``cuda:LOCAL_RANK``.
        timeout_s: collective timeout.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        device = f"cuda:{local_rank}"
    dev = pick_device(device, local_rank=local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        from datetime import timedelta
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shutdown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when there are several processes."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") and isinstance(
        model, nn.parallel.DistributedDataParallel) else model


def reduce_mean(values: dict[str, float | torch.Tensor], device: torch.device) -> dict[str, float]:
    """Average a dict of scalars over processes (for logging); keys must agree across ranks."""
    if not values:
        return {}
    names = sorted(values)
    stacked = torch.stack([torch.as_tensor(values[k], dtype=torch.float64).detach().to(device)
                           .reshape(()) for k in names])
    if world_size() > 1:
        dist.all_reduce(stacked)
        stacked /= world_size()
    return dict(zip(names, stacked.tolist()))


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list alone)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` [N_r, ...] (N_r may differ between ranks), in rank order.

    No autograd: the results are detached. The trailing shape and dtype must agree across
    ranks. One collective for the row counts, one for the rows (padded to the largest count).
    """
    if world_size() == 1:
        return [tensor.detach()]
    count = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = tensor.detach().new_zeros((max(sizes), *tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor.detach()
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded.contiguous())
    return [chunk[:n] for chunk, n in zip(out, sizes)]


def average_gradients(parameters: list[nn.Parameter]) -> None:
    """Average ``.grad`` over processes in place (what DDP's reducer does, without its hooks).

    A parameter without a gradient counts as zeros; it keeps ``grad = None`` only when no rank
    has one, so an optimizer that skips gradient-less parameters (Adam, SGD) skips it on every
    rank alike. One all_reduce of one flat float32 buffer (gradients + has-gradient flags).
    No-op in a single process. Every rank must pass the same parameter list.
    """
    if world_size() == 1 or not parameters:
        return
    grads = [p.grad.detach().reshape(-1).float() if p.grad is not None
             else torch.zeros(p.numel(), device=p.device) for p in parameters]
    flags = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32,
                         device=parameters[0].device)
    flat = torch.cat(grads + [flags])
    dist.all_reduce(flat)
    flags = flat[-len(parameters):]
    offset = 0
    for p, had in zip(parameters, flags.tolist()):
        chunk = flat[offset:offset + p.numel()].view_as(p).div_(world_size())
        offset += p.numel()
        if had > 0:
            p.grad = chunk.to(p.dtype).clone()
        else:
            p.grad = None
