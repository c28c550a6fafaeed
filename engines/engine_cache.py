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

SIDECAR_FORMAT = "zsp-trt-engine"
SIDECAR_FORMAT_VERSION = 1
ENGINE_SUFFIX = ".engine"


class StaleEngineError(RuntimeError):
    """An engine does not belong to the ONNX file / TensorRT / GPU / precision in use, or its files are damaged."""


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on.

    Attributes:
        onnx_sha256: sha256 of the ONNX file's bytes.
        tensorrt_version: ``tensorrt.__version__`` of the builder (engines are not portable across versions).
        gpu_name: e.g. "NVIDIA H100 80GB HBM3" or "Orin".
        compute_capability: "major.minor", e.g. "9.0", "8.7" (Jetson Orin).
        precision: "fp32" or "fp16".
        msda_fp32: deformable-attention plugin pinned to fp32 inside an fp16 engine.
    """
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    msda_fp32: bool = False

    def differences(self, other: "EngineKey") -> list[str]:
        """Fields that differ, as "field: engine X, in use Y" (self = the engine's, other = what is in use)."""
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: engine {mine[k]!r}, in use {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gpu_identity(device_index: int = 0) -> tuple[str, str]:
    """(GPU name, "major.minor" compute capability) of a CUDA device, via torch."""
    import torch

    if not torch.cuda.is_available():
        raise StaleEngineError("no CUDA GPU is visible to torch here; TensorRT engines need one")
    major, minor = torch.cuda.get_device_capability(device_index)
    return torch.cuda.get_device_name(device_index), f"{major}.{minor}"


def _cuda_device(device_index: int) -> Any:
    """``torch.cuda.device(device_index)`` where CUDA is present, else a no-op context."""
    import contextlib

    import torch

    return torch.cuda.device(device_index) if torch.cuda.is_available() else contextlib.nullcontext()


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.fp16.engine`` -> ``model.fp16.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_engine(engine_path: str | Path, data: bytes, *, key: EngineKey, onnx_path: str | Path,
                 onnx_metadata: dict[str, str], build: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the engine and then its sidecar (both atomically); return the sidecar."""
    from zsp_ros.utils.provenance import atomic_write_bytes

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


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The sidecar of an engine, checked for format; StaleEngineError when missing or malformed."""
    path = sidecar_path(engine_path)
    try:
        sidecar = json.loads(path.read_text())
    except FileNotFoundError:
        raise StaleEngineError(f"engine {engine_path} has no sidecar {path.name}: what it was built from and for is "
                               "unknown, so it is not run; rebuild it with `zsp engine build`") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StaleEngineError(f"engine {engine_path}: sidecar {path.name} is unreadable ({exc})") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise StaleEngineError(f"engine {engine_path}: {path.name} is not a {SIDECAR_FORMAT} sidecar")
    if sidecar.get("format_version") != SIDECAR_FORMAT_VERSION:
        raise StaleEngineError(f"engine {engine_path}: sidecar format_version {sidecar.get('format_version')!r}, "
                               f"this code reads {SIDECAR_FORMAT_VERSION}; rebuild the engine")
    try:
        sidecar["key"] = EngineKey(**sidecar["key"])
    except (KeyError, TypeError) as exc:
        raise StaleEngineError(f"engine {engine_path}: sidecar key is malformed ({exc})") from None
    return sidecar


def check_engine(engine_path: str | Path, *, expected: EngineKey, kit_sha256: str | None = None) -> dict[str, Any]:
    """Refuse an engine unless its sidecar matches ``expected`` and its bytes are the ones recorded.

    Args:
        engine_path: the engine file.
        expected: the key of what is in use (ONNX sha256 may be "" when no ONNX file is at hand:
            then the ONNX field is not compared).
        kit_sha256: when given, the engine's ONNX must have been exported from this kit.

    Returns:
        The sidecar (``key`` as an `EngineKey`).

    Raises:
        StaleEngineError listing every reason.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise StaleEngineError(f"engine {engine_path} does not exist")
    sidecar = read_sidecar(engine_path)
    key: EngineKey = sidecar["key"]
    compare = expected if expected.onnx_sha256 else EngineKey(**{**asdict(expected), "onnx_sha256": key.onnx_sha256})
    reasons = key.differences(compare)
    if kit_sha256 is not None:
        built_for = str(sidecar.get("onnx_metadata", {}).get("kit_sha256", ""))
        if built_for != kit_sha256:
            reasons.append(f"kit: engine built from kit {built_for[:12] or '?'}…, in use {kit_sha256[:12]}…")
    digest = file_sha256(engine_path)
    if digest != sidecar.get("engine_sha256"):
        reasons.append(f"engine file: sha256 {digest[:12]}… differs from the sidecar's "
                       f"{str(sidecar.get('engine_sha256'))[:12]}… (damaged or replaced)")
    if reasons:
        raise StaleEngineError(f"engine {engine_path} is not valid here: " + "; ".join(reasons))
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
            precision, msda_fp32, workspace_mb, timing_cache: build settings (engines/tensorrt_builder.py).
            device_index: the CUDA device the engine is for.
            rebuild: when the cached engine is stale, rebuild it (True) or raise StaleEngineError (False).
            force: rebuild even when the cached engine is valid.
            builder: the build function (default `build_engine`).

        Raises:
            TensorRTUnavailable, EngineBuildError, StaleEngineError (rebuild=False).
        """
        from engines.onnx_export import read_metadata
        from engines.tensorrt_builder import build_engine, import_tensorrt, tensorrt_version

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
