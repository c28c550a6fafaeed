"""PADing's semantic-related / semantic-unrelated disentanglement (module shapes as released).

    feature [N, E] --related encoder-->   r [N, E]   (aligned with the semantics)
    feature [N, E] --unrelated encoder--> u [N, E]   (pushed towards N(0, I))
    cat(r, u) [N, 2E] --decoder--> reconstruction [N, E]          (L1 to the feature)
    relation(r [N, E], semantic [C, Ds]) -> scores [N, C] in (0, 1)

Encoders: Linear -> Linear -> LeakyReLU(0.2) -> Dropout. Decoder: Linear(2E, E) -> LeakyReLU
-> Dropout -> Linear(E, E) -> LeakyReLU -> Dropout. Relation network: every (feature,
semantic) pair concatenated -> Linear -> ReLU -> Linear -> Sigmoid.
"""
from __future__ import annotations

from typing import cast

import torch
from torch import nn


class SemanticEncoder(nn.Module):
    """[N, E] -> [N, E]: Linear, Linear, LeakyReLU(0.2), Dropout."""

    def __init__(self, *, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim),
                                 nn.LeakyReLU(0.2), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.net(x))


class FeatureDecoder(nn.Module):
    """cat(related, unrelated) [N, 2E] -> reconstructed feature [N, E]."""

    def __init__(self, *, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.LeakyReLU(0.2),
                                 nn.Dropout(dropout), nn.Linear(embed_dim, embed_dim),
                                 nn.LeakyReLU(0.2), nn.Dropout(dropout))

    def forward(self, related: torch.Tensor, unrelated: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.net(torch.cat([related, unrelated], dim=-1)))


class RelationNetwork(nn.Module):
    """Scores every feature against every semantic vector: [N, F] x [C, Ds] -> [N, C] in (0, 1)."""

    def __init__(self, *, feature_dim: int, semantic_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(feature_dim + semantic_dim, feature_dim)
        self.fc2 = nn.Linear(feature_dim, 1)

    def forward(self, features: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        """features [N, F], semantic [C, Ds] -> scores [N, C].

        fc1 of the concatenated pair is computed as W_f f + W_s s + b (the same linear map
        without materialising the N x C concatenations).
        """
        f_dim = features.shape[1]
        w_f, w_s = self.fc1.weight[:, :f_dim], self.fc1.weight[:, f_dim:]
        hidden = (features @ w_f.t()).unsqueeze(1) + (semantic @ w_s.t() + self.fc1.bias).unsqueeze(0)
        return torch.sigmoid(self.fc2(torch.relu(hidden))).squeeze(-1)          # [N, C]


class Disentangler(nn.Module):
    """The four modules of PADing's disentanglement.

    Args:
        embed_dim: E, the feature dimension.
        semantic_dim: dimension of the semantic vectors the relation network compares with
            (E in PADing, which uses the generator's projected semantics).
        dropout: dropout of the encoders and the decoder (0.1 for panoptic).
    """

    def __init__(self, *, embed_dim: int = 256, semantic_dim: int | None = None,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.config = dict(embed_dim=embed_dim, semantic_dim=semantic_dim or embed_dim, dropout=dropout)
        self.related = SemanticEncoder(embed_dim=embed_dim, dropout=dropout)
        self.unrelated = SemanticEncoder(embed_dim=embed_dim, dropout=dropout)
        self.decoder = FeatureDecoder(embed_dim=embed_dim, dropout=dropout)
        self.relation = RelationNetwork(feature_dim=embed_dim, semantic_dim=semantic_dim or embed_dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features [N, E] -> (related [N, E], unrelated [N, E], reconstruction [N, E])."""
        related = self.related(features)
        unrelated = self.unrelated(features)
        return related, unrelated, self.decoder(related, unrelated)
