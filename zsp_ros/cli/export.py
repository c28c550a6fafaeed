"""`zsp export onnx --kit KIT --size HxW --msda {plugin,portable} --out model.onnx`: the network to ONNX.

Exports ``forward_network`` of the kit's Mask2Former (no classifier: categories stay a runtime
matter) at one fixed input size, then checks the file: ONNX checker, full shape inference
(outputs ``mask_logits`` [1,Q,H/4,W/4] and ``query_embeds`` [1,Q,E]) and, for ``plugin``, one
``MultiscaleDeformableAttnPlugin_TRT`` node per deformable-attention call. Prints one summary line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zsp_ros.export.msda_plugin_export import PLUGIN_OP
from zsp_ros.export.onnx_export import export_onnx
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import KitError, load_kit
from zsp_ros.runtime.backends.onnx_contract import OUTPUT_NAMES, OnnxExportError, parse_size
from zsp_ros.runtime.backends.torch_backend import TorchBackend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=("onnx",), help="export format (onnx)")
    parser.add_argument("--kit", default=None, help="model kit directory (default: the embedded kit)")
    parser.add_argument("--size", required=True, help="fixed network input HxW in pixels, multiples of 32 (e.g. 480x640)")
    parser.add_argument("--msda", required=True, choices=("plugin", "portable"),
                        help="deformable attention as TensorRT's plugin node, or as standard ops (onnxruntime)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    parser.add_argument("--plugin-version", default="1", choices=("1", "2"),
                        help="MultiscaleDeformableAttnPlugin_TRT version: 1 (TensorRT >= 8.4.1, JetPack 6) or 2 "
                             "(IPluginV3, TensorRT >= 10.11); default 1")


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


def run(args: argparse.Namespace) -> int:

    try:
        height, width = parse_size(args.size)
        kit = load_kit(resolve_kit(args.kit))
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
