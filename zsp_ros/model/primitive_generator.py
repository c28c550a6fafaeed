"""PADing's primitive generator: semantic embedding -> fake query embedding (He et al., CVPR 2023).

    semantic [N, Ds] --Linear--> query [N, E]
    3 x post-norm transformer decoder layer (one query token per sample):
        self-attention (over the single token) -> add & norm
        cross-attention to P learnable primitives (keys = values = primitives) -> add
        + fresh Gaussian noise N(0, noise_std^2)                  (every layer, every call)
        -> norm -> FFN (ReLU) -> add & norm
    final LayerNorm -> fake embedding [N, E]

Each sample is a sequence of one token that attends to the primitives independently (as in
the released code, where the memory bank is repeated over the batch); here the primitive
keys and values are projected once and shared, the same computation without the copies.
Dropout acts on attention weights and on the residual branches, as in torch's
MultiheadAttention / DETR layers.
"""
from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F


class _PrimitiveAttention(nn.Module):
    """Multi-head cross-attention of single-token queries [N, E] to shared primitives [P, E]."""

    def __init__(self, *, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = dropout
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, primitives: torch.Tensor) -> torch.Tensor:
        """query [N, E], primitives [P, E] -> [N, E]; keys/values projected once for all queries."""
        n, e = query.shape
        h, d = self.num_heads, e // self.num_heads
        q = self.q_proj(query).view(n, h, d).transpose(0, 1)                 # [h, N, d]
        k = self.k_proj(primitives).view(-1, h, d).permute(1, 2, 0)          # [h, d, P]
        v = self.v_proj(primitives).view(-1, h, d).transpose(0, 1)           # [h, P, d]
        weights = torch.softmax(torch.bmm(q, k) / math.sqrt(d), dim=-1)      # [h, N, P]
        weights = F.dropout(weights, self.dropout, self.training)
        out = torch.bmm(weights, v).transpose(0, 1).reshape(n, e)            # [N, E]
        return cast(torch.Tensor, self.out_proj(out))


class _SingleTokenSelfAttention(nn.Module):
    """Multi-head self-attention over a sequence of one token: softmax over one key is 1, so
    the output is out_proj(v_proj(x)) with dropout acting on that unit attention weight (the
    query and key projections cannot change the result and are left out)."""

    def __init__(self, *, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = dropout
        nn.init.xavier_uniform_(self.v_proj.weight)
        nn.init.zeros_(self.v_proj.bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, E] -> [N, E]."""
        n, e = x.shape
        v = self.v_proj(x).view(n, self.num_heads, e // self.num_heads)
        weight = F.dropout(v.new_ones(n, self.num_heads, 1), self.dropout, self.training)
        return cast(torch.Tensor, self.out_proj((weight * v).reshape(n, e)))


class PrimitiveDecoderLayer(nn.Module):
    """One post-norm decoder layer with noise injected after the cross-attention residual."""

    def __init__(self, *, embed_dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = _SingleTokenSelfAttention(embed_dim=embed_dim, num_heads=num_heads,
                                                   dropout=dropout)
        self.cross_attn = _PrimitiveAttention(embed_dim=embed_dim, num_heads=num_heads, dropout=dropout)
        self.linear1 = nn.Linear(embed_dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.norm3 = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, primitives: torch.Tensor, noise: torch.Tensor | None
                ) -> torch.Tensor:
        """x [N, E], primitives [P, E], noise [N, E] or None -> [N, E]."""
        x = self.norm1(x + self.dropout(self.self_attn(x)))
        x = x + self.dropout(self.cross_attn(x, primitives))
        if noise is not None:
            x = x + noise
        x = self.norm2(x)
        x = self.norm3(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return x


class PrimitiveGenerator(nn.Module):
    """Semantic embeddings [N, Ds] -> fake query embeddings [N, E] (float32, LayerNorm'd).

    Args:
        semantic_dim: Ds, the text encoder's dimension (512 CLIP, 384 MiniLM, 300 word2vec).
        embed_dim: E, the segmenter's query dimension (256 for R50).
        num_primitives: learnable primitives (keys and values of the cross-attention).
        num_layers: decoder layers.
        num_heads: attention heads.
        ffn_dim: hidden width of each layer's feed-forward block.
        dropout: dropout probability (attention weights and residual branches).
        noise_std: standard deviation of the Gaussian noise added in every layer; 0 disables it.
    """

    def __init__(self, *, semantic_dim: int, embed_dim: int = 256, num_primitives: int = 400,
                 num_layers: int = 3, num_heads: int = 8, ffn_dim: int = 1024, dropout: float = 0.1,
                 noise_std: float = 1.0) -> None:
        super().__init__()
        for label, value in (("semantic_dim", semantic_dim), ("embed_dim", embed_dim),
                             ("num_primitives", num_primitives), ("num_layers", num_layers),
                             ("ffn_dim", ffn_dim)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        self.config = dict(semantic_dim=semantic_dim, embed_dim=embed_dim,
                           num_primitives=num_primitives, num_layers=num_layers, num_heads=num_heads,
                           ffn_dim=ffn_dim, dropout=dropout, noise_std=noise_std)
        self.semantic_dim = semantic_dim
        self.embed_dim = embed_dim
        self.num_layers = num_layers
        self.noise_std = noise_std
        self.semantic_proj = nn.Linear(semantic_dim, embed_dim)
        self.primitives = nn.Parameter(torch.randn(num_primitives, embed_dim))  # as nn.Embedding init
        self.layers = nn.ModuleList(
            PrimitiveDecoderLayer(embed_dim=embed_dim, num_heads=num_heads, ffn_dim=ffn_dim,
                                  dropout=dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(embed_dim)

    def noise_shape(self, n: int) -> tuple[int, int, int]:
        """Shape of the noise one call for ``n`` samples uses: [num_layers, n, E]."""
        return (self.num_layers, n, self.embed_dim)

    def sample_noise(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Fresh noise [num_layers, n, E] ~ N(0, noise_std^2) on the module's device.

        Drawn sample-major, so a seeded stream gives every sample the same noise however the
        samples are split into calls.
        """
        device = self.primitives.device
        noise = torch.randn(n, self.num_layers, self.embed_dim, generator=generator, device=device)
        return noise.transpose(0, 1) * self.noise_std

    def project(self, semantic: torch.Tensor) -> torch.Tensor:
        """The initial query of each sample: semantic [N, Ds] -> [N, E] (also PADing's alignment target)."""
        if semantic.ndim != 2 or semantic.shape[1] != self.semantic_dim:
            raise ValueError(f"semantic must be [N, {self.semantic_dim}], got {tuple(semantic.shape)}")
        return cast(torch.Tensor, self.semantic_proj(semantic))

    def generate(self, query: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Decode projected queries [N, E] into fake embeddings [N, E].

        ``noise`` [num_layers, N, E] is added as given; None draws fresh noise (none when
        noise_std == 0).
        """
        n = query.shape[0]
        if noise is None:
            noise = self.sample_noise(n) if self.noise_std > 0 else None
        elif tuple(noise.shape) != self.noise_shape(n):
            raise ValueError(f"noise must be {list(self.noise_shape(n))}, got {list(noise.shape)}")
        x = query
        for i, layer in enumerate(self.layers):
            x = layer(x, self.primitives, None if noise is None else noise[i])
        return cast(torch.Tensor, self.norm(x))

    def forward(self, semantic: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """semantic [N, Ds] float32 (+ optional noise [num_layers, N, E]) -> fake embeds [N, E]."""
        return self.generate(self.project(semantic), noise)
