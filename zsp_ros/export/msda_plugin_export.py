"""Export-only: every deformable-attention call becomes one TensorRT ``MultiscaleDeformableAttnPlugin_TRT`` node.

TensorRT (>= 8.4.1) ships this plugin in ``libnvinfer_plugin``; its ONNX parser maps a node whose
``op_type`` is the plugin name to the registered creator, reading the string attributes
``plugin_version`` and ``plugin_namespace``. The plugin's contract (NVIDIA/TensorRT
``plugin/multiscaleDeformableAttnPlugin``) is the core contract of ``zsp_ros.model.msda``, except
for the integer dtypes and the output layout:

    inputs   value               float [N, S, M, D]
             spatial_shapes      int32 [L, 2]          (H_l, W_l)
             level_start_index   int32 [L]
             sampling_locations  float [N, Lq, M, L, P, 2]   (x, y) in [0, 1]
             attention_weights   float [N, Lq, M, L, P]      softmaxed over L*P
    output   float [N, Lq, M, D]   (the model's core returns [N, Lq, M*D]: a Reshape follows)

The plugin has no fields, so the node carries only the two parser attributes. Float inputs and the
output share one type (fp32 or fp16, the plugin's ``supportsFormatCombination``).

:func:`plugin_msda_cores` swaps the plugin core into every ``MSDeformAttn`` of a model for the
duration of an export and puts the original cores back afterwards; the model files are not touched.
While tracing, the plugin function's forward computes the real values with the grid_sample
reference core, so the traced graph's shapes (and the values of everything downstream) are right.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from zsp_ros.model.msda import MSDeformAttn, ms_deform_attn_reference

PLUGIN_OP = "MultiscaleDeformableAttnPlugin_TRT"
PLUGIN_DOMAIN = "trt"                 # custom domain; TensorRT's parser matches the op_type, not the domain
PLUGIN_VERSION = "1"                  # v1: every TensorRT >= 8.4.1 (JetPack 6 = TRT 10.3); v2 (IPluginV3) from 10.11
PLUGIN_VERSIONS = ("1", "2")          # v2 has v1's inputs, output and (no) fields
PLUGIN_NAMESPACE = ""                 # libnvinfer_plugin registers its plugins in the empty namespace
PLUGIN_INPUTS = ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")


class MultiscaleDeformableAttnPluginFunction(torch.autograd.Function):
    """Deformable attention as one opaque op for the ONNX exporter (TorchScript-based, ``dynamo=False``).

    ``forward`` takes the plugin's inputs (int32 shapes) and returns float [N, Lq, M, D];
    ``symbolic`` emits the plugin node with a typed output so ONNX shape inference keeps the shape.
    ``plugin_version`` (a string, not a tensor) becomes the node's ``plugin_version`` attribute.
    """

    @staticmethod
    def forward(ctx, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,  # type: ignore[override]
                sampling_locations: Tensor, attention_weights: Tensor, plugin_version: str) -> Tensor:
        n, _, m, d = value.shape
        out = ms_deform_attn_reference(value, spatial_shapes.long(), level_start_index.long(), sampling_locations,
                                       attention_weights)                    # [N, Lq, M*D]
        return out.view(n, out.shape[1], m, d)

    @staticmethod
    def symbolic(g, value, spatial_shapes, level_start_index, sampling_locations, attention_weights,  # noqa: ANN001
                 plugin_version):
        out = g.op(f"{PLUGIN_DOMAIN}::{PLUGIN_OP}", value, spatial_shapes, level_start_index, sampling_locations,
                   attention_weights, plugin_version_s=str(plugin_version), plugin_namespace_s=PLUGIN_NAMESPACE)
        value_sizes = value.type().sizes()
        location_sizes = sampling_locations.type().sizes()
        if value_sizes is not None and location_sizes is not None:
            n, _, m, d = value_sizes
            out.setType(value.type().with_sizes([n, location_sizes[1], m, d]))
        else:
            out.setType(value.type())
        return out


def make_plugin_core(plugin_version: str = PLUGIN_VERSION):
    """A core with the ``zsp_ros.model.msda`` contract (returns [N, Lq, M*D]) that traces to the plugin node.

    ``spatial_shapes`` and ``level_start_index`` arrive as int64 constants and are cast to int32
    (folded into int32 constants by the exporter), as the plugin requires.
    """
    if plugin_version not in PLUGIN_VERSIONS:
        raise ValueError(f"plugin_version {plugin_version!r}: TensorRT ships {PLUGIN_OP} versions {PLUGIN_VERSIONS}")

    def msda_plugin_core(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                         sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
        out = MultiscaleDeformableAttnPluginFunction.apply(
            value, spatial_shapes.to(torch.int32), level_start_index.to(torch.int32), sampling_locations,
            attention_weights, plugin_version)
        return out.flatten(2)

    return msda_plugin_core


@contextlib.contextmanager
def plugin_msda_cores(model: nn.Module, *, plugin_version: str = PLUGIN_VERSION) -> Iterator[int]:
    """Within the block every ``MSDeformAttn`` of ``model`` emits the plugin node; yields their number.

    The previous core of each module is restored on exit, also after an error.
    """
    with swapped_msda_cores(model, make_plugin_core(plugin_version)) as count:
        yield count


@contextlib.contextmanager
def swapped_msda_cores(model: nn.Module, core) -> Iterator[int]:  # noqa: ANN001
    """Within the block every ``MSDeformAttn`` of ``model`` uses ``core``; yields their number; restores on exit."""
    modules = [m for m in model.modules() if isinstance(m, MSDeformAttn)]
    previous = [m.core for m in modules]
    try:
        for module in modules:
            module.core = core
        yield len(modules)
    finally:
        for module, old in zip(modules, previous):
            module.core = old


def name_plugin_nodes(model) -> int:  # noqa: ANN001  (onnx.ModelProto)
    """Give the plugin nodes and their int32 shape constants readable names; return the number of plugin nodes.

    Node ``i`` (graph order) becomes ``msda_plugin_{i}``; the tensors feeding its ``spatial_shapes``
    and ``level_start_index`` inputs become ``msda_plugin_{i}/spatial_shapes`` and
    ``.../level_start_index`` (renamed everywhere they are used, so the graph stays valid).
    """
    renames: dict[str, str] = {}
    count = 0
    for node in model.graph.node:
        if node.op_type != PLUGIN_OP:
            continue
        node.name = f"msda_plugin_{count}"
        for slot in (1, 2):
            old = node.input[slot]
            if old not in renames:
                renames[old] = f"msda_plugin_{count}/{PLUGIN_INPUTS[slot]}"
        count += 1
    if not renames:
        return count
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
        for i, name in enumerate(node.output):
            if name in renames:
                node.output[i] = renames[name]
    for tensor in model.graph.initializer:
        if tensor.name in renames:
            tensor.name = renames[tensor.name]
    for info in model.graph.value_info:
        if info.name in renames:
            info.name = renames[info.name]
    return count
