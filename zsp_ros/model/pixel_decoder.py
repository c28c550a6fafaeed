"""Mask2Former's pixel decoder: deformable-attention encoder over 3 levels + FPN lateral path.

Parameter names match detectron2's ``sem_seg_head.pixel_decoder.*``: ``input_proj.{i}.{0: conv,
1: GroupNorm}`` (i = 0 is the coarsest level), ``transformer.level_embed``,
``transformer.encoder.layers.{j}.{self_attn,norm1,linear1,linear2,norm2}``, ``mask_features``,
and per extra FPN level k = 1.. ``adapter_k`` (1×1 lateral conv + GN) and ``layer_k`` (3×3 conv + GN + ReLU).

Mask2Former builds padding masks and "valid ratios" but they are all zeros / ones for its inputs;
this module leaves them out (same numbers). There is no dropout (Mask2Former's R50 config uses 0.0).
"""
from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zsp_ros.model.backbone import Conv2dNorm, make_norm
from zsp_ros.model.msda import MSDeformAttn
from zsp_ros.model.position_encoding import PositionEmbeddingSine


def c2_xavier_fill(conv: nn.Conv2d) -> None:
    """Caffe2 Xavier init (fvcore ``c2_xavier_fill``): Kaiming uniform with a=1, bias 0."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class MSDeformAttnEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention, then FFN (ReLU), each with residual + LayerNorm."""

    def __init__(self, *, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor) -> Tensor:
        """src, pos: [B, S, C]; reference_points [1, S, L, 2]; returns [B, S, C]."""
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index))
        return cast(Tensor, self.norm2(src + self.linear2(F.relu(self.linear1(src)))))


