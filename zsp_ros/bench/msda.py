"""`zsp bench msda`: the fused deformable-attention core vs the grid_sample-per-level reference.

Shapes are those of Mask2Former R50's pixel-decoder encoder on a COCO test image: an 800×1088
(H×W) padded input gives levels at strides 8/16/32 of H×W = 100×136, 50×68, 25×34 (as W×H:
136×100, 68×50, 34×25), S = 17,850 tokens, one query per token (Lq = S),
M = 8 heads of D = 32, P = 4 points. Sampling locations are made as the encoder makes them: each
query's own pixel centre plus Deformable-DETR-style offsets (a ring of 1..P pixels per head) and
Gaussian jitter of 1 pixel, so memory access has the locality of the real layer.

JSON: speedup (reference / ours, forward, no autograd), max_abs_diff, ours_ms, reference_ms
(medians), shapes, machine, and, unless --no-backward, forward + backward timings (training):
``ms_deform_attn`` then runs the grid_sample path, and the gather core with embedding_bag's own
backward is timed beside it (``train_gather_ms``) to show why.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

from zsp_ros.model.msda import ms_deform_attn, ms_deform_attn_gather, ms_deform_attn_reference
from zsp_ros.model.pixel_decoder import MSDeformAttnTransformerEncoderOnly
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads
from zsp_ros.utils.provenance import provenance, seed_everything, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--input-hw", type=int, nargs=2, default=(800, 1088), metavar=("H", "W"),
                        help="padded network input, multiples of 32 (default 800 1088)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--points", type=int, default=4)
    add_threads_argument(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per implementation (median reported)")
    parser.add_argument("--no-backward", action="store_true", help="skip the forward + backward timing")
    parser.add_argument("--seed", type=int, default=0)


def make_inputs(*, input_hw: tuple[int, int], batch: int, heads: int, head_dim: int, points: int, seed: int):
    """Encoder-like inputs: (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)."""
    import torch


    h, w = input_hw
    if h % 32 or w % 32:
        raise ValueError(f"--input-hw {h} {w}: both must be multiples of 32")
    shapes = [(h // s, w // s) for s in (8, 16, 32)]
    levels = len(shapes)
    g = torch.Generator().manual_seed(seed)
    spatial = torch.tensor(shapes, dtype=torch.long)
    starts = torch.cat([spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]])
    s = int(spatial.prod(1).sum())
    value = torch.randn(batch, s, heads, head_dim, generator=g)
    ref = MSDeformAttnTransformerEncoderOnly.reference_points(shapes, torch.device("cpu"))      # [1, S, L, 2]
    angles = torch.arange(heads, dtype=torch.float32) * (2 * math.pi / heads)
    ring = torch.stack([angles.cos(), angles.sin()], -1)
    ring = ring / ring.abs().max(-1, keepdim=True).values
    offsets = ring.view(heads, 1, 1, 2) * torch.arange(1, points + 1, dtype=torch.float32).view(1, 1, points, 1)
    offsets = offsets.expand(heads, levels, points, 2)
    offsets = offsets + torch.randn(batch, s, heads, levels, points, 2, generator=g)            # pixels
    size_xy = spatial.flip(-1).to(torch.float32).view(1, 1, 1, levels, 1, 2)
    locations = ref[:, :, None, :, None, :] + offsets / size_xy
    weights = torch.randn(batch, s, heads, levels * points, generator=g).softmax(-1)
    return value, spatial, starts, locations.contiguous(), weights.view(batch, s, heads, levels, points), shapes


def _time_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def run(args: argparse.Namespace) -> int:
    import torch


    seed_everything(args.seed)
    args.threads = apply_threads(args.threads)
    load_before = os.getloadavg()
    value, spatial, starts, locations, weights, shapes = make_inputs(
        input_hw=tuple(args.input_hw), batch=args.batch, heads=args.heads, head_dim=args.head_dim,
        points=args.points, seed=args.seed)
    impls = {"ours": ms_deform_attn, "reference": ms_deform_attn_reference}

    with torch.no_grad():
        out_ours = ms_deform_attn(value, spatial, starts, locations, weights)
        out_ref = ms_deform_attn_reference(value, spatial, starts, locations, weights)
    max_abs_diff = float((out_ours - out_ref).abs().max())
    del out_ours, out_ref

    # the correctness run above was the warm-up; interleave the two implementations so that load
    # from other processes hits both alike
    forward: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(args.repeats):
        for name, fn in impls.items():
            with torch.no_grad():
                forward[name].append(_time_ms(lambda: fn(value, spatial, starts, locations, weights)))

    result = {
        "speedup": statistics.median(forward["reference"]) / statistics.median(forward["ours"]),
        "max_abs_diff": max_abs_diff,
        "ours_ms": statistics.median(forward["ours"]),
        "reference_ms": statistics.median(forward["reference"]),
        "shapes": {"input_hw": list(args.input_hw), "spatial_shapes_hw": [list(s) for s in shapes],
                   "N": args.batch, "S": int(value.shape[1]), "Lq": int(value.shape[1]), "M": args.heads,
                   "D": args.head_dim, "L": len(shapes), "P": args.points, "dtype": "float32"},
        "machine": None,                                                    # filled below
        "threads": args.threads,
        "repeats": args.repeats,
        "forward_ms": forward,
        "ours": "zsp_ros.model.msda.ms_deform_attn ('auto'): without autograd = ms_deform_attn_gather "
                "(embedding_bag, all levels at once); with autograd = the grid_sample reference",
        "reference": "zsp_ros.model.msda.ms_deform_attn_reference (grid_sample per level, Mask2Former's scheme)",
    }

    if not args.no_backward:
        # "ours" (auto) = the reference when gradients are needed; "gather" shows why (its backward)
        train_impls = dict(impls, gather=ms_deform_attn_gather)
        train: dict[str, list[float]] = {k: [] for k in train_impls}
        grads = {}
        for rep in range(max(1, args.repeats // 2) + 1):                     # first round = warm-up
            for name, fn in train_impls.items():
                inputs = [t.clone().requires_grad_(True) for t in (value, locations, weights)]

                def step():
                    for t in inputs:
                        t.grad = None
                    out = fn(inputs[0], spatial, starts, inputs[1], inputs[2])
                    out.backward(torch.ones_like(out))

                elapsed = _time_ms(step)
                if rep > 0:
                    train[name].append(elapsed)
                grads[name] = [t.grad for t in inputs]
        result["train_ms"] = train
        result["train_ours_ms"] = statistics.median(train["ours"])
        result["train_reference_ms"] = statistics.median(train["reference"])
        result["train_gather_ms"] = statistics.median(train["gather"])
        result["train_speedup"] = result["train_reference_ms"] / result["train_ours_ms"]
        result["train_max_abs_grad_diff_gather_vs_reference"] = {
            name: float((a - b).abs().max()) for name, a, b in zip(("value", "locations", "weights"),
                                                                    grads["gather"], grads["reference"])}
        # bilinear sampling has a gradient kink at integer pixel coordinates: points within fp32
        # rounding of one may take the other corner pair in either implementation
        loc_gather, loc_ref = grads["gather"][1], grads["reference"][1]
        result["train_location_grad_entries_off_by_1e-3_of_max"] = int(
            ((loc_gather - loc_ref).abs() > 1e-3 * loc_ref.abs().max()).sum())
        result["train_location_grad_entries"] = loc_ref.numel()

    result["load_average_1_5_15min"] = {"before": list(load_before), "after": list(os.getloadavg())}
    result["provenance"] = provenance()
    result["machine"] = result["provenance"]["machine"]
    write_json(args.out, result)
    print(f"msda {shapes} Lq={result['shapes']['Lq']} M={args.heads} D={args.head_dim} P={args.points}, "
          f"{args.threads} threads: ours {result['ours_ms']:.1f} ms, reference {result['reference_ms']:.1f} ms, "
          f"speedup {result['speedup']:.2f}x, max |diff| {max_abs_diff:.2e}")
    if "train_speedup" in result:
        print(f"  forward+backward: ours {result['train_ours_ms']:.1f} ms (= grid_sample path), reference "
              f"{result['train_reference_ms']:.1f} ms, gather with embedding_bag backward "
              f"{result['train_gather_ms']:.1f} ms")
    print(f"wrote {args.out}")
    return 0
