"""`zsp export onnx --kit KIT --msda {plugin,portable} --out model.onnx [--size HxW] [--camera-size HxW]`.

Exports ``forward_network`` of the kit's Mask2Former (no classifier: categories stay a runtime
matter) at one fixed input size, then checks the file: ONNX checker, full shape inference
(outputs ``mask_logits`` [1,Q,H/4,W/4] and ``query_embeds`` [1,Q,E]) and, for ``plugin``, one
``MultiscaleDeformableAttnPlugin_TRT`` node per deformable-attention call. Prints one summary line.

The size defaults to the kit's own network size for ``--camera-size`` frames (default 480x640):
the kit's resize rule, padded (the embedded kit: 128x192), where the export matches the torch
backend. Another ``--size`` that shows such frames to the network at another scale (or with more
padding) is exported with a warning saying how results will differ.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zsp_ros.export.msda_plugin_export import PLUGIN_OP
from zsp_ros.export.onnx_export import DEFAULT_CAMERA_HW, export_onnx, kit_network_size, resize_rule_changes
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import KitError, load_kit
from zsp_ros.runtime.backends.onnx_contract import OUTPUT_NAMES, OnnxExportError, parse_size
from zsp_ros.runtime.backends.torch_backend import TorchBackend
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=("onnx",), help="export format (onnx)")
    parser.add_argument("--kit", default=None, help="model kit directory (default: the embedded kit)")
    parser.add_argument("--size", default=None,
                        help="fixed network input HxW in pixels, multiples of 32 (default: the kit's resize rule for "
                             "--camera-size frames, e.g. 128x192 for the embedded kit and 480x640 frames)")
    parser.add_argument("--camera-size", default=f"{DEFAULT_CAMERA_HW[0]}x{DEFAULT_CAMERA_HW[1]}",
                        help="HxW of the frames the file will serve (default %(default)s): sets the default --size "
                             "and the resize-rule check")
    parser.add_argument("--msda", required=True, choices=("plugin", "portable"),
                        help="deformable attention as TensorRT's plugin node, or as standard ops (onnxruntime)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    parser.add_argument("--plugin-version", default="1", choices=("1", "2"),
                        help="MultiscaleDeformableAttnPlugin_TRT version: 1 (TensorRT >= 8.4.1, JetPack 6) or 2 "
                             "(IPluginV3, TensorRT >= 10.11); default 1")
    add_threads_argument(parser)


def check_exported(path: str | Path, *, variant: str, msda_modules: int) -> dict:
    """Checker, strict shape inference and the plugin-node count of an export; returns a summary dict.

    Raises:
        ValueError naming what is wrong.
    """
    import onnx


    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in inferred.graph.output}
    if list(shapes) != list(OUTPUT_NAMES) or any(0 in s or not s for s in shapes.values()):
        raise ValueError(f"{path}: outputs after shape inference are {shapes}, expected static {list(OUTPUT_NAMES)}")
    plugins = sum(node.op_type == PLUGIN_OP for node in model.graph.node)
    expected = msda_modules if variant == "plugin" else 0
    if plugins != expected:
        raise ValueError(f"{path}: {plugins} {PLUGIN_OP} nodes, expected {expected} (variant {variant})")
    return {"outputs": shapes, "plugin_nodes": plugins, "nodes": len(model.graph.node)}


def _camera_size(text: str) -> tuple[int, int]:
    """--camera-size HxW: positive integers (any size, not only multiples of 32)."""
    h, sep, w = text.lower().partition("x")
    try:
        hw = (int(h), int(w))
    except ValueError:
        hw = (0, 0)
    if not sep or min(hw) <= 0:
        raise ValueError(f"--camera-size {text!r}: expected HxW in pixels, e.g. 480x640")
    return hw


def run(args: argparse.Namespace) -> int:

    try:
        apply_threads(args.threads)
        camera_hw = _camera_size(args.camera_size)
        kit = load_kit(resolve_kit(args.kit))
        if args.size is None:
            height, width = kit_network_size(kit.input, camera_hw)
            print(f"network input {height}x{width}: the kit's resize rule for {camera_hw[0]}x{camera_hw[1]} frames")
        else:
            height, width = parse_size(args.size)
            for change in resize_rule_changes(kit.input, camera_hw, (height, width)):
                print(f"zsp export: warning: --size {height}x{width}: {change}; the kit's own size for them is "
                      f"{'x'.join(map(str, kit_network_size(kit.input, camera_hw)))} (the default)", file=sys.stderr)
        network = TorchBackend.from_kit(kit, device="cpu").network
        result = export_onnx(network, args.out, height=height, width=width, variant=args.msda,
                             kit_sha256=kit.sha256, opset=args.opset, plugin_version=args.plugin_version)
        summary = check_exported(result.path, variant=args.msda, msda_modules=result.msda_modules)
    except (KitError, OnnxExportError, ValueError) as exc:
        print(f"zsp export: error: {exc}", file=sys.stderr)
        return 2
    shapes = ", ".join(f"{k} {v}" for k, v in summary["outputs"].items())
    print(f"wrote {result.path} ({result.path.stat().st_size / 2**20:.1f} MiB, opset {args.opset}, msda {args.msda}, "
          f"{summary['plugin_nodes']} plugin nodes, {summary['nodes']} nodes): images [1,3,{height},{width}] -> {shapes}; "
          f"kit {kit.sha256[:12]}")
    return 0
