"""The Segmenter front door: degenerate inputs, result consistency, a category added by name."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from runtime_fakes import FakeTextEncoder, QuadrantNetwork, make_kit, make_registry

from zsp_ros.kit.model_kit import KitError
from zsp_ros.runtime.backends import BACKENDS, build_backend
from zsp_ros.runtime.backends.torch_backend import TorchBackend
from zsp_ros.runtime.segmenter import Segmenter


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory):
    return make_kit(tmp_path_factory.mktemp("kit") / "kit")


def _segmenter(kit_dir, **kw):
    reg = make_registry(kit_dir)
    net = QuadrantNetwork()
    ids = reg.kit.bank_category_ids
    # quadrants: TL red circle (thing), TR green square (thing), BL grass (stuff), BR no-object
    rows = [int(torch.nonzero(ids == c)[0]) for c in (1, 2, 7, 0)]
    net.embeds.copy_(reg.kit.bank_embeds[rows].float())
    return Segmenter(backend=TorchBackend(network=net), registry=reg, short_side=64, max_long_side=128, **kw)


@pytest.fixture(scope="module")
def seg(kit_dir):
    return _segmenter(kit_dir)


def check_consistent(result, shape):
    """Every record matches the map: ids, areas, boxes; semantic has the same size."""
    pan = result.panoptic
    assert pan.shape == shape and pan.dtype == np.int32
    assert result.semantic.shape == shape and result.semantic.dtype == np.int32
    assert sorted(np.unique(pan[pan > 0]).tolist()) == [s.id for s in result.segments]
    for s in result.segments:
        ys, xs = np.nonzero(pan == s.id)
        assert s.area == len(ys)
        assert s.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert 0.0 <= s.score <= 1.0
    assert set(result.timings_ms) == {"preprocess", "model", "postprocess", "total"}


def test_quadrants_are_labelled(seg):
    result = seg.segment(np.full((64, 96, 3), 90, dtype=np.uint8))      # = network size: no resize, no pad
    check_consistent(result, (64, 96))
    by_name = {s.name: s for s in result.segments}
    assert set(by_name) == {"red circle", "green square", "grass"}
    assert by_name["red circle"].bbox == (0, 0, 48, 32) and by_name["red circle"].isthing
    assert by_name["grass"].bbox == (0, 32, 48, 32) and not by_name["grass"].isthing
    assert (result.panoptic[32:, 48:] == 0).all()                  # no-object quadrant is void
    assert result.semantic[0, 0] == 1 and result.semantic[0, 60] == 2 and result.semantic[40, 5] == 7
    assert result.category_set_version == 1


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (37, 91), (91, 37), (2, 1000)])
def test_degenerate_and_odd_sizes(seg, shape):
    result = seg.segment(np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8))
    check_consistent(result, shape)


def test_grey_and_black_images(seg):
    for value in (0, 128, 255):
        check_consistent(seg.segment(np.full((20, 30, 3), value, dtype=np.uint8)), (20, 30))


def test_very_large_image(seg):
    result = seg.segment(np.zeros((3000, 4000, 3), dtype=np.uint8))
    check_consistent(result, (3000, 4000))
    assert {s.name for s in result.segments} == {"red circle", "green square", "grass"}


def test_non_contiguous_inputs_give_identical_results(seg):
    base = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    want = seg.segment(np.ascontiguousarray(base[:, ::-1]))
    for view in (base[:, ::-1], np.asfortranarray(base[:, ::-1])):
        got = seg.segment(view)
        assert np.array_equal(got.panoptic, want.panoptic) and got.segments == want.segments
    strided = base[::2, ::3]
    check_consistent(seg.segment(strided), strided.shape[:2])


@pytest.mark.parametrize("bad, exc, match", [
    (np.zeros((8, 8, 3), np.float32), TypeError, "dtype uint8"),
    (np.zeros((8, 8, 3), np.int64), TypeError, "dtype uint8"),
    (np.zeros((8, 8), np.uint8), ValueError, "3 dimensions"),
    (np.zeros((8, 8, 4), np.uint8), ValueError, "3 channels"),
    (np.zeros((0, 8, 3), np.uint8), ValueError, "empty"),
    (None, TypeError, "numpy array"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), TypeError, "numpy array"),
])
def test_bad_inputs_give_clear_errors(seg, bad, exc, match):
    with pytest.raises(exc, match=match):
        seg.segment(bad)


def test_thresholds_can_drop_everything(kit_dir):
    result = _segmenter(kit_dir, object_mask_threshold=1.0).segment(np.zeros((16, 16, 3), np.uint8))
    assert result.segments == [] and (result.panoptic == 0).all()
    with pytest.raises(ValueError, match="overlap_threshold must lie in"):
        _segmenter(kit_dir, overlap_threshold=1.5)
    seg = _segmenter(kit_dir)
    with pytest.raises(ValueError, match="object_mask_threshold must lie in"):
        seg.segment(np.zeros((16, 16, 3), np.uint8), object_mask_threshold=-0.1)
    default = seg.segment(np.zeros((16, 16, 3), np.uint8))
    assert default.segments and default.semantic is not None
    assert seg.segment(np.zeros((16, 16, 3), np.uint8), semantic=False).semantic is None
    assert seg.segment(np.zeros((16, 16, 3), np.uint8), object_mask_threshold=1.0).segments == []
    assert (seg.object_mask_threshold, seg.semantic) == (0.8, True)            # per-frame options change nothing


def test_category_added_by_name_appears_in_results(kit_dir):
    seg = _segmenter(kit_dir)
    reg = seg.registry
    text = torch.from_numpy(FakeTextEncoder().encode(["purple star"]))
    with torch.no_grad():
        gen = reg.generator
        fake = gen(text.expand(8, -1), gen.sample_noise(8, generator=torch.Generator().manual_seed(5)))
    seg.backend.network.embeds[3] = fake.mean(0)                      # BR quadrant shows a purple star
    image = np.zeros((64, 64, 3), np.uint8)
    before = seg.segment(image)
    assert "purple star" not in {s.name for s in before.segments}
    reg.add(["purple star"])
    after = seg.segment(image)
    star = [s for s in after.segments if s.name == "purple star"]
    assert after.category_set_version == 2 and len(star) == 1
    assert star[0].category_id == 8 and star[0].bbox == (32, 32, 32, 32)
    assert (after.semantic[40:, 40:] == 8).all()
    reg.remove(["purple star"])
    assert "purple star" not in {s.name for s in seg.segment(image).segments}


def _quadrant_backend(kit, *, device="cpu", precision="fp32"):
    net = QuadrantNetwork()
    net.load_state_dict(kit.network_state_dict())
    return TorchBackend(network=net, device=device, precision=precision)


def test_from_kit_with_a_registered_backend(kit_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "quadrant", _quadrant_backend)
    state = tmp_path / "state"
    with Segmenter.from_kit(kit_dir, backend="quadrant", text_encoder=FakeTextEncoder(), state_dir=state,
                            fit_kwargs={"steps": 50}) as seg:
        assert (seg.short_side, seg.max_long_side) == (64, 128)
        assert seg.registry.synthetic_per_category == 16               # from the kit's runtime section
        seg.registry.add(["purple star"])
        check_consistent(seg.segment(np.zeros((10, 10, 3), np.uint8)), (10, 10))
    with Segmenter.from_kit(kit_dir, backend="quadrant", text_encoder=FakeTextEncoder(), state_dir=state) as seg:
        assert seg.registry.list().get("purple star").id == 8           # persisted, lock released by close


def test_from_kit_errors(kit_dir, tmp_path):
    with pytest.raises(KitError, match="not a directory"):
        Segmenter.from_kit(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown backend 'nope'; choose from torch"):
        build_backend("nope", None)
    bad = make_kit(tmp_path / "kit2")
    (bad / "bank.safetensors").write_bytes(b"x")
    with pytest.raises(KitError, match="bank.safetensors is corrupt"):
        Segmenter.from_kit(bad, text_encoder=FakeTextEncoder())


def test_torch_backend_checks(kit_dir):
    net = QuadrantNetwork()
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        TorchBackend(network=net, precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        TorchBackend(network=net, precision="int8")
    with pytest.raises(TypeError, match="no forward_network"):
        TorchBackend(network=torch.nn.Linear(2, 2))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            TorchBackend(network=net, device="cuda")
    backend = TorchBackend(network=net)
    with pytest.raises(ValueError, match="multiples of 32"):
        backend.infer(torch.zeros(1, 3, 30, 32))
    with pytest.raises(TypeError, match="float32"):
        backend.infer(np.zeros((1, 3, 32, 32), np.float64))
    masks, embeds = backend.infer(np.zeros((2, 3, 32, 64), np.float32))
    assert masks.shape == (2, 4, 8, 16) and embeds.shape == (2, 4, 16)


def test_from_kit_uses_the_kits_recorded_thresholds_unless_told(kit_dir, tmp_path, monkeypatch):
    import json
    import shutil

    monkeypatch.setitem(BACKENDS, "quadrant", _quadrant_backend)
    with Segmenter.from_kit(kit_dir, backend="quadrant", text_encoder=FakeTextEncoder()) as seg:
        assert (seg.object_mask_threshold, seg.overlap_threshold) == (0.8, 0.8)   # none recorded: Mask2Former's
    tuned = shutil.copytree(kit_dir, tmp_path / "tuned")
    manifest = json.loads((tuned / "manifest.json").read_text())
    manifest["inference"] = {"object_mask_threshold": 0.3, "overlap_threshold": 0.7}
    (tuned / "manifest.json").write_text(json.dumps(manifest))
    with Segmenter.from_kit(tuned, backend="quadrant", text_encoder=FakeTextEncoder()) as seg:
        assert (seg.object_mask_threshold, seg.overlap_threshold) == (0.3, 0.7)
    with Segmenter.from_kit(tuned, backend="quadrant", text_encoder=FakeTextEncoder(),
                            object_mask_threshold=0.5, overlap_threshold=0.0) as seg:
        assert (seg.object_mask_threshold, seg.overlap_threshold) == (0.5, 0.0)     # explicit wins, 0 included


@pytest.mark.parametrize("shape", [(1, 1), (2, 1000), (37, 91), (480, 640)])
def test_compiled_and_numpy_post_processing_give_identical_results(seg, shape, monkeypatch):
    """Same panoptic map, records (areas, boxes) and semantic map on both host paths, for inputs
    smaller (some small pixels reached by no input pixel) and larger than the network's size."""
    from zsp_ros.inference import postprocess_kernels

    if not postprocess_kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    fast = seg.segment(image, semantic=True)
    monkeypatch.setattr(postprocess_kernels, "AVAILABLE", False)
    slow = seg.segment(image, semantic=True)
    assert np.array_equal(fast.panoptic, slow.panoptic) and np.array_equal(fast.semantic, slow.semantic)
    assert fast.segments == slow.segments
