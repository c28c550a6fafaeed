"""`build_text_encoder(name, **kw)`: the one place that maps an encoder name to its class.

The registry is a plain dict of builder functions; each imports its (possibly heavy) module
only when called. Names are the short kind ("minilm", "clip", "file", "attributes") or an
identifier an artifact recorded ("minilm-l6-v2", "clip-vit-b-16").

Keyword arguments go to the encoder's constructor:
- minilm: device, batch_size
- clip: weights (local file), model_name, templates, device, batch_size
- file: path
- attributes: vocabularies={group: [entries]}, or names=[...] to infer "colour shape" groups

Any kind also takes ``phrasing``: a mapping with ``vocabulary`` (the names the kit's generator was
trained on, i.e. its seen category names) and optionally any setting of config/phrasing.yaml; the
encoder is then wrapped in a `PhrasingEncoder` that rewrites a new name's words toward that
vocabulary before encoding (zsp_ros/semantics/phrasing.py). A kit asks for it through its manifest
(``text_encoder.kwargs.phrasing``), which the registry passes here; without ``vocabulary`` there is
nothing to rewrite toward and the plain encoder is returned. For an image-aligned encoder (CLIP) the
rewrite does not refuse names with no kit word and uses no lexicon (``refuse_unknown_names`` and
``lexicon`` default to false there).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zsp_ros.semantics.attribute_encoder import AttributeEncoder
from zsp_ros.semantics.base import TextEncoder
from zsp_ros.semantics.clip_encoder import ClipTextEncoder
from zsp_ros.semantics.file_encoder import FileEncoder
from zsp_ros.semantics.minilm_encoder import MiniLMEncoder
from zsp_ros.semantics.phrasing_config import load_phrasing_config
from zsp_ros.semantics.phrasing_encoder import PhrasingEncoder


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


def with_phrasing(encoder: TextEncoder, phrasing: Mapping[str, Any] | None) -> TextEncoder:
    """``encoder`` wrapped in a `PhrasingEncoder` for ``phrasing`` = {"vocabulary": [names], "stuff": [the
    vocabulary's stuff names], <settings>}
    (settings over config/phrasing.yaml); ``encoder`` itself when phrasing is None, has no vocabulary
    or is disabled."""
    if phrasing is None:
        return encoder
    if not isinstance(phrasing, Mapping):
        raise ValueError(f"phrasing must be a mapping, got {type(phrasing).__name__}")
    settings = dict(phrasing)
    vocabulary = settings.pop("vocabulary", None)
    stuff = settings.pop("stuff", None) or ()
    if isinstance(stuff, str) or not all(isinstance(n, str) for n in stuff):
        raise ValueError(f"phrasing 'stuff' must be a list of category names, got {stuff!r}")
    if getattr(encoder, "image_aligned", False):
        # CLIP places a novel noun ("cow", "giraffe") near what looks like it: that is what PADing's zero-shot
        # rests on, so a name with no word of the kit's names is not refused unless the kit says so
        settings.setdefault("refuse_unknown_names", False)
        settings.setdefault("lexicon", False)        # and it knows what "pentagram" looks like
        settings.setdefault("drop_unknown_words", False)   # and what "on a sofa" adds to "dog"
    config = load_phrasing_config(**settings)
    if not vocabulary or not config.enabled:
        return encoder
    return PhrasingEncoder(base=encoder, vocabulary=list(vocabulary), config=config, stuff=list(stuff))


def build_text_encoder(name: str, *, phrasing: Mapping[str, Any] | None = None, **kw: Any) -> TextEncoder:
    """Build the encoder registered as ``name`` (case-insensitive) with keyword arguments ``kw``,
    wrapped for ``phrasing`` (`with_phrasing`; module docstring).

    An identifier of the form "file:..." or "attributes:..." selects the kind before the colon.
    """
    key = name.lower().split(":", 1)[0] if name.lower().startswith(("file:", "attributes:")) \
        else name.lower()
    if key not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; choose from {', '.join(TEXT_ENCODERS)}")
    return with_phrasing(TEXT_ENCODERS[key](**kw), phrasing)
