"""The torch backend's GPU fast path: staged forward, host-side level sizes, CUDA graphs, fp16.

The staging and the host-shape deformable-attention core run on the CPU here and must equal
``forward_network``; the CPU backend must stay the plain eager path. The CUDA checks (fp16 +
channels-last + CUDA graphs against eager fp32) run only where torch sees a GPU.
"""
from __future__ import annotations

import copy

import pytest
import torch

from tests.runtime_fakes import TINY_MASK2FORMER, QuadrantNetwork
from zsp_ros.model.build import build_mask2former
from zsp_ros.model.msda import ms_deform_attn
from zsp_ros.runtime.backends.torch_backend import TorchBackend
from zsp_ros.runtime.backends.torch_fast_path import HostShapeCore, StagedRunner

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def network():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return build_mask2former(TINY_MASK2FORMER, 3).eval()


def _images(h=64, w=96, seed=0):
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_staged_runner_equals_forward_network_on_cpu(network):
    net = copy.deepcopy(network)
    runner = StagedRunner(network=net, autocast_dtype=None, channels_last=False, cuda_graphs=False)
    assert runner.staged
    for h, w in ((64, 96), (96, 64)):                       # same token count, different levels
        x = _images(h, w)
        with torch.no_grad():
            ref_masks, ref_embeds = network.forward_network(x)
        masks, embeds = runner(x)
        torch.testing.assert_close(masks, ref_masks, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(embeds, ref_embeds, rtol=1e-5, atol=1e-5)


def test_single_stage_for_other_networks():
    net = QuadrantNetwork()
    runner = StagedRunner(network=net, autocast_dtype=None, channels_last=False, cuda_graphs=False)
    masks, embeds = runner(torch.zeros(2, 3, 64, 64))
    assert not runner.staged and masks.shape == (2, 4, 16, 16) and embeds.shape == (2, 4, 16)


def test_host_shape_core_reads_level_sizes_once_per_input_size():
    class CountingShapes(torch.Tensor):
        reads = 0

        def to(self, *args, **kwargs):
            type(self).reads += 1
            return super().to(*args, **kwargs)

    shapes = torch.tensor([[4, 6], [2, 3]])
    starts = torch.tensor([0, 24])
    g = torch.Generator().manual_seed(0)
    value = torch.randn(1, 30, 2, 4, generator=g)
    locations = torch.rand(1, 5, 2, 2, 3, 2, generator=g) * 1.2 - 0.1
    weights = torch.rand(1, 5, 2, 2, 3, generator=g).softmax(-1)
    core = HostShapeCore()
    core.input_hw = (64, 96)
    counted = shapes.as_subclass(CountingShapes)
    first = core(value, counted, starts, locations, weights)
    second = core(value, counted, starts, locations, weights)
    torch.testing.assert_close(first, ms_deform_attn(value, shapes, starts, locations, weights), rtol=1e-5, atol=1e-5)
    assert torch.equal(first, second) and CountingShapes.reads == 1
    core.input_hw = (96, 64)
    core(value, counted, starts, locations, weights)
    assert CountingShapes.reads == 2


def test_cpu_backend_is_unchanged(network):
    backend = TorchBackend(network=copy.deepcopy(network), device="cpu")
    assert backend._runner is None and backend.describe() == {"backend": "torch", "device": "cpu", "precision": "fp32",
                                                              "threads": torch.get_num_threads()}
    x = _images()
    with torch.no_grad():
        expected = network.forward_network(x)
    masks, embeds = backend.infer(x)
    assert torch.equal(masks, expected[0]) and torch.equal(embeds, expected[1])
    for option in ({"cuda_graphs": True}, {"channels_last": True}):
        with pytest.raises(ValueError, match="CUDA fast path"):
            TorchBackend(network=copy.deepcopy(network), device="cpu", **option)


@cuda
def test_cuda_fast_path_matches_eager_fp32(network):
    tol = 1e-3
    x = _images(64, 96, seed=3)
    eager = TorchBackend(network=copy.deepcopy(network), device="cuda", precision="fp32", channels_last=False,
                         cuda_graphs=False)
    ref_masks, ref_embeds = eager.infer(x)
    fast = TorchBackend(network=copy.deepcopy(network), device="cuda", precision="fp32")
    for _ in range(3):                                        # capture, then replays
        masks, embeds = fast.infer(x)
    status = fast.describe()["graph_stages"]
    assert status["backbone"] == "captured" and status["predictor"] == "captured", status
    scale = ref_masks.abs().max().item()
    assert (masks - ref_masks).abs().max().item() <= tol * max(1.0, scale)
    assert (embeds - ref_embeds).abs().max().item() <= tol * 10
    other = _images(64, 96, seed=4)                           # replay with new input data
    torch.testing.assert_close(fast.infer(other)[1], eager.infer(other)[1], rtol=tol * 10, atol=tol * 10)


# fp16 (autocast, channels-last, CUDA graphs) against eager fp32. Rounding alone (fp16's unit
# roundoff 2**-11 ~ 4.9e-4, accumulated over the network; the pixel decoder stays fp32) keeps
# every query embedding within cosine 0.9999 of fp32, its entries within 3e-2 and the mask
# logits within 1e-2 of their largest magnitude: an fp16-autocast emulation of this network on
# the CPU over 200 images gave 1 - cos <= 1e-5, max |d embed| <= 1.3e-2 and max |d mask| <=
# 3.5e-3 of the largest |value| (the cosine alone would miss a scale error). But masked attention
# thresholds the previous layer's mask logits at 0 (sigmoid < 0.5), and in about 1 image in 7 a
# logit lies within rounding of 0: the flip changes which of the few coarse pixels (2x3, 4x6 at
# this input size) a query attends to, and from there the outputs legitimately differ more
# (emulation, worst of 200: query cosine 0.956, max |d embed| 0.32, per-query mask cosine 0.988,
# max |d mask| 0.135). So every image must stay within the FLIP bounds (two different images are
# far outside the mask ones: per-query mask cosine <= 0.33, max |d mask| >= 0.73), and at least
# half the images within the ROUNDING bounds (14 of these 16 in the emulation; a flip rate of
# 1/2 would be no rounding effect).
FP16_IMAGES = 16
FP16_ROUNDING = {"embed_cos": 0.9999, "embed_err": 3e-2, "mask_cos": 0.9999, "mask_err": 1e-2}
FP16_FLIP = {"embed_cos": 0.9, "embed_err": 0.5, "mask_cos": 0.95, "mask_err": 0.25}


def fp16_deviation(ref_masks, ref_embeds, masks, embeds) -> dict[str, float]:
    """fp16 outputs against fp32 ones: the worst query's cosine (``*_cos``; mask logits flattened
    per query) and the largest error as a fraction of the reference's largest |value| (``*_err``)."""
    cos = torch.nn.functional.cosine_similarity
    embeds, masks = embeds.float(), masks.float()
    return {"embed_cos": cos(embeds, ref_embeds, dim=-1).min().item(),
            "embed_err": ((embeds - ref_embeds).abs().max() / ref_embeds.abs().max()).item(),
            "mask_cos": cos(masks.flatten(2), ref_masks.flatten(2), dim=-1).min().item(),
            "mask_err": ((masks - ref_masks).abs().max() / ref_masks.abs().max()).item()}


def within(deviation: dict[str, float], bounds: dict[str, float]) -> bool:
    return all(deviation[k] >= bounds[k] if k.endswith("_cos") else deviation[k] <= bounds[k]
               for k in bounds)


@cuda
def test_cuda_fast_path_fp16_matches_eager_fp32_within_fp16_rounding(network):
    eager = TorchBackend(network=copy.deepcopy(network), device="cuda", precision="fp32", channels_last=False,
                         cuda_graphs=False)
    fast = TorchBackend(network=copy.deepcopy(network), device="cuda", precision="fp16")
    deviations = []
    for seed in range(3, 3 + FP16_IMAGES):                    # the first captures, the others replay new data
        x = _images(64, 96, seed=seed)
        ref_masks, ref_embeds = eager.infer(x)
        masks, embeds = fast.infer(x)
        deviations.append(fp16_deviation(ref_masks, ref_embeds, masks, embeds))
        assert within(deviations[-1], FP16_FLIP), (seed, deviations[-1])
    status = fast.describe()["graph_stages"]
    assert status["backbone"] == "captured" and status["predictor"] == "captured", status
    rounding_only = sum(within(d, FP16_ROUNDING) for d in deviations)
    assert rounding_only >= FP16_IMAGES // 2, deviations
