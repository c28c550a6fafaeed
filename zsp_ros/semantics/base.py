"""The one interface every text encoder follows (docs/CONTRACTS.md, "Text encoders").

A text encoder turns category names into fixed semantic vectors:
``encode(names) -> np.float32 [N, D]``, every row L2-normalised. ``identifier`` names the
encoder and its weights (recorded in every artifact built from its vectors, so that vectors
of two different encoders are never mixed), ``dim`` is D.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np


class TextEncoder(abc.ABC):
    """Category names -> L2-normalised float32 vectors [N, D].

    ``image_aligned``: the text space was trained against images (CLIP), so a novel noun lands near
    what looks like it; a plain sentence encoder (MiniLM) places words by how they are used in text.
    """

    identifier: str
    dim: int
    image_aligned: bool = False

    @abc.abstractmethod
    def _encode(self, names: list[str]) -> np.ndarray:
        """Raw vectors [N, D] (any float dtype, not necessarily normalised) for checked names."""

    def encode(self, names: Sequence[str]) -> np.ndarray:
        """Encode ``names`` (non-empty strings) into float32 [N, D], every row of unit L2 norm.

        An empty list gives an empty [0, D] array.
        """
        names = check_names(names)
        if not names:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._encode(names), dtype=np.float32)
        if vectors.shape != (len(names), self.dim):
            raise RuntimeError(f"{self.identifier}: produced vectors of shape {vectors.shape}, "
                               f"expected {(len(names), self.dim)}")
        return l2_normalise(vectors, what=self.identifier, names=names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(identifier={self.identifier!r}, dim={self.dim})"


def check_names(names: Sequence[str]) -> list[str]:
    """Return ``names`` as a list, or raise naming the first entry that is not a non-empty string."""
    if isinstance(names, str):
        raise TypeError(f"names must be a list of strings, got the single string {names!r}")
    out = list(names)
    for i, name in enumerate(out):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"names[{i}] = {name!r} is not a non-empty string")
    return out


def l2_normalise(vectors: np.ndarray, *, what: str = "vectors",
                 names: Sequence[str] | None = None) -> np.ndarray:
    """Divide every row of float32 [N, D] by its L2 norm; a zero or non-finite row is an error."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] <= 1e-12)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        label = repr(names[i]) if names is not None else f"row {i}"
        raise ValueError(f"{what}: the vector of {label} is zero or not finite; cannot normalise")
    return (vectors / norms).astype(np.float32)
