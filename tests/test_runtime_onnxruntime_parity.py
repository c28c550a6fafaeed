"""onnxruntime backend vs torch backend, end to end, on rendered synthetic-world images.

The kit is the tiny real one of tests/runtime_fakes.py (a random Mask2Former whose head was fitted
on its own query embeddings, so panoptic inference finds segments). Both backends run the same
kit at the same fixed input size; network outputs must agree at rtol 1e-3 / atol 1e-4, and the
final panoptic results (id maps, segment categories, areas, boxes, scores) must agree too. The
random network's masks overlap a lot, so the overlap threshold is lowered to 0.2 to keep several
segments per image in the comparison.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from tests.runtime_fakes import make_real_kit  # noqa: E402
from zsp_ros.kit.model_kit import load_kit  # noqa: E402

FIXED_HW = (64, 96)
RTOL, ATOL = 1e-3, 1e-4


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    torch.set_num_threads(1)
    return load_kit(make_real_kit(tmp_path_factory.mktemp("kit")))


@pytest.fixture(scope="module")
def segmenters(kit):
    from zsp_ros.export.on_demand import build_backend_with_artifacts
    from zsp_ros.runtime.registry import build_registry
    from zsp_ros.runtime.segmenter import Segmenter

    registry = build_registry(kit)
    made = {name: Segmenter(backend=build_backend_with_artifacts(name, kit, device="cpu", **options), registry=registry,
                            short_side=FIXED_HW[0], max_long_side=FIXED_HW[1], fixed_hw=FIXED_HW,
                            overlap_threshold=0.2)
            for name, options in (("torch", {}), ("onnxruntime", {"size": FIXED_HW, "threads": 1}))}
    yield made
    for seg in made.values():
        seg.backend.close()
    registry.close()


def _scenes():
    from zsp_ros.data.synth_render import render_scene
    from zsp_ros.data.synth_world import world_categories

    cats = world_categories()
    things = [c for c in cats if c["isthing"]]
    stuff = [c for c in cats if not c["isthing"]]
    rng = np.random.default_rng(7)
    return [render_scene(rng, height=h, width=w, things=things, stuff=stuff).image
            for h, w in ((64, 96), (90, 120), (80, 60))]


def test_network_outputs_agree(segmenters):
    from zsp_ros.inference.preprocess import preprocess

    for image in _scenes():
        x, _ = preprocess(image, short_side=64, max_long_side=96, fixed_hw=FIXED_HW)
        t_masks, t_embeds = segmenters["torch"].backend.infer(x)
        o_masks, o_embeds = segmenters["onnxruntime"].backend.infer(x.numpy())
        assert isinstance(o_masks, np.ndarray) and o_masks.shape == tuple(t_masks.shape) == (1, 8, 16, 24)
        np.testing.assert_allclose(o_masks, t_masks.numpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(o_embeds, t_embeds.numpy(), rtol=RTOL, atol=ATOL)


def test_panoptic_results_agree(segmenters):
    found = 0
    for image in _scenes():
        a = segmenters["torch"].segment(image)
        b = segmenters["onnxruntime"].segment(image)
        assert a.panoptic.shape == b.panoptic.shape == image.shape[:2]
        np.testing.assert_array_equal(a.panoptic, b.panoptic)
        np.testing.assert_array_equal(a.semantic, b.semantic)
        assert [(s.id, s.category_id, s.area, s.bbox) for s in a.segments] == \
               [(s.id, s.category_id, s.area, s.bbox) for s in b.segments]
        np.testing.assert_allclose([s.score for s in b.segments], [s.score for s in a.segments], rtol=RTOL, atol=ATOL)
        found += len(a.segments)
    assert found >= 6, "the comparison must cover real segments"


def test_backend_refuses_what_it_cannot_run(kit, segmenters, tmp_path):
    from zsp_ros.export.onnx_export import export_onnx
    from zsp_ros.runtime.backends.onnx_contract import OnnxExportError
    from zsp_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from zsp_ros.runtime.backends.torch_backend import TorchBackend

    backend = segmenters["onnxruntime"].backend
    assert backend.input_hw == FIXED_HW and backend.describe()["providers"] == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="fixed_hw=\\(64, 96\\)"):
        backend.infer(np.zeros((1, 3, 96, 64), np.float32))
    with pytest.raises(ValueError, match="precision"):
        OnnxRuntimeBackend(onnx_path=backend.onnx_path, precision="fp16")
    with pytest.raises(OnnxExportError, match="exported from kit"):
        OnnxRuntimeBackend(onnx_path=backend.onnx_path, kit_sha256="0" * 64)
    with pytest.raises(ValueError, match="onnx=PATH"):
        OnnxRuntimeBackend.from_kit(kit)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match="CUDAExecutionProvider"):
            OnnxRuntimeBackend(onnx_path=backend.onnx_path, device="cuda")
    network = TorchBackend.from_kit(kit).network
    plugin = export_onnx(network, tmp_path / "plugin.onnx", height=64, width=64, variant="plugin",
                         kit_sha256=kit.sha256).path
    with pytest.raises(ValueError, match="--msda portable"):
        OnnxRuntimeBackend(onnx_path=plugin)


def test_temporary_export_is_removed_on_close(kit):
    from zsp_ros.export.on_demand import build_backend_with_artifacts

    backend = build_backend_with_artifacts("onnxruntime", kit, size="64x64", threads=1)
    folder = backend.onnx_path.parent
    assert backend.onnx_path.is_file() and backend.metadata["kit_sha256"] == kit.sha256
    backend.close()
    assert not folder.exists()
