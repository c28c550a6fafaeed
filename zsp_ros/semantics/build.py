"""`build_text_encoder(name, **kw)`: the one place that maps an encoder name to its class.

The registry is a plain dict of builder functions; each imports its (possibly heavy) module
only when called. Names are the short kind ("minilm", "clip", "file", "attributes") or an
identifier an artifact recorded ("minilm-l6-v2", "clip-vit-b-16").

Keyword arguments go to the encoder's constructor:
- minilm: device, batch_size
- clip: weights (local file), model_name, templates, device, batch_size
- file: path
- attributes: vocabularies={group: [entries]}, or names=[...] to infer "colour shape" groups
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zsp_ros.semantics.attribute_encoder import AttributeEncoder
from zsp_ros.semantics.base import TextEncoder
from zsp_ros.semantics.clip_encoder import ClipTextEncoder
from zsp_ros.semantics.file_encoder import FileEncoder
from zsp_ros.semantics.minilm_encoder import MiniLMEncoder


def _minilm(**kw: Any) -> TextEncoder:
    return MiniLMEncoder(**kw)


def _clip(**kw: Any) -> TextEncoder:
    return ClipTextEncoder(**kw)


def _clip_b16(**kw: Any) -> TextEncoder:
    return _clip(**{"model_name": "ViT-B-16", **kw})


def _file(**kw: Any) -> TextEncoder:
    return FileEncoder(**kw)


def _attributes(**kw: Any) -> TextEncoder:
    if "names" in kw:
        names = kw.pop("names")
        if "vocabularies" in kw:
            raise ValueError("give attributes either vocabularies or names, not both")
        return AttributeEncoder.from_names(names, **kw)
    return AttributeEncoder(**kw)


TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    "minilm": _minilm,
    "minilm-l6-v2": _minilm,
    "all-minilm-l6-v2": _minilm,
    "clip": _clip,
    "clip-vit-b-16": _clip_b16,
    "file": _file,
    "attributes": _attributes,
}


def build_text_encoder(name: str, **kw: Any) -> TextEncoder:
    """Build the encoder registered as ``name`` (case-insensitive) with keyword arguments ``kw``.

    An identifier of the form "file:..." or "attributes:..." selects the kind before the colon.
    """
    key = name.lower().split(":", 1)[0] if name.lower().startswith(("file:", "attributes:")) \
        else name.lower()
    if key not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; choose from {', '.join(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[key](**kw)
