"""Multi-scale deformable attention (Deformable DETR, as used by Mask2Former's pixel decoder).

Two interchangeable cores share one contract, the contract of Mask2Former's
``ms_deform_attn_core_pytorch`` and of TensorRT's ``MultiscaleDeformableAttnPlugin_TRT``:

    core(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        value               float [N, S, M, D]   S = sum_l H_l*W_l flattened levels, M heads, D dims/head
        spatial_shapes      int64 [L, 2]         (H_l, W_l) of each level
        level_start_index   int64 [L]            offset of level l in S (0, H_0*W_0, ...)
        sampling_locations  float [N, Lq, M, L, P, 2]  (x, y) normalised: 0 = left/top edge of the
                                                 level's first pixel, 1 = right/bottom edge of its last
        attention_weights   float [N, Lq, M, L, P]     (already softmaxed over L*P)
        -> float [N, Lq, M*D]

Sampling is bilinear with zero padding and ``align_corners=False`` (pixel centres at
(i + 0.5) / size), exactly ``F.grid_sample(..., padding_mode="zeros", align_corners=False)``.

- :func:`ms_deform_attn_gather`: all levels at once; the 4 bilinear corners of every sampling
  point become one weighted bag of rows of ``value`` (bordered with zeros) and
  ``F.embedding_bag(mode="sum")`` does the gather-and-weighted-sum in a single fused kernel, so the
  [N*M, D, Lq, L*P] tensor of sampled values is never materialised.
- :func:`ms_deform_attn_reference`: one ``grid_sample`` per level, written the way Mask2Former's
  reference is written; for benchmarking, for ONNX export without a plugin, and for training.
- :func:`ms_deform_attn` (the default, ``"auto"``): the gather without autograd, the reference
  when gradients are needed (its backward is the faster one on CPU).

:class:`MSDeformAttn` calls its core from one place, ``self.core``, so the export code can swap in
a TensorRT plugin node (``set_msda_core``).
"""
from __future__ import annotations

import math
from typing import Callable, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MSDACore = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def _check_inputs(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                  sampling_locations: Tensor, attention_weights: Tensor) -> None:
    if value.dim() != 4:
        raise ValueError(f"value must be [N, S, M, D], got shape {tuple(value.shape)}")
    n, s, m, _ = value.shape
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError("sampling_locations must be [N, Lq, M, L, P, 2], got shape "
                         f"{tuple(sampling_locations.shape)}")
    ln = sampling_locations.shape[3]
    if spatial_shapes.shape != (ln, 2):
        raise ValueError(f"spatial_shapes must be [L={ln}, 2], got shape {tuple(spatial_shapes.shape)}")
    if level_start_index.shape != (ln,):
        raise ValueError(f"level_start_index must be [L={ln}], got shape {tuple(level_start_index.shape)}")
    if sampling_locations.shape[0] != n or sampling_locations.shape[2] != m:
        raise ValueError(f"sampling_locations {tuple(sampling_locations.shape)} disagrees with value "
                         f"{tuple(value.shape)} in N or M")
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(f"attention_weights must be {tuple(sampling_locations.shape[:-1])}, got "
                         f"{tuple(attention_weights.shape)}")
    # no data-dependent checks in export; torch.jit.is_tracing is untyped and not re-exported by torch.jit
    if torch.jit.is_tracing() or torch.compiler.is_compiling():  # type: ignore[attr-defined,no-untyped-call]
        return
    if int(spatial_shapes.prod(1).sum()) != s:
        raise ValueError(f"spatial_shapes {spatial_shapes.tolist()} cover {int(spatial_shapes.prod(1).sum())} "
                         f"positions but value has S={s}")


