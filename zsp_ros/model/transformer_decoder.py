"""Mask2Former's transformer decoder with masked cross-attention (``MultiScaleMaskedTransformerDecoder``).

Parameter names match detectron2's ``sem_seg_head.predictor.*``:
``transformer_{self,cross}_attention_layers.{i}.{self_attn|multihead_attn}.{in_proj_weight,in_proj_bias,
out_proj.*}`` + ``.norm``, ``transformer_ffn_layers.{i}.{linear1,linear2,norm}``, ``decoder_norm``,
``query_feat``, ``query_embed``, ``level_embed``, ``input_proj.{0,1,2}`` (identity when the input width
equals ``hidden_dim``), ``class_embed`` and ``mask_embed.layers.{0,1,2}``.

``class_embed`` (the classifier, a :class:`ClassifierHead`) is held here so that checkpoint keys
match, but this module never calls it: its forward returns raw per-layer mask logits and query
embeddings; :class:`zsp_ros.model.mask2former.Mask2Former` applies the current classifier.

Masked attention: a query attends only where its previous mask prediction, resized to the level,
has sigmoid >= 0.5; a query whose mask is empty everywhere attends everywhere (as Mask2Former).
The mask is a pure boolean expression (no data-dependent indexing), so it exports to ONNX.
"""
from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zsp_ros.model.classifier import ClassifierHead
from zsp_ros.model.position_encoding import PositionEmbeddingSine


class SelfAttentionLayer(nn.Module):
    """Self-attention among queries + residual + LayerNorm (post- or pre-norm)."""

    def __init__(self, *, d_model: int, nhead: int, normalize_before: bool) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, tgt: Tensor, query_pos: Tensor) -> Tensor:
        """tgt, query_pos: [B, Q, C] -> [B, Q, C]."""
        x = self.norm(tgt) if self.normalize_before else tgt
        q = x + query_pos
        out = tgt + self.self_attn(q, q, x, need_weights=False)[0]
        return out if self.normalize_before else cast(Tensor, self.norm(out))


class CrossAttentionLayer(nn.Module):
    """Queries attend to one feature level (optionally masked) + residual + LayerNorm."""

    def __init__(self, *, d_model: int, nhead: int, normalize_before: bool) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, tgt: Tensor, memory: Tensor, memory_mask: Tensor | None, pos: Tensor,
                query_pos: Tensor) -> Tensor:
        """tgt, query_pos [B, Q, C]; memory, pos [B, HW, C]; memory_mask bool [B*heads, Q, HW]
        (True = may not attend) -> [B, Q, C]."""
        x = self.norm(tgt) if self.normalize_before else tgt
        attended = self.multihead_attn(x + query_pos, memory + pos, memory, attn_mask=memory_mask,
                                       need_weights=False)[0]
        out = tgt + attended
        return out if self.normalize_before else cast(Tensor, self.norm(out))


class FFNLayer(nn.Module):
    """Linear -> ReLU -> Linear + residual + LayerNorm."""

    def __init__(self, *, d_model: int, dim_feedforward: int, normalize_before: bool) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, tgt: Tensor) -> Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        out = tgt + self.linear2(F.relu(self.linear1(x)))
        return out if self.normalize_before else cast(Tensor, self.norm(out))