class MSDeformAttnEncoder(nn.Module):
    """A stack of :class:`MSDeformAttnEncoderLayer` (``layers.{j}``)."""

    def __init__(self, *, num_layers: int, d_model: int, d_ffn: int, n_levels: int, n_heads: int,
                 n_points: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MSDeformAttnEncoderLayer(d_model=d_model, d_ffn=d_ffn, n_levels=n_levels, n_heads=n_heads,
                                     n_points=n_points)
            for _ in range(num_layers))

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index)
        return src


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Flattens the levels, adds level embeddings to the positions and runs the encoder."""

    def __init__(self, *, d_model: int, nhead: int, num_encoder_layers: int, dim_feedforward: int,
                 num_feature_levels: int, enc_n_points: int) -> None:
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.encoder = MSDeformAttnEncoder(num_layers=num_encoder_layers, d_model=d_model, d_ffn=dim_feedforward,
                                           n_levels=num_feature_levels, n_heads=nhead, n_points=enc_n_points)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def reference_points(shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
        """Pixel centres of every level, (x, y) in [0, 1]: float32 [1, S, L, 2] (same for each level L)."""
        points = []
        for h, w in shapes:
            ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
            xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            points.append(torch.stack((grid_x.flatten(), grid_y.flatten()), -1))
        return torch.cat(points, 0)[None, :, None, :].expand(1, -1, len(shapes), 2)

    def forward(self, srcs: list[Tensor], pos_embeds: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """srcs, pos_embeds: per level [B, C, H_l, W_l] -> (memory [B, S, C], [(H_l, W_l)])."""
        shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flat = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1)
                              for i, p in enumerate(pos_embeds)], 1)
        device = src_flat.device
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
        starts = [0]
        for h, w in shapes[:-1]:
            starts.append(starts[-1] + h * w)
        level_start_index = torch.as_tensor(starts, dtype=torch.long, device=device)
        memory: Tensor = self.encoder(src_flat, pos_flat, self.reference_points(shapes, device), spatial_shapes,
                                      level_start_index)
        return memory, shapes


class MSDeformAttnPixelDecoder(nn.Module):
    """Multi-scale pixel decoder (Mask2Former ``MSDeformAttnPixelDecoder``).

    Args:
        in_channels: channels of each backbone feature, e.g. {"res2": 256, ..., "res5": 2048}.
        in_strides: stride of each backbone feature, e.g. {"res2": 4, ..., "res5": 32}.
        transformer_in_features: the features fed to the deformable encoder (R50: res3, res4, res5).
        conv_dim: encoder width and FPN width (R50: 256). mask_dim: mask-feature channels (R50: 256).
        norm: norm of the FPN convs ("GN" in Mask2Former). nheads, n_points, dim_feedforward,
        enc_layers: deformable encoder (R50: 8, 4, 1024, 6). common_stride: stride of the mask
        features (4).
    """

    def __init__(self, *, in_channels: dict[str, int], in_strides: dict[str, int],
                 transformer_in_features: list[str], conv_dim: int, mask_dim: int, norm: str = "GN",
                 nheads: int, n_points: int, dim_feedforward: int, enc_layers: int,
                 common_stride: int = 4) -> None:
        super().__init__()
        unknown = [f for f in transformer_in_features if f not in in_channels]
        if unknown:
            raise ValueError(f"transformer_in_features {unknown} not among the inputs {sorted(in_channels)}")
        self.in_features = sorted(in_channels, key=lambda k: in_strides[k])            # fine -> coarse
        self.transformer_in_features = sorted(transformer_in_features, key=lambda k: in_strides[k])
        num_levels = len(self.transformer_in_features)
        # coarsest level first, as Mask2Former
        projections = [nn.Sequential(nn.Conv2d(in_channels[f], conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
                       for f in self.transformer_in_features[::-1]]
        for proj in projections:
            conv = cast(nn.Conv2d, proj[0])
            nn.init.xavier_uniform_(conv.weight, gain=1)
            assert conv.bias is not None  # built with bias=True
            nn.init.zeros_(conv.bias)
        self.input_proj = nn.ModuleList(projections)
        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim, nhead=nheads, num_encoder_layers=enc_layers, dim_feedforward=dim_feedforward,
            num_feature_levels=num_levels, enc_n_points=n_points)
        self.pe_layer = PositionEmbeddingSine(num_pos_feats=conv_dim // 2)
        self.mask_dim = mask_dim
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        c2_xavier_fill(self.mask_features)
        self.maskformer_num_feature_levels = 3
        min_stride = min(in_strides[f] for f in self.transformer_in_features)
        self.num_fpn_levels = int(round(math.log2(min_stride) - math.log2(common_stride)))
        for index, feature in enumerate(self.in_features[:self.num_fpn_levels]):
            adapter = Conv2dNorm(in_channels=in_channels[feature], out_channels=conv_dim, kernel_size=1,
                                 bias=norm == "", norm=make_norm(norm, conv_dim))
            layer = Conv2dNorm(in_channels=conv_dim, out_channels=conv_dim, kernel_size=3, padding=1,
                               bias=norm == "", norm=make_norm(norm, conv_dim), activation=F.relu)
            c2_xavier_fill(adapter)
            c2_xavier_fill(layer)
            self.add_module(f"adapter_{index + 1}", adapter)
            self.add_module(f"layer_{index + 1}", layer)

    def forward(self, features: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Backbone features -> (mask_features, multi_scale_features).

        Args:
            features: {"res2": [B, C2, H/4, W/4], ..., "res5": [B, C5, H/32, W/32]} float32.
        Returns:
            mask_features: [B, mask_dim, H/4, W/4];
            multi_scale_features: 3 maps [B, conv_dim, h, w], coarsest first (strides 32, 16, 8 for R50).
        Runs in float32 even under autocast (Mask2Former does the same: deformable attention in fp16
        loses whole pixels of sampling precision).
        """
        device_type = next(iter(features.values())).device.type
        with torch.autocast(device_type=device_type, enabled=False):          # fp32 throughout, as Mask2Former
            return self._forward_fp32(features)

    def _forward_fp32(self, features: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        srcs: list[Tensor] = []
        pos: list[Tensor] = []
        for index, name in enumerate(self.transformer_in_features[::-1]):
            x = features[name].float()
            srcs.append(self.input_proj[index](x))
            pos.append(self.pe_layer(x))
        memory: Tensor
        shapes: list[tuple[int, int]]
        memory, shapes = self.transformer(srcs, pos)
        b = memory.shape[0]
        outs: list[Tensor] = []
        for chunk, (h, w) in zip(torch.split(memory, [h * w for h, w in shapes], dim=1), shapes):
            outs.append(chunk.transpose(1, 2).reshape(b, -1, h, w))
        for index in reversed(range(self.num_fpn_levels)):                  # top-down: coarse -> fine
            name = self.in_features[index]
            lateral = getattr(self, f"adapter_{index + 1}")(features[name].float())
            top_down = F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(getattr(self, f"layer_{index + 1}")(lateral + top_down))
        return cast(Tensor, self.mask_features(outs[-1])), outs[:self.maskformer_num_feature_levels]
