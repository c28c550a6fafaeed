"""The phrasing rewrite's settings (`PhrasingConfig`) and where they are read from (config/phrasing.yaml).

What each rule does, and why, is said in zsp_ros/semantics/phrasing.py; the values were chosen on the
development parts of the names files in config/vocabulary/ only (README, "Adding categories by name").
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from zsp_ros.utils.config_files import find_config

CONFIG_FILE = "phrasing.yaml"


@dataclass(frozen=True)
class PhrasingConfig:
    """Parameters of the rewrite (defaults: config/phrasing.yaml; the rules: zsp_ros/semantics/phrasing.py).

    enabled: rewrite at all (False: the wrapped encoder's vectors unchanged).
    min_similarity: text-encoder cosine a stem-sharing vocabulary word needs (word form rule).
    min_stem: letters of common prefix that count as a shared stem (or the whole vocabulary word).
    colour_max_delta_e: CIE76 ΔE within which the nearest labelled table colour must lie.
    colour_neighbours: labelled table colours that vote for a colour word.
    raw_weight: weight of the typed name's embedding in the blend, in [0, 1).
    colour_survey: add the xkcd colour survey's names to the colour table (config/colours/xkcd.tsv).
    refuse_unknown_names: `PhrasingEncoder.refusal` refuses a name none of whose words (after the
        rewrite) is a vocabulary word. Right for a kit whose generator only recombines the words of
        its names (the synthetic kit, MiniLM); wrong for CLIP kits, whose text space places novel
        nouns ("cow", "giraffe") usefully: their manifests turn phrasing off or set this false.
    lexicon: rule 3, WordNet synonyms and hypernyms (zsp_ros/semantics/lexicon.py), when WordNet's
        files are installed (off otherwise).
    drop_unknown_words: a name that, rewritten, holds a colour word and another word of the
        vocabulary is encoded as those words alone ("blue round thing" -> "blue circle"): words no
        rule grounds only move the embedding off the names the generator was trained on. Off for
        image-aligned encoders (CLIP reads "dog on a sofa" as more than "dog").
    definitions: rule 3 also reads a noun's WordNet definition for the shape it describes ("tile": a
        flat thin rectangular slab -> square), when synonyms and hypernyms name no kit word.
    refuse_colour_only_names: with ``refuse_unknown_names``, also refuse a name whose only kit words
        are colours ("red heart"): the kit cannot know the shape, so the name would label objects of
        that colour of any shape. Off by default: such a name is added with a warning
        (`PhrasingEncoder.caution`); on, the user is asked to name a shape the kit knows.
    refuse_other_kinds: with ``refuse_unknown_names`` and WordNet, refuse a name whose only kit words are
        colours and one of whose other words is, by WordNet, a kind of what the kit's words are kinds of
        (`PhraseNormaliser.kit_kind`: "shape" for the shapes world) but none of them: "red heart" (heart
        is-a shape, and no kit word is a heart) names a shape the kit cannot draw.
    refuse_other_colours: with ``refuse_unknown_names``, also refuse a name whose only colour word is a
        basic colour term that is none of the kit's colours ("black square" in a kit without black),
        for a kit whose names use at least two colours.
    refuse_role_clashes: with ``refuse_unknown_names``, also refuse a name whose kit words mix a word
        the kit's names use only for things with one they use only for stuff ("gray star": gray is only
        ever a background texture's colour; zsp_ros.semantics.word_roles).
    typos: rule 4, a word one edit away from exactly one vocabulary word and no English word is taken
        as a misspelling of it ("yelow" -> yellow, "sqaure" -> square). It needs the lexicon (WordNet):
        without one, "pear" could not be told from a misspelt "bear", so the rule stays silent.
    """
    enabled: bool = True
    min_similarity: float = 0.5
    min_stem: int = 4
    colour_max_delta_e: float = 25.0
    colour_neighbours: int = 5
    raw_weight: float = 0.0
    colour_survey: bool = True
    refuse_unknown_names: bool = True
    lexicon: bool = True
    drop_unknown_words: bool = True
    definitions: bool = True
    refuse_colour_only_names: bool = False
    refuse_other_kinds: bool = True
    refuse_other_colours: bool = True
    refuse_role_clashes: bool = True
    typos: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):                  # a YAML/JSON value of the wrong type: say which setting
            value, kind = getattr(self, f.name), {"bool": bool, "int": int, "float": (int, float)}[str(f.type)]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ValueError(f"phrasing setting {f.name} must be of type {f.type}, got {value!r}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [-1, 1], got {self.min_similarity}")
        if self.min_stem < 2:
            raise ValueError(f"min_stem must be >= 2, got {self.min_stem}")
        if self.colour_max_delta_e < 0:
            raise ValueError(f"colour_max_delta_e must be >= 0, got {self.colour_max_delta_e}")
        if self.colour_neighbours < 1:
            raise ValueError(f"colour_neighbours must be >= 1, got {self.colour_neighbours}")
        if not 0.0 <= self.raw_weight < 1.0:
            raise ValueError(f"raw_weight must be in [0, 1), got {self.raw_weight}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PhrasingConfig:
        """Build from a mapping; an unknown key is an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown phrasing settings {unknown}; known: {sorted(known)}")
        return cls(**dict(values))


def default_config_path() -> Path | None:
    """config/phrasing.yaml of the source checkout, else of the installed share; None if neither."""
    return find_config(CONFIG_FILE)


def load_phrasing_config(path: str | Path | None = None, **overrides: Any) -> PhrasingConfig:
    """The phrasing settings: the ``phrasing`` section of ``path`` (default `default_config_path`;
    the built-in defaults when there is no file), then ``overrides`` (e.g. a kit's manifest values)."""
    values: dict[str, Any] = {}
    path = Path(path) if path is not None else default_config_path()
    if path is not None:
        document = yaml.safe_load(path.read_text()) or {}
        if not isinstance(document, dict) or not isinstance(document.get("phrasing", {}), dict):
            raise ValueError(f"{path}: expected a mapping with a 'phrasing' mapping")
        values.update(document.get("phrasing", {}))
    values.update(overrides)
    return PhrasingConfig.from_mapping(values)

