"""Precomputed name -> vector tables (e.g. word2vec vectors for the instance setting).

Accepted files (the table is read once, at construction):
- ``.safetensors``: a 2-D tensor ``embeddings`` [N, D] with the names as a JSON list in the
  file metadata key ``names``; or one 1-D tensor per name (tensor key = name).
- ``.npz``: arrays ``names`` (str [N]) and ``embeddings`` [N, D]; or one 1-D array per name.
- ``.json``: ``{"names": [...], "embeddings": [[...], ...]}`` or ``{"name": [floats], ...}``.

Lookup is exact first, then case- and whitespace-insensitive. A name the table lacks is an
error that lists the missing names.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from zsp_ros.semantics.base import TextEncoder


def _norm_key(name: str) -> str:
    return " ".join(name.lower().split())


class FileEncoder(TextEncoder):
    """Vectors looked up in a precomputed table.

    Args:
        path: the table file (.safetensors, .npz or .json; format in the module docstring).

    Attributes:
        identifier: ``file:<stem>:<first 12 hex of the file's sha256>``.
        names: the table's names in file order.
    """

    def __init__(self, *, path: str | os.PathLike) -> None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"embedding table not found: {path}")
        loaders = {".safetensors": _load_safetensors, ".npz": _load_npz, ".json": _load_json}
        if path.suffix not in loaders:
            raise ValueError(f"{path}: unsupported table format {path.suffix!r}; "
                             f"use one of {', '.join(loaders)}")
        names, vectors = loaders[path.suffix](path)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(names) or not names:
            raise ValueError(f"{path}: expected N names and an [N, D] table, got {len(names)} names "
                             f"and shape {vectors.shape}")
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: duplicate names in the table")
        self.path = path
        self.names = list(names)
        self.dim = int(vectors.shape[1])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self.identifier = f"file:{path.stem}:{digest}"
        self._table = vectors
        self._exact = {name: i for i, name in enumerate(names)}
        self._loose = {_norm_key(name): i for i, name in enumerate(names)}

    def _encode(self, names: list[str]) -> np.ndarray:
        rows, missing = [], []
        for name in names:
            i = self._exact.get(name, self._loose.get(_norm_key(name)))
            if i is None:
                missing.append(name)
            rows.append(i)
        if missing:
            raise KeyError(f"{self.path} has no vector for {missing}")
        return self._table[rows]


def _load_safetensors(path: Path) -> tuple[list[str], np.ndarray]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        keys = list(f.keys())
        meta = f.metadata() or {}
        if "embeddings" in keys and "names" in meta:
            return list(json.loads(meta["names"])), f.get_tensor("embeddings")
        return keys, np.stack([f.get_tensor(k).reshape(-1) for k in keys]) if keys else np.zeros((0, 0))


def _load_npz(path: Path) -> tuple[list[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        if "names" in data.files and "embeddings" in data.files:
            return [str(n) for n in data["names"]], data["embeddings"]
        keys = list(data.files)
        return keys, np.stack([data[k].reshape(-1) for k in keys]) if keys else np.zeros((0, 0))


def _load_json(path: Path) -> tuple[list[str], np.ndarray]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if "names" in data and "embeddings" in data:
        return [str(n) for n in data["names"]], np.asarray(data["embeddings"], dtype=np.float32)
    keys = list(data)
    return keys, np.asarray([data[k] for k in keys], dtype=np.float32) if keys else np.zeros((0, 0))