class MLP(nn.Module):
    """``num_layers`` Linear layers (``layers.{i}``) with ReLU between them."""

    def __init__(self, *, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Learnable queries refined by ``dec_layers`` layers, round-robin over the 3 feature levels.

    Args:
        in_channels: channels of the pixel decoder's multi-scale features.
        num_classes: K; ``class_embed`` is Linear(hidden_dim, K + 1).
        hidden_dim: E (R50: 256). num_queries: Q (100). nheads: 8. dim_feedforward: 2048.
        dec_layers: number of decoder layers L (R50: 9; Mask2Former's config writes 10 = L + 1).
        pre_norm: pre-LayerNorm layers (Mask2Former: False). mask_dim: channels of the mask
        features. enforce_input_project: 1×1 input projection even if in_channels == hidden_dim.
    """

    num_feature_levels = 3

    def __init__(self, *, in_channels: int, num_classes: int, hidden_dim: int, num_queries: int, nheads: int,
                 dim_feedforward: int, dec_layers: int, pre_norm: bool, mask_dim: int,
                 enforce_input_project: bool) -> None:
        super().__init__()
        if dec_layers < 1:
            raise ValueError(f"dec_layers must be >= 1, got {dec_layers}")
        self.pe_layer = PositionEmbeddingSine(num_pos_feats=hidden_dim // 2)
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(d_model=hidden_dim, nhead=nheads, normalize_before=pre_norm)
            for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(d_model=hidden_dim, nhead=nheads, normalize_before=pre_norm)
            for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(d_model=hidden_dim, dim_feedforward=dim_feedforward, normalize_before=pre_norm)
            for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(self.num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
                nn.init.kaiming_uniform_(conv.weight, a=1)
                assert conv.bias is not None  # built with bias=True
                nn.init.zeros_(conv.bias)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())
        self.class_embed = ClassifierHead(embed_dim=hidden_dim, num_classes=num_classes)
        self.mask_embed = MLP(input_dim=hidden_dim, hidden_dim=hidden_dim, output_dim=mask_dim, num_layers=3)

    def prediction_heads(self, output: Tensor, mask_features: Tensor) -> tuple[Tensor, Tensor]:
        """output [B, Q, E] -> (mask logits [B, Q, H/4, W/4], normalised embeddings [B, Q, E])."""
        embeds: Tensor = self.decoder_norm(output)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(embeds), mask_features)
        return masks, embeds

    def attention_mask(self, mask_logits: Tensor, size: tuple[int, int]) -> Tensor:
        """Mask logits [B, Q, h, w] -> bool [B*heads, Q, H_l*W_l], True = may not attend.

        Rows that would block every position are cleared (the query then attends everywhere).
        """
        resized = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
        blocked = resized.sigmoid().flatten(2) < 0.5                          # [B, Q, HW]
        blocked = blocked & ~blocked.all(-1, keepdim=True)
        b, q, hw = blocked.shape
        return blocked.unsqueeze(1).expand(b, self.num_heads, q, hw).reshape(b * self.num_heads, q, hw).detach()

    def forward(self, multi_scale_features: list[Tensor], mask_features: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Run the decoder.

        Args:
            multi_scale_features: 3 maps [B, in_channels, h_l, w_l], coarsest first.
            mask_features: [B, mask_dim, H/4, W/4].
        Returns:
            (mask logits, embeddings): two lists of L + 1 tensors, [B, Q, H/4, W/4] and [B, Q, E];
            index 0 is predicted from the learnable queries alone, index L after the last layer.
        """
        if len(multi_scale_features) != self.num_feature_levels:
            raise ValueError(f"expected {self.num_feature_levels} feature levels, got {len(multi_scale_features)}")
        srcs: list[Tensor] = []
        poses: list[Tensor] = []
        sizes: list[tuple[int, int]] = []
        for i, x in enumerate(multi_scale_features):
            sizes.append((int(x.shape[-2]), int(x.shape[-1])))
            poses.append(self.pe_layer(x).flatten(2).transpose(1, 2))                         # [B, HW, E]
            srcs.append((self.input_proj[i](x).flatten(2) + self.level_embed.weight[i][None, :, None])
                        .transpose(1, 2))
        b = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(b, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(b, -1, -1)

        masks, embeds = self.prediction_heads(output, mask_features)
        all_masks: list[Tensor] = [masks]
        all_embeds: list[Tensor] = [embeds]
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            attn_mask = self.attention_mask(masks, sizes[level])
            output = self.transformer_cross_attention_layers[i](output, srcs[level], attn_mask, poses[level],
                                                                query_pos)
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)
            masks, embeds = self.prediction_heads(output, mask_features)
            all_masks.append(masks)
            all_embeds.append(embeds)
        return all_masks, all_embeds