def _zero_bordered_table(value: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
    """value [N, S, M, D] -> [N, S', M, D]: every level gets a one-pixel border of zeros, S' = sum (H+2)(W+2)."""
    n, _, m, d = value.shape
    padded = [F.pad(level.reshape(n, h, w, m * d), (0, 0, 1, 1, 1, 1)).reshape(n, (h + 2) * (w + 2), m, d)
              for level, (h, w) in zip(torch.split(value, [h * w for h, w in shapes], dim=1), shapes)]
    return torch.cat(padded, 1)


def ms_deform_attn_gather(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                          sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """Deformable attention core as one fused gather (see module docstring for the contract).

    Each level of ``value`` gets a border of zeros one pixel wide and coordinates are clamped to that
    border, so every bilinear corner is a valid row and zero padding needs no masks: a point at
    most one pixel outside blends with the zero border, one further out samples only zeros (with
    zero gradient, as ``grid_sample``). Every (batch n, query q, head m) is then one bag of 4*L*P
    weighted rows of the bordered table [N*S'*M, D], row ``(n*S' + s)*M + m``, and a single
    ``F.embedding_bag(mode="sum")`` sums them without materialising the sampled values.
    Differentiable (embedding_bag's own backward), but see :func:`ms_deform_attn` for training.
    ``level_start_index`` is implied by ``spatial_shapes`` and not read.
    """
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    n, _, m, d = value.shape
    _, lq, _, ln, p, _ = sampling_locations.shape
    bags, k = n * lq * m, ln * p
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    table = _zero_bordered_table(value, shapes)
    rows_total = table.shape[0] * table.shape[1] * m
    if table.shape[1] >= 2 ** 24:
        raise ValueError(f"spatial_shapes {shapes}: over 2**24 positions per image, beyond this core's float indexing")

    # half-precision locations lose whole pixels at these sizes: do the geometry in >= fp32
    dtype = torch.promote_types(sampling_locations.dtype, torch.float32)
    device = value.device

    def per_point(per_level: list[tuple[int, ...]]) -> Tensor:                # -> [1, L*P, len(tuple)]
        return torch.tensor(per_level, dtype=dtype, device=device).repeat_interleave(p, 0).view(1, k, -1)

    size_xy = per_point([(w, h) for h, w in shapes])                          # level size (W, H)
    stride_xy = per_point([(1, w + 2) for _, w in shapes])                    # steps in the bordered level
    starts = per_point([(sum((hh + 2) * (ww + 2) for hh, ww in shapes[:i]),) for i in range(ln)]).view(1, k)
    # pixel coordinates (centres at integers, align_corners=False), clamped to the zero border
    xy = torch.addcmul(torch.tensor(-0.5, dtype=dtype, device=device),
                       sampling_locations.reshape(bags, k, 2).to(dtype), size_xy)   # [B, L*P, 2]
    xy = torch.minimum(xy.clamp_min(-1.0), size_xy)
    xy0 = xy.floor()
    frac = xy - xy0                                                           # (fx, fy)

    # row of corner (y0, x0) in the bordered table [N, S', M] (exact in float: S' < 2**24), then
    # the other three corners by fixed steps
    position = torch.addcmul(starts, xy0[..., 0] + 1, stride_xy[..., 0]).addcmul_(xy0[..., 1] + 1,
                                                                                  stride_xy[..., 1])
    base = (torch.arange(n, device=device).view(n, 1, 1) * (table.shape[1] * m)
            + torch.arange(m, device=device).view(1, 1, m)).expand(n, lq, m).reshape(bags, 1, 1)
    row00 = (position.to(torch.int64) * m).view(bags, 1, k) + base
    row_step = stride_xy[0, :, 1].to(torch.int64) * m                         # one image row down
    steps = torch.stack((torch.zeros_like(row_step), torch.full_like(row_step, m), row_step, row_step + m))
    rows = (row00 + steps.view(1, 4, k)).view(bags, 4 * k).clamp_(0, rows_total - 1)

    linear = torch.stack((1.0 - frac, frac), 1)                               # [B, 2 corners, L*P, (x, y)]
    wy = linear[..., 1] * attention_weights.reshape(bags, 1, k).to(dtype)    # [B, 2, L*P]
    weights = (wy.unsqueeze(2) * linear[..., 0].unsqueeze(1)).view(bags, 4 * k)   # (y0x0, y0x1, y1x0, y1x1)
    out = F.embedding_bag(rows, table.reshape(rows_total, d), per_sample_weights=weights.to(value.dtype),
                          mode="sum")
    return out.view(n, lq, m * d)


def ms_deform_attn(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                   sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """Deformable attention core, the default ("auto").

    Without autograd (inference) it is :func:`ms_deform_attn_gather`, 2–4× faster than the
    grid_sample reference at R50 COCO shapes on this CPU. When gradients are needed it is
    :func:`ms_deform_attn_reference`, whose ``grid_sampler_2d_backward`` beat embedding_bag's
    sort-based backward for the synthetic-world model (a full training step: 0.56 vs 0.58 s with
    1 thread, and clearly faster with 2 threads on a loaded machine); at R50 COCO shapes with 1
    thread the gather's backward is the faster one (``zsp bench msda``, ``train_*``), so a CPU
    training run at that size may prefer ``set_msda_core(model, "embedding_bag")``. Both give the
    same values (fp32 rounding apart).
    """
    if torch.is_grad_enabled() and (value.requires_grad or sampling_locations.requires_grad
                                    or attention_weights.requires_grad):
        return ms_deform_attn_reference(value, spatial_shapes, level_start_index, sampling_locations,
                                        attention_weights)
    return ms_deform_attn_gather(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)


def ms_deform_attn_reference(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                             sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """Deformable attention core, one ``grid_sample`` per level (Mask2Former's reference scheme).

    Same contract as :func:`ms_deform_attn`; ``level_start_index`` is unused (levels are split by
    their sizes). Materialises the sampled values [N*M, D, Lq, L*P] before the weighted sum.
    """
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    n, _, m, d = value.shape
    _, lq, _, ln, p, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    per_level = torch.split(value, [h * w for h, w in shapes], dim=1)
    grids = sampling_locations * 2.0 - 1.0                                   # grid_sample wants [-1, 1]
    sampled: list[Tensor] = []
    for level, (h, w) in enumerate(shapes):
        # [N, HW, M, D] -> [N*M, D, H, W]
        image = per_level[level].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))                   # [N*M, D, Lq, P]
    # [N, Lq, M, L, P] -> [N*M, 1, Lq, L*P]
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, ln * p)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)       # [N*M, D, Lq]
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


