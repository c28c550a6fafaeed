"""The GMMN baseline generator (ZS3Net-style): [semantic ⊕ noise] -> MLP -> fake embedding.

    cat(semantic [N, Ds], noise [N, Dz]) -> Linear -> LeakyReLU(0.2) -> Dropout -> Linear -> [N, E]

No primitives, no noise inside the network; trained with MMD only in the GMMN ablation.
Layer sizes and initialisation (xavier-uniform weights, biases 0.01) as PADing's released
GMMNnetwork.
"""
from __future__ import annotations

from typing import cast

import torch
from torch import nn


class GMMNGenerator(nn.Module):
    """Semantic embeddings [N, Ds] -> fake query embeddings [N, E] (float32).

    Args:
        semantic_dim: Ds.
        embed_dim: E.
        noise_dim: Dz, width of the Gaussian noise concatenated to the semantic vector.
        hidden_dim: hidden width; 0 makes the generator a single Linear layer.
        dropout: dropout after the hidden activation.
    """

    def __init__(self, *, semantic_dim: int, embed_dim: int = 256, noise_dim: int = 300,
                 hidden_dim: int = 256, dropout: float = 0.4) -> None:
        super().__init__()
        self.config = dict(semantic_dim=semantic_dim, embed_dim=embed_dim, noise_dim=noise_dim,
                           hidden_dim=hidden_dim, dropout=dropout)
        self.semantic_dim = semantic_dim
        self.embed_dim = embed_dim
        self.noise_dim = noise_dim
        if hidden_dim > 0:
            self.net = nn.Sequential(nn.Linear(semantic_dim + noise_dim, hidden_dim),
                                     nn.LeakyReLU(0.2), nn.Dropout(dropout),
                                     nn.Linear(hidden_dim, embed_dim))
        else:
            self.net = nn.Sequential(nn.Linear(semantic_dim + noise_dim, embed_dim))
        for module in self.net:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.constant_(module.bias, 0.01)

    def noise_shape(self, n: int) -> tuple[int, int]:
        """Shape of the noise for ``n`` samples: [n, noise_dim]."""
        return (n, self.noise_dim)

    def sample_noise(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Fresh standard normal noise [n, noise_dim] on the module's device."""
        device = cast(nn.Linear, self.net[0]).weight.device
        return torch.randn(self.noise_shape(n), generator=generator, device=device)

    def forward(self, semantic: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """semantic [N, Ds] (+ optional noise [N, noise_dim]) -> fake embeds [N, E]."""
        if semantic.ndim != 2 or semantic.shape[1] != self.semantic_dim:
            raise ValueError(f"semantic must be [N, {self.semantic_dim}], got {tuple(semantic.shape)}")
        n = semantic.shape[0]
        if noise is None:
            noise = self.sample_noise(n)
        elif tuple(noise.shape) != self.noise_shape(n):
            raise ValueError(f"noise must be {list(self.noise_shape(n))}, got {list(noise.shape)}")
        return cast(torch.Tensor, self.net(torch.cat([semantic, noise], dim=1)))
