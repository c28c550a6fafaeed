"""Deformable-attention core: both implementations against a slow per-point bilinear loop."""
from __future__ import annotations

import math

import pytest
import torch

from zsp_ros.model.msda import (
    CORES,
    MSDeformAttn,
    ms_deform_attn,
    ms_deform_attn_gather,
    ms_deform_attn_reference,
    set_msda_core,
)

SHAPES = [(5, 7), (3, 4), (1, 2)]   # includes a one-pixel-high level
CORE_PARAMS = pytest.mark.parametrize("core", [ms_deform_attn_gather, ms_deform_attn_reference],
                                      ids=["embedding_bag", "grid_sample"])


def level_tensors(shapes):
    spatial = torch.tensor(shapes, dtype=torch.long)
    starts = torch.cat([spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]])
    return spatial, starts


def slow_core(value, shapes, locations, weights):
    """Obviously-correct loop: bilinear sample with zero padding, pixel centres at (i + 0.5) / size."""
    n_, s_, m_, d_ = value.shape
    _, lq_, _, l_, p_, _ = locations.shape
    value = value.double()
    out = torch.zeros(n_, lq_, m_, d_, dtype=torch.float64)
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)

    def pixel(n, m, level, yy, xx):
        h, w = shapes[level]
        if 0 <= yy < h and 0 <= xx < w:
            return value[n, starts[level] + yy * w + xx, m]
        return torch.zeros(d_, dtype=torch.float64)

    for n in range(n_):
        for q in range(lq_):
            for m in range(m_):
                for level, (h, w) in enumerate(shapes):
                    for p in range(p_):
                        x = float(locations[n, q, m, level, p, 0]) * w - 0.5
                        y = float(locations[n, q, m, level, p, 1]) * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        fx, fy = x - x0, y - y0
                        sample = ((1 - fy) * (1 - fx) * pixel(n, m, level, y0, x0)
                                  + (1 - fy) * fx * pixel(n, m, level, y0, x0 + 1)
                                  + fy * (1 - fx) * pixel(n, m, level, y0 + 1, x0)
                                  + fy * fx * pixel(n, m, level, y0 + 1, x0 + 1))
                        out[n, q, m] += float(weights[n, q, m, level, p]) * sample
    return out.view(n_, lq_, m_ * d_)


def random_inputs(*, n=2, lq=6, m=2, d=3, p=3, shapes=SHAPES, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=dtype)
    locations = torch.rand(n, lq, m, len(shapes), p, 2, generator=g, dtype=dtype) * 1.6 - 0.3
    weights = torch.rand(n, lq, m, len(shapes), p, generator=g, dtype=dtype)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    return value, locations, weights


def special_locations(shapes, p):
    """Borders, pixel centres, half a pixel outside, far outside: one query per pattern."""
    rows = []
    for pattern in range(8):
        per_level = []
        for h, w in shapes:
            pts = []
            for k in range(p):
                if pattern == 0:
                    pts.append((0.0, 0.0))                                # top-left corner
                elif pattern == 1:
                    pts.append((1.0, 1.0))                                # bottom-right corner
                elif pattern == 2:
                    pts.append(((k % w + 0.5) / w, (k % h + 0.5) / h))    # exact pixel centres
                elif pattern == 3:
                    pts.append((-0.5 / w, 0.5))                           # half a pixel left of the image
                elif pattern == 4:
                    pts.append((1.0 + 0.5 / w, 1.0 + 0.25 / h))           # beyond bottom-right
                elif pattern == 5:
                    pts.append((-3.0, 7.0))                               # far outside
                elif pattern == 6:
                    pts.append((0.5 / w, 1.0 - 0.5 / h))                  # centre of bottom-left pixel
                else:
                    pts.append((1.0 - 0.25 / w, -0.25 / h))               # inside x, just above the top
            per_level.append(pts)
        rows.append(per_level)
    return torch.tensor(rows, dtype=torch.float32)                        # [Lq=8, L, P, 2]


@CORE_PARAMS
def test_core_matches_slow_loop_random_and_outside(core):
    value, locations, weights = random_inputs()
    spatial, starts = level_tensors(SHAPES)
    expected = slow_core(value, SHAPES, locations, weights)
    got = core(value, spatial, starts, locations, weights)
    assert got.shape == (2, 6, 2 * 3) and got.dtype == torch.float32
    assert (got.double() - expected).abs().max().item() <= 1e-5


@CORE_PARAMS
def test_core_matches_slow_loop_on_borders(core):
    n, m, d, p = 2, 2, 4, 3
    value, _, _ = random_inputs(n=n, m=m, d=d, p=p, seed=1)
    spatial, starts = level_tensors(SHAPES)
    pattern = special_locations(SHAPES, p)                               # [8, L, P, 2]
    locations = pattern[None, :, None].expand(n, -1, m, -1, -1, -1).contiguous()
    weights = torch.rand(n, pattern.shape[0], m, len(SHAPES), p, generator=torch.Generator().manual_seed(2))
    expected = slow_core(value, SHAPES, locations, weights)
    got = core(value, spatial, starts, locations, weights)
    assert (got.double() - expected).abs().max().item() <= 1e-5
    # a point far outside every level contributes nothing
    assert got[:, 5].abs().max().item() == 0.0


