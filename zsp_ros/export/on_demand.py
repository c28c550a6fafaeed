"""Backends whose file does not exist yet: export the ONNX / build the engine first, then build the backend.

The runtime's backends only run finished artifacts (zsp_ros.runtime.backends). The CLI, the node and
the benchmarks accept more, and this module turns it into artifacts before calling
`zsp_ros.runtime.backends.build_backend` with the same options:

- onnxruntime with ``size='HxW'`` and no ``onnx``: a ``portable`` export of the kit at that size in a
  temporary folder that the backend removes on ``close``;
- tensorrt with no ``engine``: ``onnx`` (or, with ``size``, a ``plugin`` export cached next to the
  engines) is built into an engine, or a matching cached engine is reused (`EngineCache`; a stale one
  is rebuilt when ``rebuild``, the reason logged).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from zsp_ros.export.engine_cache import EngineCache
from zsp_ros.export.onnx_export import export_onnx
from zsp_ros.runtime.backends import Backend, build_backend
from zsp_ros.runtime.backends.engine_artifact import import_tensorrt
from zsp_ros.runtime.backends.onnx_contract import OnnxExportError, check_metadata, parse_size
from zsp_ros.runtime.backends.torch_backend import TorchBackend, resolve_device

LOG = logging.getLogger(__name__)


def build_backend_with_artifacts(name: str, kit: Any, **options: Any) -> Backend:
    """`build_backend(name, kit, **options)`, exporting / building the backend's file first when needed.

    Extra options: onnxruntime ``size``; tensorrt ``size``, ``cache_dir`` (default `default_cache_dir()`),
    ``msda_fp32``, ``workspace_mb``, ``timing_cache``, ``rebuild`` (see zsp_ros.export.engine_cache).
    """
    if name == "onnxruntime":
        size = options.pop("size", None)
        if options.get("onnx") is None and size is not None:
            return _exported_onnxruntime(kit, size, options)
    elif name == "tensorrt":
        build = {key: options.pop(key) for key in ("size", "cache_dir", "msda_fp32", "workspace_mb", "timing_cache",
                                                   "rebuild") if key in options}
        if options.get("engine") is None:
            options["engine"], options["onnx"] = _built_engine(kit, options, **build)
    return build_backend(name, kit, **options)


def _exported_onnxruntime(kit: Any, size: str | tuple[int, int], options: dict[str, Any]) -> Backend:
    h, w = parse_size(size) if isinstance(size, str) else (int(size[0]), int(size[1]))
    network = TorchBackend.from_kit(kit, device="cpu").network
    folder = Path(tempfile.mkdtemp(prefix="zsp_onnx_"))
    try:
        result = export_onnx(network, folder / "network.onnx", height=h, width=w, variant="portable",
                             kit_sha256=kit.sha256)
        del network
        return build_backend("onnxruntime", kit, **{**options, "onnx": result.path, "cleanup_dir": folder})
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _built_engine(kit: Any, options: dict[str, Any], *, size: str | tuple[int, int] | None = None,
                  cache_dir: str | Path | None = None, msda_fp32: bool = False, workspace_mb: int = 4096,
                  timing_cache: str | Path | None = None, rebuild: bool = True) -> tuple[Path, Path]:
    """(engine, onnx) for the tensorrt backend: built from ``onnx`` or a ``size`` export, or reused from the cache."""
    import_tensorrt()                                   # fail in one line before exporting anything
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    onnx = options.get("onnx")
    if onnx is None:
        if size is None:
            raise ValueError("the tensorrt backend needs backend option engine=PATH, onnx=PATH or size='HxW'")
        onnx = _export_plugin_onnx(kit, size, cache)
    check_metadata(onnx, kit_sha256=kit.sha256)
    dev = resolve_device(options.get("device", "cuda"))
    result = EngineCache(cache).get_or_build(onnx, precision=options.get("precision", "fp16"), msda_fp32=msda_fp32,
                                             workspace_mb=workspace_mb, timing_cache=timing_cache,
                                             device_index=dev.index or 0, rebuild=rebuild)
    if result.status != "hit":
        LOG.warning("TensorRT engine %s %s: %s", result.engine_path, result.status, result.reason)
    return Path(result.engine_path), Path(onnx)


DEFAULT_CACHE = "~/.cache/zsp_ros/engines"


def default_cache_dir() -> Path:
    """``$ZSP_ENGINE_CACHE`` or ~/.cache/zsp_ros/engines."""
    return Path(os.environ.get("ZSP_ENGINE_CACHE", DEFAULT_CACHE)).expanduser()


def _export_plugin_onnx(kit: Any, size: str | tuple[int, int], cache: Path) -> Path:
    """The kit's plugin-variant ONNX at ``size`` in ``cache`` (exported once, reused while it matches)."""

    h, w = parse_size(size) if isinstance(size, str) else (int(size[0]), int(size[1]))
    path = cache / f"kit-{kit.sha256[:12]}-{h}x{w}-plugin.onnx"
    if path.is_file():
        try:
            check_metadata(path, kit_sha256=kit.sha256, variant="plugin", input_hw=(h, w))
            return path
        except OnnxExportError as exc:
            LOG.warning("re-exporting %s: %s", path, exc)
    network = TorchBackend.from_kit(kit, device="cpu").network
    return export_onnx(network, path, height=h, width=w, variant="plugin", kit_sha256=kit.sha256).path
