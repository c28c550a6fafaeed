"""The replaceable classifier over query embeddings: ``ClassifierHead = nn.Linear(E, K + 1)``."""
from __future__ import annotations

from torch import Tensor, nn


class ClassifierHead(nn.Linear):
    """Linear classifier of query embeddings into K categories + no-object (last index).

    A plain ``nn.Linear`` (parameters ``weight`` [K+1, E], ``bias`` [K+1]) so that, mounted at
    ``sem_seg_head.predictor.class_embed``, its checkpoint keys are detectron2's.
    """

    def __init__(self, *, embed_dim: int, num_classes: int) -> None:
        if embed_dim < 1 or num_classes < 0:
            raise ValueError(f"need embed_dim >= 1 and num_classes >= 0, got {embed_dim}, {num_classes}")
        super().__init__(embed_dim, num_classes + 1)

    @property
    def embed_dim(self) -> int:
        """E, the input embedding width."""
        return self.in_features

    @property
    def num_classes(self) -> int:
        """K, the number of categories (the output has K + 1 logits)."""
        return self.out_features - 1

    def forward(self, embeds: Tensor) -> Tensor:
        """embeds float [..., E] -> logits [..., K + 1] (last = no-object)."""
        return super().forward(embeds)
