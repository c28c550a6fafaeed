"""`zsp engine build --onnx model.onnx --precision {fp32,fp16} [--workspace MB] [--timing-cache FILE] [--msda-fp32]`.

Builds (or reuses) a TensorRT engine for this machine's GPU and TensorRT version in an engine
cache folder (default: next to the ONNX file), with a JSON sidecar that the TensorRT backend
checks before running it (zsp_ros/export/engine_cache.py). Without TensorRT: one line and exit code 3.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zsp_ros.export.engine_cache import EngineCache
from zsp_ros.export.tensorrt_builder import EngineBuildError
from zsp_ros.runtime.backends.engine_artifact import StaleEngineError, TensorRTUnavailable, import_tensorrt
from zsp_ros.runtime.backends.onnx_contract import OnnxExportError, check_metadata


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("build",), help="build: make (or reuse) an engine from an ONNX export")
    parser.add_argument("--onnx", required=True, help="ONNX file from `zsp export onnx` (plugin variant for TensorRT)")
    parser.add_argument("--precision", required=True, choices=("fp32", "fp16"))
    parser.add_argument("--workspace", type=int, default=4096, metavar="MB", help="builder workspace in MiB (default 4096)")
    parser.add_argument("--timing-cache", default=None, metavar="FILE",
                        help="layer timing cache to read (if present) and update; speeds up rebuilds")
    parser.add_argument("--msda-fp32", action="store_true",
                        help="fp16 engine with deformable attention kept in fp32 (the plugin's fp16 kernel does its "
                             "location math in half)")
    parser.add_argument("--cache", default=None, metavar="DIR", help="engine folder (default: the ONNX file's folder)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cached engine is valid")


def run(args: argparse.Namespace) -> int:

    try:
        import_tensorrt()
    except TensorRTUnavailable as exc:
        print(f"zsp engine: {exc}", file=sys.stderr)
        return 3
    onnx_path = Path(args.onnx)
    try:
        meta = check_metadata(onnx_path)
        cache = EngineCache(args.cache or onnx_path.parent)
        result = cache.get_or_build(onnx_path, precision=args.precision, msda_fp32=args.msda_fp32,
                                    workspace_mb=args.workspace, timing_cache=args.timing_cache,
                                    device_index=args.device, force=args.force)
    except (OnnxExportError, EngineBuildError, StaleEngineError, ValueError) as exc:
        print(f"zsp engine: error: {exc}", file=sys.stderr)
        return 2
    key = result.sidecar["key"]
    build = result.sidecar.get("build", {})
    print(f"{result.status}: {result.engine_path} ({result.reason}); TensorRT {key.tensorrt_version}, {key.gpu_name} "
          f"(sm {key.compute_capability}), {key.precision}{' + msda fp32' if key.msda_fp32 else ''}, input "
          f"{meta.get('input_hw')}, msda {meta.get('msda')}, {build.get('plugin_layers', '?')} plugin layers, "
          f"built in {build.get('seconds', '?')} s")
    return 0
