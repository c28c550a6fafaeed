"""What every speed benchmark measures the same way: percentiles, a synthetic frame, synchronised timing,
device names, library versions and memory.
"""
from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from zsp_ros.utils.provenance import library_versions, machine_info


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean (3 decimals) and n of a list of timings."""
    a = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p90": round(float(np.percentile(a, 90)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "mean": round(float(a.mean()), 3), "n": int(a.size)}


def synthetic_frame(hw: tuple[int, int]) -> np.ndarray:
    """A camera-like uint8 RGB frame [H,W,3]: smooth random colour blobs (deterministic)."""
    g = torch.Generator().manual_seed(0)
    small = torch.randint(0, 256, (1, 3, max(1, hw[0] // 16), max(1, hw[1] // 16)), generator=g).float()
    big = torch.nn.functional.interpolate(small, size=hw, mode="bilinear", align_corners=False)
    return big[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    """The GPU's name for a CUDA device, else the CPU model."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return str(machine_info()["cpu"])


def versions() -> dict[str, str]:
    """Library versions, TensorRT's too where it imports."""
    found = library_versions()
    try:
        import tensorrt  # optional and heavy: only here
        found["tensorrt"] = str(tensorrt.__version__)
    except ImportError:
        pass
    return found


def memory(device: str) -> dict[str, Any]:
    """Process peak RSS (MB) and, on CUDA, torch's peak allocation (MB)."""
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0      # Linux: KiB
    out: dict[str, Any] = {"process_peak_rss_mb": round(peak_rss_mb, 1)}
    if device.startswith("cuda"):
        out["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, 1)
        out["note"] = "cuda_peak_allocated_mb counts torch allocations only (not TensorRT's own)"
    return out


def timed_ms(fn: Callable[[], Any], device: str) -> float:
    """Milliseconds of ``fn()``, CUDA synchronised before the clock stops."""
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - t0) * 1e3
