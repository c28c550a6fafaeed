"""ONNX export of forward_network: both variants pass the checker and strict shape inference, carry
their metadata, and compute the network; the plugin variant's nodes follow TensorRT's plugin contract.

The plugin variant is also *evaluated* here: onnx's reference evaluator runs the graph with an
independent numpy implementation of the plugin's documented semantics (bilinear sampling, zero
padding, pixel centres at (i + 0.5) / size), and must agree with the portable variant and torch.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tests.runtime_fakes import TINY_MASK2FORMER  # noqa: E402
from zsp_ros.export.msda_plugin_export import PLUGIN_DOMAIN, PLUGIN_OP, swapped_msda_cores  # noqa: E402
from zsp_ros.export.onnx_export import export_onnx  # noqa: E402
from zsp_ros.model.build import build_mask2former  # noqa: E402
from zsp_ros.model.msda import MSDeformAttn  # noqa: E402
from zsp_ros.runtime.backends.onnx_contract import (  # noqa: E402
    OUTPUT_NAMES,
    OnnxExportError,
    check_metadata,
    parse_size,
    read_metadata,
)

H, W = 64, 96
ENC_LAYERS = 2


@pytest.fixture(scope="module")
def network():
    torch.set_num_threads(1)
    cfg = copy.deepcopy(TINY_MASK2FORMER)
    cfg["pixel_decoder"]["enc_layers"] = ENC_LAYERS
    torch.manual_seed(0)
    net = build_mask2former(cfg, 3).eval()
    with torch.no_grad():                       # spread the sampling offsets so points leave the maps too
        for m in net.modules():
            if isinstance(m, MSDeformAttn):
                m.sampling_offsets.weight.normal_(0.0, 0.5)
                m.attention_weights.weight.normal_(0.0, 0.5)
    return net


@pytest.fixture(scope="module")
def exported(network, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    return {v: export_onnx(network, folder / f"{v}.onnx", height=H, width=W, variant=v, kit_sha256="k" * 64)
            for v in ("portable", "plugin")}


@pytest.fixture(scope="module")
def images():
    return torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(1))


def _inferred(path):
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return model, onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def _dims(value_info):
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("variant", ["portable", "plugin"])
def test_checker_and_shape_inference_give_the_documented_outputs(exported, network, variant):
    model, inferred = _inferred(exported[variant].path)
    assert [i.name for i in model.graph.input] == ["images"] and _dims(model.graph.input[0]) == [1, 3, H, W]
    outputs = {o.name: _dims(o) for o in inferred.graph.output}
    q, e = network.num_queries, network.embed_dim
    assert outputs == {"mask_logits": [1, q, H // 4, W // 4], "query_embeds": [1, q, e]}
    assert list(outputs) == list(OUTPUT_NAMES)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = read_metadata(exported[variant].path)
    assert meta.get("msda_plugin_version") == ("1" if variant == "plugin" else None)
    assert meta["msda"] == variant and meta["input_hw"] == f"{H}x{W}" and meta["kit_sha256"] == "k" * 64
    assert meta["zsp_format"] == "zsp-onnx" and meta["num_queries"] == str(q) and meta["embed_dim"] == str(e)


def test_plugin_nodes_follow_the_tensorrt_contract(exported, network):
    model, inferred = _inferred(exported["plugin"].path)
    types = {v.name: v.type.tensor_type for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    constants = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                 if n.op_type == "Constant"}
    constants.update({t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer})
    nodes = [n for n in model.graph.node if n.op_type == PLUGIN_OP]
    assert len(nodes) == ENC_LAYERS == exported["plugin"].msda_modules
    assert not any(n.op_type == "GridSample" for n in model.graph.node)
    assert any(o.domain == PLUGIN_DOMAIN for o in model.opset_import)
    encoder = network.sem_seg_head.pixel_decoder
    m, p, levels = encoder.transformer.encoder.layers[0].self_attn.n_heads, 2, 3
    d = 32 // m
    level_hw = [(H // s, W // s) for s in (32, 16, 8)]                       # coarsest first
    s_tokens = sum(h * w for h, w in level_hw)
    for node in nodes:
        assert node.domain == PLUGIN_DOMAIN and len(node.input) == 5 and len(node.output) == 1
        attrs = {a.name: a.s.decode() for a in node.attribute}
        assert attrs == {"plugin_version": "1", "plugin_namespace": ""}
        value, shapes, starts, locations, weights = node.input
        spatial = constants[shapes]
        assert spatial.dtype == np.int32 and spatial.tolist() == [list(hw) for hw in level_hw]
        assert constants[starts].dtype == np.int32
        assert constants[starts].tolist() == [0, level_hw[0][0] * level_hw[0][1], sum(h * w for h, w in level_hw[:2])]
        float_type = onnx.TensorProto.FLOAT
        assert types[value].elem_type == float_type and [x.dim_value for x in types[value].shape.dim] == [1, s_tokens, m, d]
        assert types[locations].elem_type == float_type
        assert [x.dim_value for x in types[locations].shape.dim] == [1, s_tokens, m, levels, p, 2]
        assert [x.dim_value for x in types[weights].shape.dim] == [1, s_tokens, m, levels, p]
        out = types[node.output[0]]
        assert out.elem_type == float_type and [x.dim_value for x in out.shape.dim] == [1, s_tokens, m, d]


def test_portable_variant_runs_in_onnxruntime_like_torch(exported, network, images):
    session = ort.InferenceSession(str(exported["portable"].path), providers=["CPUExecutionProvider"])
    masks, embeds = session.run(list(OUTPUT_NAMES), {"images": images.numpy()})
    with torch.no_grad():
        ref_masks, ref_embeds = network.forward_network(images)
    np.testing.assert_allclose(masks, ref_masks.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(embeds, ref_embeds.numpy(), rtol=1e-3, atol=1e-4)


def _plugin_reference_op():
    """numpy op for the reference evaluator, written from the plugin's documented semantics."""
    from onnx.reference.op_run import OpRun

    def _run(self, value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
             plugin_version=None, plugin_namespace=None):
        assert spatial_shapes.dtype == np.int32 and level_start_index.dtype == np.int32
        n, _, m, d = value.shape
        _, lq, _, levels, _, _ = sampling_locations.shape
        out = np.zeros((n, lq, m, d), dtype=np.float64)
        batch = np.arange(n)[:, None, None, None]
        head = np.arange(m)[None, None, :, None]
        for level in range(levels):
            h, w = (int(v) for v in spatial_shapes[level])
            start = int(level_start_index[level])
            image = value[:, start:start + h * w].reshape(n, h, w, m, d)
            x = sampling_locations[:, :, :, level, :, 0] * w - 0.5              # [N, Lq, M, P] pixel coords
            y = sampling_locations[:, :, :, level, :, 1] * h - 0.5
            x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
            for yy in (y0, y0 + 1):
                for xx in (x0, x0 + 1):
                    inside = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
                    coef = (1 - np.abs(x - xx)) * (1 - np.abs(y - yy)) * inside * attention_weights[:, :, :, level]
                    rows = image[batch, yy.clip(0, h - 1), xx.clip(0, w - 1), head]   # [N, Lq, M, P, D]
                    out += (rows * coef[..., None]).sum(3)
        return (out.astype(value.dtype),)

    return type(PLUGIN_OP, (OpRun,), {"op_domain": PLUGIN_DOMAIN, "_run": _run})


