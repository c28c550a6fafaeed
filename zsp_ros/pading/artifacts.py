"""File formats of a PADing run's generator, heads and text embeddings (safetensors).

Written by offline stages 2-3 (`zsp train pading`) and by the checkpoint importer; read by
the kit builder. Metadata values are JSON-encoded strings (safetensors metadata is str -> str).

- head.safetensors / head_online.safetensors: ``weight`` [K+1, E] and ``bias`` [K+1]
  float32; row i is category i of the run's category list, the last row "no object".
- generator.safetensors: the generator's state dict; metadata ``kind`` (a key of
  GENERATOR_KINDS), ``config`` (its constructor kwargs) and whatever the writer adds.
- text_embeddings.safetensors: ``embeddings`` [K, Ds] float32; metadata ``names`` (JSON list
  of the K category names, in row order) and ``identifier`` (the text encoder's, plain str).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from zsp_ros.model.gmmn_generator import GMMNGenerator
from zsp_ros.model.primitive_generator import PrimitiveGenerator
from zsp_ros.utils.provenance import atomic_write_bytes

# generator.safetensors metadata "kind" -> the class rebuilt from its "config"
GENERATOR_KINDS: dict[str, type[nn.Module]] = {"primitive": PrimitiveGenerator, "gmmn": GMMNGenerator}


def save_head(path: Path, head: nn.Linear, *, metadata: dict[str, Any]) -> None:
    """head.safetensors: weight [K+1, E], bias [K+1] float32; metadata values JSON-encoded."""
    tensors = {"weight": head.weight.detach().cpu().float().contiguous(),
               "bias": head.bias.detach().cpu().float().contiguous()}
    atomic_write_bytes(path, save(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()}))


def save_generator(path: Path, generator: nn.Module, *, metadata: dict[str, Any]) -> None:
    """generator.safetensors: the state dict; metadata "kind" and "config" (constructor kwargs)."""
    kind = "primitive" if isinstance(generator, PrimitiveGenerator) else "gmmn"
    meta = {"kind": kind, "config": generator.config, **metadata}
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={k: json.dumps(v) for k, v in meta.items()}))


def load_generator(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a generator saved by `save_generator` -> (module in eval mode, metadata)."""
    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        state = {k: f.get_tensor(k) for k in f.keys()}
    generator = GENERATOR_KINDS[meta["kind"]](**meta["config"])
    generator.load_state_dict(state)
    return generator.eval(), meta


def save_text_embeddings(path: Path, embeddings: torch.Tensor, *, names: list[str], identifier: str) -> None:
    """text_embeddings.safetensors: embeddings [K, Ds] float32, row i = ``names[i]``."""
    atomic_write_bytes(path, save({"embeddings": embeddings.float().contiguous()},
                                  metadata={"names": json.dumps(names), "identifier": identifier}))
