"""Export the network part of Mask2Former (``forward_network``) to ONNX, one fixed input size per file.

Graph contract (what backends and TensorRT rely on):

    input   images        float32 [1, 3, H, W]   normalised (zsp_ros.inference.preprocess), H, W multiples of 32
    output  mask_logits   float32 [1, Q, H/4, W/4]   mask logits of the last decoder layer
    output  query_embeds  float32 [1, Q, E]          query embeddings after the decoder LayerNorm

No classifier is in the graph: categories added at runtime change only the head the Segmenter
applies, never the ONNX file or an engine built from it.

Variants (``msda``):
- ``portable``: deformable attention as standard operators (one ``GridSample`` per level, opset >= 16);
  runs in onnxruntime and in TensorRT's ONNX parser.
- ``plugin``: every deformable-attention call is one ``MultiscaleDeformableAttnPlugin_TRT`` node
  (zsp_ros/export/msda_plugin_export.py) for TensorRT's own plugin; onnxruntime cannot run it.

``metadata_props`` of the model (all strings): ``zsp_format`` = "zsp-onnx", ``zsp_format_version``,
``kit_sha256``, ``input_hw`` ("HxW"), ``msda`` (variant), ``msda_plugin_version`` (plugin only), ``num_queries``, ``embed_dim``, ``opset``,
``torch_version``. :func:`read_metadata` reads them back and :func:`check_metadata` refuses a file
that does not match what the caller expects.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn

from zsp_ros.export.msda_plugin_export import PLUGIN_DOMAIN, name_plugin_nodes, plugin_msda_cores, swapped_msda_cores
from zsp_ros.inference.preprocess import fitted_size, padded_size, resized_size
from zsp_ros.model.msda import ms_deform_attn_reference
from zsp_ros.runtime.backends.onnx_contract import (
    INPUT_NAME,
    ONNX_FORMAT,
    ONNX_FORMAT_VERSION,
    OUTPUT_NAMES,
    VARIANTS,
    OnnxExportError,
    check_size,
)
from zsp_ros.utils.provenance import atomic_write_bytes

MIN_OPSET = 17
DEFAULT_OPSET = 17
DEFAULT_CAMERA_HW = (480, 640)     # the frame size a kit's export is sized for unless told otherwise


def kit_network_size(rule: Mapping[str, int], camera_hw: tuple[int, int]) -> tuple[int, int]:
    """The network input (H, W) the kit's own resize rule gives a ``camera_hw`` frame: resized, then padded.

    ``rule``: the kit's ``input`` {"short_side", "max_long_side", "size_divisibility"} (pixels); e.g. a
    128 / 256 / 32 rule gives 480x640 frames 128x171, padded to (128, 192).
    """
    h, w = resized_size(camera_hw[0], camera_hw[1], short_side=int(rule["short_side"]),
                        max_long_side=int(rule["max_long_side"]))
    return padded_size(h, w, int(rule.get("size_divisibility", 32)))


def resize_rule_changes(rule: Mapping[str, int], camera_hw: tuple[int, int], size_hw: tuple[int, int]) -> list[str]:
    """How a fixed network input ``size_hw`` treats ``camera_hw`` frames unlike the kit's resize rule (empty: alike).

    A fixed-size file fits each frame inside ``size_hw`` (zsp_ros.inference.preprocess.fitted_size); the
    torch backend scales it by the kit's rule. A different scale shows the network objects at sizes it
    was not trained for, and results change; more padding changes them slightly.
    """
    cam_h, cam_w = camera_hw
    kit_hw = resized_size(cam_h, cam_w, short_side=int(rule["short_side"]), max_long_side=int(rule["max_long_side"]))
    fixed_hw = fitted_size(cam_h, cam_w, fixed_hw=size_hw)
    kit_padded = kit_network_size(rule, camera_hw)
    changes = []
    if fixed_hw != kit_hw:
        changes.append(f"{cam_h}x{cam_w} frames reach the network at {fixed_hw[0]}x{fixed_hw[1]} (scale "
                       f"{fixed_hw[0] / cam_h:.3g}), but at {kit_hw[0]}x{kit_hw[1]} (scale {kit_hw[0] / cam_h:.3g}) under "
                       f"the kit's resize rule (short side {rule['short_side']}, long side at most "
                       f"{rule['max_long_side']}): results will differ from the torch backend's")
    elif tuple(size_hw) != kit_padded:
        changes.append(f"{cam_h}x{cam_w} frames are padded to {size_hw[0]}x{size_hw[1]} instead of "
                       f"{kit_padded[0]}x{kit_padded[1]}: results may differ slightly from the torch backend's")
    return changes


class ForwardNetwork(nn.Module):
    """Export wrapper: ``forward(images) = network.forward_network(images)`` (no classifier)."""

    def __init__(self, *, network: nn.Module) -> None:
        super().__init__()
        if not hasattr(network, "forward_network"):
            raise TypeError(f"{type(network).__name__} has no forward_network(images) method")
        self.network = network

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images float32 [1,3,H,W] -> (mask_logits [1,Q,H/4,W/4], query_embeds [1,Q,E])."""
        return self.network.forward_network(images)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote: the file, its metadata and the number of deformable-attention calls swapped."""
    path: Path
    metadata: dict[str, str]
    msda_modules: int


@contextlib.contextmanager
def _msda_variant(network: nn.Module, variant: str, plugin_version: str) -> Iterator[int]:

    if variant == "plugin":
        with plugin_msda_cores(network, plugin_version=plugin_version) as count:
            yield count
    else:
        with swapped_msda_cores(network, ms_deform_attn_reference) as count:
            yield count


def export_onnx(network: nn.Module, out: str | Path, *, height: int, width: int, variant: str,
                kit_sha256: str = "", opset: int = DEFAULT_OPSET, plugin_version: str = "1",
                extra_metadata: Mapping[str, Any] | None = None) -> ExportResult:
    """Export ``network.forward_network`` at a fixed [1,3,height,width] input.

    Args:
        network: a module with ``forward_network`` (Mask2Former), on the CPU; it is put in eval
            mode, its deformable-attention cores are swapped for the export and restored after.
        out: the .onnx file to write (weights inside the file; parent folders are created).
        height, width: the fixed input size in pixels, multiples of 32.
        variant: "plugin" or "portable" (see the module docstring).
        kit_sha256: the kit's identity, recorded in metadata_props (engines and backends check it).
        opset: ONNX opset, >= 17.
        plugin_version: ``plugin_version`` attribute of the plugin nodes: "1" (TensorRT >= 8.4.1,
            deprecated from 10.11) or "2" (IPluginV3, TensorRT >= 10.11); same inputs and output.
        extra_metadata: more metadata_props (stringified).

    Returns:
        ExportResult with the path and the metadata written.
    """
    import onnx

    if variant not in VARIANTS:
        raise OnnxExportError(f"msda variant {variant!r} is unknown; choose from {', '.join(VARIANTS)}")
    if opset < MIN_OPSET:
        raise OnnxExportError(f"opset {opset} is too old; use >= {MIN_OPSET}")
    check_size(height, width)
    if plugin_version not in ("1", "2"):
        raise OnnxExportError(f"plugin_version {plugin_version!r}: TensorRT ships versions '1' and '2'")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ForwardNetwork(network=network).eval()
    images = torch.zeros(1, 3, height, width)
    with torch.no_grad(), _msda_variant(network, variant, plugin_version) as count, warnings.catch_warnings():
        warnings.simplefilter("ignore")               # tracer chatter about constants: the size is fixed on purpose
        masks, embeds = wrapper(images)
        kwargs: dict[str, Any] = {}
        if variant == "plugin":
            kwargs["custom_opsets"] = {PLUGIN_DOMAIN: 1}
        torch.onnx.export(wrapper, (images,), str(out), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), do_constant_folding=True,
                          **kwargs)
    metadata = {
        "zsp_format": ONNX_FORMAT, "zsp_format_version": str(ONNX_FORMAT_VERSION), "kit_sha256": kit_sha256,
        "input_hw": f"{height}x{width}", "msda": variant,
        **({"msda_plugin_version": plugin_version} if variant == "plugin" else {}), "num_queries": str(masks.shape[1]),
        "embed_dim": str(embeds.shape[2]), "opset": str(opset), "torch_version": torch.__version__,
        **{str(k): str(v) for k, v in (extra_metadata or {}).items()},
    }
    model = onnx.load(str(out))
    if variant == "plugin":
        name_plugin_nodes(model)
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = (f"zsp_ros Mask2Former forward_network, input {INPUT_NAME} [1,3,{height},{width}], outputs "
                        f"mask_logits [1,{masks.shape[1]},{height // 4},{width // 4}], query_embeds "
                        f"[1,{embeds.shape[1]},{embeds.shape[2]}], deformable attention: {variant}")
    atomic_write_bytes(out, model.SerializeToString())
    return ExportResult(path=out, metadata=metadata, msda_modules=count)


