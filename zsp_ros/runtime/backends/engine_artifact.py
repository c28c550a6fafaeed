"""A TensorRT engine on disk and its JSON sidecar, as the TensorRT backend checks them before running one.

An engine is only valid for the ONNX file, TensorRT version, GPU (name and compute capability)
and precision it was built with. The sidecar ``<engine>.json`` records those (the `EngineKey`),
the engine file's own sha256 and the ONNX metadata. :func:`check_engine` compares the sidecar with
what is in use; any difference is a `StaleEngineError` whose message lists every differing field.
Building and caching engines is zsp_ros.export's job (engine_cache.py, tensorrt_builder.py).

Sidecar (format "zsp-trt-engine", version 1)::

    {"format", "format_version", "key": {onnx_sha256, tensorrt_version, gpu_name,
     compute_capability, precision, msda_fp32}, "engine_sha256", "engine_bytes",
     "onnx_path", "onnx_metadata": {...}, "build": {...BuildReport}, "built_at"}
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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

    def differences(self, other: EngineKey) -> list[str]:
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


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.fp16.engine`` -> ``model.fp16.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


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


class TensorRTUnavailable(RuntimeError):
    """The ``tensorrt`` Python package cannot be imported here (one-line message)."""


def import_tensorrt() -> Any:
    """``import tensorrt`` or raise `TensorRTUnavailable` saying so in one line."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"TensorRT is not available here (import tensorrt: {exc}); build and run engines on a machine with "
            "TensorRT 10 (JetPack 6, or NVIDIA's tensorrt wheels), or use the torch / onnxruntime backend") from None
    return trt


def tensorrt_version(trt: Any) -> str:
    return str(getattr(trt, "__version__", "unknown"))