CORES: dict[str, MSDACore] = {"auto": ms_deform_attn, "embedding_bag": ms_deform_attn_gather,
                              "grid_sample": ms_deform_attn_reference}


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (parameter names as Mask2Former/Deformable DETR).

    Parameters: ``sampling_offsets`` Linear(C, M*L*P*2), ``attention_weights`` Linear(C, M*L*P),
    ``value_proj`` Linear(C, C), ``output_proj`` Linear(C, C). The core is ``self.core`` (a
    function with the contract in the module docstring), default :func:`ms_deform_attn` ("auto").
    """

    def __init__(self, *, d_model: int, n_levels: int, n_heads: int, n_points: int,
                 core: str = "auto") -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if core not in CORES:
            raise ValueError(f"unknown core {core!r}; choose from {sorted(CORES)}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.core: MSDACore = CORES[core]
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR init: offsets start on a ring of 8 directions, scaled 1..P per point."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        ring = torch.stack([angles.cos(), angles.sin()], -1)
        ring = ring / ring.abs().max(-1, keepdim=True).values                 # on the unit square
        grid = ring.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: Tensor, reference_points: Tensor, input_flatten: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor) -> Tensor:
        """Attend from each query to P points around its reference point on every level.

        Args:
            query: float [N, Lq, C] (with positional embedding added).
            reference_points: float [N or 1, Lq, L, 2] (x, y) in [0, 1], same convention as the
                sampling locations.
            input_flatten: float [N, S, C] the flattened levels.
            spatial_shapes: int64 [L, 2] (H, W); level_start_index: int64 [L].
        Returns:
            float [N, Lq, C].
        """
        n, lq, _ = query.shape
        s = input_flatten.shape[1]
        m, ln, p = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(input_flatten).view(n, s, m, self.d_model // m)
        offsets = self.sampling_offsets(query).view(n, lq, m, ln, p, 2)
        weights = self.attention_weights(query).view(n, lq, m, ln * p).softmax(-1).view(n, lq, m, ln, p)
        # offsets are in pixels of their level: divide by (W, H)
        normaliser = torch.stack((spatial_shapes[:, 1], spatial_shapes[:, 0]), -1).to(query.dtype)
        normaliser = normaliser.view(1, 1, 1, ln, 1, 2)
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser
        out = self.core(value, spatial_shapes, level_start_index, locations, weights)
        return cast(Tensor, self.output_proj(out))


def set_msda_core(model: nn.Module, core: str | MSDACore) -> int:
    """Set the core of every :class:`MSDeformAttn` in ``model``; returns how many were changed.

    ``core`` is a name in :data:`CORES` or a function with the core contract (e.g. one that emits
    a TensorRT plugin node when traced).
    """
    if isinstance(core, str):
        if core not in CORES:
            raise ValueError(f"unknown core {core!r}; choose from {sorted(CORES)}")
        core = CORES[core]
    changed = 0
    for module in model.modules():
        if isinstance(module, MSDeformAttn):
            module.core = core
            changed += 1
    return changed