def test_plugin_variant_evaluates_to_the_same_network(exported, network, images):
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(onnx.load(str(exported["plugin"].path)), new_ops=[_plugin_reference_op()])
    masks, embeds = evaluator.run(list(OUTPUT_NAMES), {"images": images.numpy()})
    with torch.no_grad():
        ref_masks, ref_embeds = network.forward_network(images)
    np.testing.assert_allclose(masks, ref_masks.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(embeds, ref_embeds.numpy(), rtol=1e-3, atol=1e-4)


def test_export_restores_the_models_cores(network, exported):
    cores = [m.core for m in network.modules() if isinstance(m, MSDeformAttn)]
    with pytest.raises(RuntimeError, match="boom"):
        with swapped_msda_cores(network, lambda *a: None) as count:
            assert count == ENC_LAYERS
            raise RuntimeError("boom")
    assert [m.core for m in network.modules() if isinstance(m, MSDeformAttn)] == cores
    assert all(core.__name__ == "ms_deform_attn" for core in cores)   # the export left "auto" in place


def test_metadata_checks_name_the_mismatch(exported):
    path = exported["plugin"].path
    assert check_metadata(path, kit_sha256="k" * 64, variant="plugin", input_hw=(H, W))["msda"] == "plugin"
    with pytest.raises(OnnxExportError, match="exported from kit"):
        check_metadata(path, kit_sha256="z" * 64)
    with pytest.raises(OnnxExportError, match="'portable' is needed"):
        check_metadata(path, variant="portable")
    with pytest.raises(OnnxExportError, match="input size is 64x96"):
        check_metadata(path, input_hw=(480, 640))


def test_bad_requests_are_refused(network, tmp_path):
    with pytest.raises(OnnxExportError, match="multiples of 32"):
        export_onnx(network, tmp_path / "x.onnx", height=60, width=96, variant="portable")
    with pytest.raises(OnnxExportError, match="unknown"):
        export_onnx(network, tmp_path / "x.onnx", height=64, width=96, variant="gridsample")
    with pytest.raises(OnnxExportError, match="plugin_version '3'"):
        export_onnx(network, tmp_path / "x.onnx", height=64, width=96, variant="plugin", plugin_version="3")
    with pytest.raises(OnnxExportError, match="opset 16"):
        export_onnx(network, tmp_path / "x.onnx", height=64, width=96, variant="portable", opset=16)
    assert parse_size("480x640") == (480, 640)
    with pytest.raises(OnnxExportError, match="HxW"):
        parse_size("640")
    assert not (tmp_path / "x.onnx").exists()


def test_cli_exports_a_kit_and_reports_errors(tmp_path, capsys):
    from tests.runtime_fakes import make_real_kit
    from zsp_ros.cli.main import main

    kit = make_real_kit(tmp_path / "kit")
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--kit", str(kit), "--size", "64x64", "--msda", "plugin", "--out", str(out),
                 "--plugin-version", "2"]) == 0
    assert "1 plugin nodes" in capsys.readouterr().out
    from zsp_ros.kit.model_kit import load_kit
    meta = read_metadata(out)
    assert meta["kit_sha256"] == load_kit(kit).sha256 and meta["msda_plugin_version"] == "2"
    node = next(n for n in onnx.load(str(out)).graph.node if n.op_type == PLUGIN_OP)
    assert {a.name: a.s.decode() for a in node.attribute}["plugin_version"] == "2"
    assert main(["export", "onnx", "--kit", str(kit), "--size", "65x64", "--msda", "portable",
                 "--out", str(tmp_path / "bad.onnx")]) == 2
    assert "multiples of 32" in capsys.readouterr().err
