"""Sine positional encoding of a feature map (DETR / Mask2Former ``PositionEmbeddingSine``, normalised)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """2-D sine/cosine encoding of pixel positions; no parameters.

    Row index i (1-based) is mapped to ``i / H * scale`` (likewise columns), then each coordinate
    gets ``num_pos_feats`` channels of interleaved sin/cos at geometric frequencies
    ``temperature ** (2*(k//2) / num_pos_feats)``. Output channels: [y (num_pos_feats), x (num_pos_feats)].
    Equal to Mask2Former's ``PositionEmbeddingSine(num_pos_feats, normalize=True)`` with no padding mask.
    """

    def __init__(self, *, num_pos_feats: int, temperature: float = 10000.0, scale: float = 2 * math.pi) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, C, H, W] (only its shape, device and batch size are used) -> float32 [B, 2*num_pos_feats, H, W]."""
        b, _, h, w = x.shape
        eps = 1e-6
        y_pos = torch.arange(1, h + 1, dtype=torch.float32, device=x.device) / (h + eps) * self.scale
        x_pos = torch.arange(1, w + 1, dtype=torch.float32, device=x.device) / (w + eps) * self.scale
        k = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        freqs = self.temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / self.num_pos_feats)
        y_angles = y_pos[:, None] / freqs                                    # [H, F]
        x_angles = x_pos[:, None] / freqs                                    # [W, F]
        y_enc = torch.stack((y_angles[:, 0::2].sin(), y_angles[:, 1::2].cos()), -1).flatten(1)
        x_enc = torch.stack((x_angles[:, 0::2].sin(), x_angles[:, 1::2].cos()), -1).flatten(1)
        pos = torch.cat((y_enc[:, None, :].expand(h, w, -1), x_enc[None, :, :].expand(h, w, -1)), -1)
        return pos.permute(2, 0, 1).unsqueeze(0).expand(b, -1, -1, -1)