def test_gather_and_reference_gradients_agree():
    value, locations, weights = random_inputs(dtype=torch.float64, seed=3)
    spatial, starts = level_tensors(SHAPES)
    grads = []
    for core in (ms_deform_attn_gather, ms_deform_attn_reference):
        inputs = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
        out = core(inputs[0], spatial, starts, inputs[1], inputs[2])
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out))
        grads.append([t.grad for t in inputs])
    for ours, ref, name in zip(grads[0], grads[1], ("value", "locations", "weights")):
        assert torch.allclose(ours, ref, atol=1e-10), name


def test_gather_core_gradcheck():
    value, locations, weights = random_inputs(n=1, lq=3, m=2, d=2, p=2, dtype=torch.float64, seed=4)
    spatial, starts = level_tensors(SHAPES)
    inputs = tuple(t.requires_grad_(True) for t in (value, locations, weights))
    assert torch.autograd.gradcheck(lambda v, loc, w: ms_deform_attn_gather(v, spatial, starts, loc, w), inputs)


def test_auto_core_gathers_for_inference_and_samples_for_training():
    value, locations, weights = random_inputs(seed=5)
    spatial, starts = level_tensors(SHAPES)
    with torch.no_grad():
        assert torch.equal(ms_deform_attn(value, spatial, starts, locations, weights),
                           ms_deform_attn_gather(value, spatial, starts, locations, weights))
    trained = ms_deform_attn(value.requires_grad_(True), spatial, starts, locations, weights)
    assert torch.equal(trained, ms_deform_attn_reference(value, spatial, starts, locations, weights))
    trained.sum().backward()
    assert value.grad is not None and torch.isfinite(value.grad).all()


@CORE_PARAMS
def test_empty_query_set(core):
    value, locations, weights = random_inputs(lq=0)
    spatial, starts = level_tensors(SHAPES)
    assert core(value, spatial, starts, locations, weights).shape == (2, 0, 6)


def test_bad_inputs_are_named():
    value, locations, weights = random_inputs()
    spatial, starts = level_tensors(SHAPES)
    with pytest.raises(ValueError, match="spatial_shapes"):
        ms_deform_attn(value, spatial[:2], starts, locations, weights)
    with pytest.raises(ValueError, match="value has S"):
        ms_deform_attn(value[:, :-1], spatial, starts, locations, weights)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn(value, spatial, starts, locations, weights[..., :1])


def test_module_cores_are_interchangeable():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=8, n_levels=3, n_heads=2, n_points=2)
    for p in attn.parameters():                     # non-trivial offsets and weights
        torch.nn.init.normal_(p, std=0.3)
    spatial, starts = level_tensors(SHAPES)
    s = int(spatial.prod(1).sum())
    query = torch.randn(2, 5, 8)
    flat = torch.randn(2, s, 8)
    ref_points = torch.rand(2, 5, 3, 2)
    assert attn.core is ms_deform_attn                          # "auto" by default
    container = torch.nn.Sequential(attn)
    with torch.no_grad():
        assert set_msda_core(container, "embedding_bag") == 1
        fast = attn(query, ref_points, flat, spatial, starts)
        assert set_msda_core(container, "grid_sample") == 1
        assert attn.core is CORES["grid_sample"]
        slow = attn(query, ref_points, flat, spatial, starts)
    assert fast.shape == (2, 5, 8)
    assert (fast - slow).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="unknown core"):
        set_msda_core(container, "cuda")


def test_module_init_is_deformable_detr():
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=8, n_points=3)
    bias = attn.sampling_offsets.bias.view(8, 2, 3, 2)
    assert torch.equal(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0]))   # head 0 points along +x
    assert torch.allclose(bias[2, 1, 1], torch.tensor([0.0, 2.0]), atol=1e-6)  # head 2 along +y, point 2
    assert attn.attention_weights.weight.abs().sum() == 0


def test_bench_writes_the_promised_json(tmp_path):
    import argparse
    import json

    from zsp_ros.bench import msda as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "msda.json"
    args = parser.parse_args(["--out", str(out), "--input-hw", "64", "96", "--repeats", "2", "--threads", "1"])
    assert bench.run(args) == 0
    result = json.loads(out.read_text())
    for key in ("speedup", "max_abs_diff", "ours_ms", "reference_ms", "shapes", "machine", "provenance",
                "train_ours_ms", "train_reference_ms", "train_gather_ms"):
        assert key in result, key
    assert result["shapes"]["spatial_shapes_hw"] == [[8, 12], [4, 6], [2, 3]]
    assert result["shapes"]["Lq"] == result["shapes"]["S"] == 8 * 12 + 4 * 6 + 2 * 3
    assert result["max_abs_diff"] <= 1e-5 and result["speedup"] > 0
