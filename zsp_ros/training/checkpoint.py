"""Checkpoints: weights as safetensors, everything else to resume in a separate state file.

Layout inside a run's checkpoint folder:

    model_0000500.safetensors   model weights (state_dict of the unwrapped model)
    state_0000500.pt            iteration, optimizer, scheduler, GradScaler (fp16 runs; None
                                otherwise), RNG states of every rank
    last_checkpoint.json        {"iteration", "weights", "state"}: written last, so a crash
                                between files never points at a half checkpoint

Every file is written atomically (temporary file, fsync, rename). Only rank 0 writes; all
ranks call :func:`save_checkpoint` (it gathers their RNG states).
"""
from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from zsp_ros.training import distributed
from zsp_ros.utils.provenance import atomic_write_bytes, write_json

POINTER = "last_checkpoint.json"


def weights_bytes(model: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes of ``model``'s state_dict (DDP unwrapped; shared tensors copied)."""
    state = distributed.unwrap_model(model).state_dict()
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    return save_safetensors_bytes(tensors, metadata=metadata)


def save_weights(path: str | Path, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """Atomically write ``model``'s weights to ``path`` (safetensors)."""
    atomic_write_bytes(path, weights_bytes(model, metadata))


def load_weights(path: str | Path, model: nn.Module, *, strict: bool = True) -> None:
    """Load a safetensors file into ``model`` (DDP unwrapped); names must match when strict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    tensors = load_safetensors_bytes(path.read_bytes())
    target = distributed.unwrap_model(model)
    result = target.load_state_dict(tensors, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise KeyError(f"{path}: weights do not fit the model: missing {result.missing_keys[:8]}"
                       f" ({len(result.missing_keys)}), unexpected {result.unexpected_keys[:8]}"
                       f" ({len(result.unexpected_keys)})")


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) RNG states, as torch.load-safe values."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                       "cached_gaussian": float(np_state[4])},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, iteration: int, keep_last: int = 3,
                    extra: dict[str, Any] | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> Path | None:
    """Write a checkpoint after ``iteration`` completed steps; call on every rank.

    ``scaler``: the GradScaler of an fp16 run (its scale and growth tracker are saved; they
    are the same on every rank, as the inf checks are all-reduced by DDP's gradients).

    Returns the weights path on rank 0, None elsewhere. Older checkpoints beyond the newest
    ``keep_last`` are removed.
    """
    rng_states = distributed.all_gather_objects(rng_state())
    if distributed.rank() != 0:
        return None
    directory = Path(directory)
    weights = directory / f"model_{iteration:07d}.safetensors"
    state_path = directory / f"state_{iteration:07d}.pt"
    save_weights(weights, model, metadata={"iteration": str(iteration)})
    buffer = io.BytesIO()
    torch.save({"iteration": iteration, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_states,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "world_size": len(rng_states), "extra": extra or {}}, buffer)
    atomic_write_bytes(state_path, buffer.getvalue())
    write_json(directory / POINTER, {"iteration": iteration, "weights": weights.name,
                                     "state": state_path.name})
    _prune(directory, keep_last)
    return weights


def _prune(directory: Path, keep_last: int) -> None:
    if keep_last < 1:
        return
    iterations = sorted({int(p.stem.split("_")[1]) for p in directory.glob("model_*.safetensors")})
    for it in iterations[:-keep_last]:
        for name in (f"model_{it:07d}.safetensors", f"state_{it:07d}.pt"):
            (directory / name).unlink(missing_ok=True)


def latest_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The pointer of the newest complete checkpoint in ``directory``, or None."""
    pointer = Path(directory) / POINTER
    if not pointer.is_file():
        return None
    info = json.loads(pointer.read_text())
    for key in ("weights", "state"):
        if not (Path(directory) / info[key]).is_file():
            raise FileNotFoundError(f"{pointer} names {info[key]}, which is missing")
    return info


def load_checkpoint(directory: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, restore_rng: bool = True,
                    scaler: torch.amp.GradScaler | None = None) -> int:
    """Restore the newest checkpoint of ``directory``; returns the completed iteration count.

    ``scaler`` gets the saved GradScaler state when the checkpoint has one (a run that saved
    none - fp32 or bf16 - leaves it at its initial scale).

    RNG states are restored per rank when the world size is the one that saved them. The state
    file is read to the CPU; the optimizer moves its state to its parameters' devices.
    """
    info = latest_checkpoint(directory)
    if info is None:
        raise FileNotFoundError(f"no checkpoint to resume from in {directory} (no {POINTER})")
    directory = Path(directory)
    load_weights(directory / info["weights"], model)
    state = torch.load(directory / info["state"], map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if restore_rng and state["world_size"] == distributed.world_size():
        set_rng_state(state["rng"][distributed.rank()])
    return int(state["iteration"])
