"""Inference backends by name: a plain dict of factories ``(kit, **options) -> Backend``.

Each factory imports its heavy package only when called. To add a backend, write a module with
a `Backend` subclass and put one entry in `BACKENDS`.
"""
from __future__ import annotations

from typing import Any, Callable

from zsp_ros.runtime.backends.base import Backend
from zsp_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from zsp_ros.runtime.backends.tensorrt_backend import TensorRTBackend
from zsp_ros.runtime.backends.torch_backend import TorchBackend


def _torch_backend(kit: Any, **options: Any) -> Backend:
    return TorchBackend.from_kit(kit, **options)


def _onnxruntime_backend(kit: Any, **options: Any) -> Backend:
    return OnnxRuntimeBackend.from_kit(kit, **options)


def _tensorrt_backend(kit: Any, **options: Any) -> Backend:
    return TensorRTBackend.from_kit(kit, **options)


BACKENDS: dict[str, Callable[..., Backend]] = {
    "torch": _torch_backend,
    "onnxruntime": _onnxruntime_backend,
    "tensorrt": _tensorrt_backend,
}


def build_backend(name: str, kit: Any, **options: Any) -> Backend:
    """Create backend ``name`` for a loaded kit (options: device, precision, ... per backend)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return BACKENDS[name](kit, **options)


__all__ = ["BACKENDS", "Backend", "build_backend"]
