"""TensorRT engines on disk, each with a JSON sidecar that says exactly what it was built from and for.

An engine is only valid for the ONNX file, TensorRT version, GPU (name and compute capability)
and precision it was built with. The sidecar ``<engine>.json`` records those (the `EngineKey`),
the engine file's own sha256 and the ONNX metadata (kit, input size, variant). Before an engine
is deserialized, :func:`check_engine` compares the sidecar with what is in use; any difference
is a `StaleEngineError` whose message lists every differing field — a stale or foreign engine is
never run. `EngineCache` keeps one engine per (ONNX file name, precision, msda_fp32) in a folder
and rebuilds it when its key no longer matches, returning the reason.

Sidecar (format "zsp-trt-engine", version 1)::

    {"format", "format_version", "key": {onnx_sha256, tensorrt_version, gpu_name,
     compute_capability, precision, msda_fp32}, "engine_sha256", "engine_bytes",
     "onnx_path", "onnx_metadata": {...}, "build": {...BuildReport}, "built_at"}
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from zsp_ros.export.tensorrt_builder import build_engine
from zsp_ros.runtime.backends.engine_artifact import (
    ENGINE_SUFFIX,
    SIDECAR_FORMAT,
    SIDECAR_FORMAT_VERSION,
    EngineKey,
    StaleEngineError,
    check_engine,
    file_sha256,
    gpu_identity,
    import_tensorrt,
    sidecar_path,
    tensorrt_version,
)
from zsp_ros.runtime.backends.onnx_contract import read_metadata
from zsp_ros.utils.provenance import atomic_write_bytes


def _cuda_device(device_index: int) -> Any:
    """``torch.cuda.device(device_index)`` where CUDA is present, else a no-op context."""
    import contextlib

    import torch

    return torch.cuda.device(device_index) if torch.cuda.is_available() else contextlib.nullcontext()


def write_engine(engine_path: str | Path, data: bytes, *, key: EngineKey, onnx_path: str | Path,
                 onnx_metadata: dict[str, str], build: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the engine and then its sidecar (both atomically); return the sidecar."""

    engine_path = Path(engine_path)
    sidecar = {
        "format": SIDECAR_FORMAT, "format_version": SIDECAR_FORMAT_VERSION, "key": asdict(key),
        "engine_sha256": hashlib.sha256(data).hexdigest(), "engine_bytes": len(data),
        "onnx_path": str(onnx_path), "onnx_metadata": dict(onnx_metadata), "build": dict(build or {}),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_bytes(engine_path, data)
    atomic_write_bytes(sidecar_path(engine_path), (json.dumps(sidecar, indent=2) + "\n").encode())
    return sidecar


@dataclass(frozen=True)
class CacheResult:
    """Outcome of `EngineCache.get_or_build`: the engine, and "hit", "built" or "rebuilt" with the reason."""
    engine_path: Path
    status: str
    reason: str
    sidecar: dict[str, Any]


class EngineCache:
    """A folder of engines, one per (ONNX file name, precision, msda_fp32), kept valid for this machine.

    Args:
        root: the folder (created when needed).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def engine_path(self, onnx_path: str | Path, *, precision: str, msda_fp32: bool = False) -> Path:
        """``root/<onnx stem>.<precision>[-msdafp32].engine``."""
        tag = precision + ("-msdafp32" if msda_fp32 else "")
        return self.root / f"{Path(onnx_path).stem}.{tag}{ENGINE_SUFFIX}"

    def get_or_build(self, onnx_path: str | Path, *, precision: str, msda_fp32: bool = False,
                     workspace_mb: int = 4096, timing_cache: str | Path | None = None, device_index: int = 0,
                     rebuild: bool = True, force: bool = False,
                     builder: Callable[..., tuple[bytes, Any]] | None = None) -> CacheResult:
        """Return a valid engine for ``onnx_path`` on this GPU and TensorRT, building it when needed.

        Args:
            onnx_path: the exported ONNX file (its sha256 and metadata go into the key and sidecar).
            precision, msda_fp32, workspace_mb, timing_cache: build settings (zsp_ros/export/tensorrt_builder.py).
            device_index: the CUDA device the engine is for.
            rebuild: when the cached engine is stale, rebuild it (True) or raise StaleEngineError (False).
            force: rebuild even when the cached engine is valid.
            builder: the build function (default `build_engine`).

        Raises:
            TensorRTUnavailable, EngineBuildError, StaleEngineError (rebuild=False).
        """

        trt = import_tensorrt()
        onnx_path = Path(onnx_path)
        gpu_name, capability = gpu_identity(device_index)
        key = EngineKey(onnx_sha256=file_sha256(onnx_path), tensorrt_version=tensorrt_version(trt), gpu_name=gpu_name,
                        compute_capability=capability, precision=precision, msda_fp32=bool(msda_fp32))
        engine_path = self.engine_path(onnx_path, precision=precision, msda_fp32=msda_fp32)
        if not engine_path.exists():
            status, reason = "built", "no engine in the cache"
        elif force:
            status, reason = "rebuilt", "forced"
        else:
            try:
                sidecar = check_engine(engine_path, expected=key)
                return CacheResult(engine_path=engine_path, status="hit", reason="key matches", sidecar=sidecar)
            except StaleEngineError as exc:
                if not rebuild:
                    raise
                status, reason = "rebuilt", str(exc)
        with _cuda_device(device_index):                 # TensorRT builds for the current CUDA device
            data, report = (builder or build_engine)(onnx_path, precision=precision, workspace_mb=workspace_mb,
                                                     timing_cache=timing_cache, msda_fp32=msda_fp32)
        build = report.as_dict() if hasattr(report, "as_dict") else dict(report or {})
        sidecar = write_engine(engine_path, data, key=key, onnx_path=onnx_path, onnx_metadata=read_metadata(onnx_path),
                               build=build)
        sidecar["key"] = key
        return CacheResult(engine_path=engine_path, status=status, reason=reason, sidecar=sidecar)
