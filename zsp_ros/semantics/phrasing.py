# Over 400 lines: the three rewrite rules share one vocabulary, cache and position logic; colours and the lexicon live in their own modules.
"""Understand a user's phrasing: rewrite the words of a new category name toward words the kit knows.

Why. A kit's generator turns a text embedding into fake visual embeddings; it was trained on the
embeddings of the kit's own category names only, so it is reliable near those and nowhere else.
Measured on the synthetic world (results/vocabulary.md, before this module): a colour synonym
("crimson triangle" for "red triangle") kept 0.11 of the unseen PQ because the offline text encoder
(all-MiniLM-L6-v2) does not know colour words: its nearest kit word to "crimson" is "purple", to
"navy" "orange" (cosine 0.36-0.60, margins of 0.01-0.07), so the generator put the fakes on another
colour. Inflections ("triangles", "triangular", "star-shaped") were handled better but still lost.

What. `PhraseNormaliser` replaces every word of a name that is not a word of the kit's names (the
*vocabulary*) by a vocabulary word when, and only when, an offline resource (the text encoder, the
colour tables, WordNet) says they mean the same thing; everything else in the name is left as typed:

1. Word form (any vocabulary): a vocabulary word that shares the word's stem (a common prefix of
   ``min_stem`` letters, or the whole vocabulary word: "triangles"/"triangular" -> "triangle",
   "ring-shaped" -> "ring", "dogs" -> "dog") and is the text encoder's nearest such word with cosine
   >= ``min_similarity``. The shared stem is what keeps genuine novel nouns alone: by similarity
   alone "carrot" would become "vegetable" (cosine 0.74) and "skateboard" "surfboard" (0.61) with the
   COCO seen words; neither shares a stem, so both stay.
2. Colour (zsp_ros/semantics/colour_words.py): a colour name of the CSS table or, with
   ``colour_survey``, of the xkcd survey's 949 names becomes the vocabulary colour its
   ``colour_neighbours`` nearest labelled table colours vote for in CIELAB, within
   ``colour_max_delta_e`` ("crimson" -> red, "navy" -> blue, "silver" -> gray); a basic colour term
   is never made another one ("black" stays). A word is read as a colour only where a colour
   adjective of a known thing stands (`PhraseNormaliser.interpret`). A word outside the table that is
   another form of a table name by rule 1 is grounded through it ("goldish" -> gold -> yellow).
3. Lexicon (with ``lexicon`` on and WordNet installed, zsp_ros/semantics/lexicon.py): a word no rule
   above maps is looked up in WordNet: a base form of it that is a base form of a vocabulary word
   ("dotted" -> dot -> "dots"), else, sense by sense in WordNet's order, a synonym or a direct
   hypernym that is (a noun form of) a vocabulary word ("pentagram" is-a star, "disc" is-a circle,
   "hoop" = ring). Only in a name with another kit word: a lone novel noun is a new category, not a
   kind of a known one ("bus" is-a car, "cardboard" is-a paper and "couch" is-a bed in WordNet, and
   COCO's zero-shot splits hold exactly such nouns). Never a relative further up or down the tree
   (hyponyms would name everything under "shape"). A vocabulary colour word reached this way obeys
   the colour rule's position ("cyan heart" stays: cyan is-a blue, but "heart" is no kit word).
   A word before the head noun that WordNet derives from nouns is read through those nouns only
   ("round" -> circle; "pointed" -> point, the sharp end: nothing, where its noun senses said "dot").
   A relative that is another form of a kit word by rule 1 counts ("chessboard" is-a checkerboard ->
   "checks"). With ``definitions``, for a name that still lacks a shape/texture word, the first
   adjective of the word's definition that pertains to a kit noun, or to the noun that exactly one kit
   word's main sense is-a ("tile": a flat thin rectangular slab -> rectangle -> square); a shape the
   definition states comes first ("donut": a small ring-shaped friedcake -> ring). Two or three words
   that WordNet knows as one noun are read as a whole first ("poker chip": a small disk-shaped
   counter -> disk is-a circle, where "chip" alone would be a "check").
   Off by default for image-aligned encoders (CLIP knows what "pentagram" looks like).
4. Typo (with ``typos`` and the lexicon): a word of 4+ letters that is no English word and one edit
   (a letter left out, added, changed, or two swapped) from exactly one vocabulary word ("sqaure").

With ``drop_unknown_words``, a name whose rewrite holds a colour word and another kit word is encoded
as its kit words alone, in the order the kit's names put them ("blue round thing" -> "blue circle",
"brick wall painted green" -> "green bricks"): the words left are ones the generator
never saw, and only move the embedding away from the names it was trained on.

A word kept as typed still reaches the text encoder, so "zebra", "coffee mug" or "hexagon" embed
as before; the rewrite is a no-op for a name whose words are all known (the kit's own names, so
the kit's stored text embeddings are reproduced exactly).

`PhrasingEncoder` wraps the kit's text encoder (same ``identifier`` and ``dim``: the vectors still
live in that encoder's space) and encodes ``(1 - raw_weight) * e(rewritten) + raw_weight * e(typed)``,
re-normalised; `PhrasingEncoder.interpret` says what a name became (for the add response).

The parameters live in config/phrasing.yaml (`load_phrasing_config`); they were chosen on the
development parts of the names files in config/vocabulary/ only (README, "Adding categories by name").
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from zsp_ros.semantics.base import TextEncoder, check_names, l2_normalise
from zsp_ros.semantics.colour_words import BASIC_COLOUR_TERMS, ColourGrounding, build_colour_table
from zsp_ros.semantics.lexicon import Lexicon, find_wordnet
from zsp_ros.semantics.text_words import WORD, words_of
from zsp_ros.semantics.word_roles import WordRoles
from zsp_ros.utils.config_files import find_config

CONFIG_FILE = "phrasing.yaml"
T = TypeVar("T")
_STATED_SHAPE = re.compile(r"\b([a-z]+)-shaped\b|\bin the (?:form|shape) of an? ([a-z]+)")
# two words rewritten to the same kit word are said once: "blue round disc" -> "blue circle", not
# "blue circle circle" (on the dev set the doubled word cost that category half its PQ)
_REPEATED_WORD = re.compile(r"\b(\w+)(?:[\s-]+\1\b)+", re.IGNORECASE)


@dataclass(frozen=True)
class PhrasingConfig:
    """Parameters of the rewrite (defaults: config/phrasing.yaml; meanings: module docstring).

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


def vocabulary_words(names: Sequence[str]) -> list[str]:
    """The sorted word set of ``names`` (`words_of` each)."""
    return sorted({word for name in names for word in words_of(name)})


# ------------------------------------------------------------------------------------- rewriting
@dataclass(frozen=True)
class Replacement:
    """One rewritten word: ``rule`` "form" (score = cosine), "colour" (score = ΔE; ``via``: the table
    colour the word is a form of, when it is not itself a table name) or "lexicon" (score = WordNet
    sense rank; ``via``: the relation, e.g. "pentagram is-a star")."""
    word: str
    replacement: str
    rule: str
    score: float
    via: str = ""

    def describe(self) -> str:
        """Why, in a few words: "crimson is a shade of red", "triangles is a form of triangle",
        "WordNet: pentagram is-a star"."""
        if self.rule == "colour":
            return f"{self.word} is a shade of {self.replacement}" + (f" (as {self.via})" if self.via else "")
        if self.rule == "lexicon":
            return f"WordNet: {self.via}"
        if self.rule == "typo":
            return f"{self.word} is taken as a misspelling of {self.replacement}"
        return f"{self.word} is a form of {self.replacement}"


@dataclass(frozen=True)
class Interpretation:
    """What a name became: ``text`` (the rewritten name, or the name itself when nothing changed),
    the ``replacements`` made, ``unknown``: the words left as typed that are not in the vocabulary,
    ``kit_words``: the words of ``text`` that are vocabulary words, and ``dropped``: the unknown words
    left out of ``text`` (setting ``drop_unknown_words``)."""
    name: str
    text: str
    replacements: tuple[Replacement, ...]
    unknown: tuple[str, ...]
    kit_words: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.replacements) or bool(self.dropped)

    @property
    def explanation(self) -> str:
        """The replacements' reasons, "; "-separated ("" when nothing changed)."""
        reasons = [r.describe() for r in self.replacements]
        if self.dropped:
            reasons.append(f"left out {', '.join(repr(w) for w in self.dropped)} (no word of the kit)")
        return "; ".join(reasons)


def _word_places(names: Sequence[str]) -> dict[str, float]:
    """Word -> its mean place in the names that hold it, 0 = first word .. 1 = last ("red" 0, "circle" 1
    in colour-shape names): the order in which a name's kit words are put back together."""
    places: dict[str, list[float]] = {}
    for name in names:
        words = words_of(name)
        for i, word in enumerate(words):
            places.setdefault(word, []).append(i / (len(words) - 1) if len(words) > 1 else 1.0)
    return {word: sum(p) / len(p) for word, p in places.items()}


def _one_edit_apart(a: str, b: str) -> bool:
    """True when ``b`` is ``a`` with one letter deleted, inserted or replaced, or two adjacent letters
    swapped (optimal string alignment distance 1)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


class PhraseNormaliser:
    """Rewrite names toward a vocabulary (module docstring).

    Args:
        vocabulary: the known names (a kit's category names); their words are the known words.
        embed: words -> L2-normalised float32 [N, D] (the kit's text encoder's ``encode``).
        config: the rule's parameters.
        colour_table: colour name -> sRGB (default: `build_colour_table` per ``config.colour_survey``).
    """

    def __init__(self, *, vocabulary: Sequence[str], embed: Callable[[list[str]], np.ndarray],
                 config: PhrasingConfig | None = None,
                 colour_table: Mapping[str, tuple[int, int, int]] | None = None,
                 lexicon: Lexicon | None = None) -> None:
        self.config = config or PhrasingConfig()
        self.words = vocabulary_words(check_names(vocabulary))
        if not self.words:
            raise ValueError("the phrasing vocabulary has no words")
        self._known = set(self.words)
        self._place = _word_places(vocabulary)     # word -> where it stands in the kit's names, 0 (first) .. 1
        self._embed = embed
        self._vectors: np.ndarray | None = None        # [V, D], embedded on first need
        self.form_rule_problem: str | None = None      # why the word-form rule is off, if it is
        table = build_colour_table(survey=self.config.colour_survey) if colour_table is None else colour_table
        self.colours = ColourGrounding(vocabulary=self.words, table=table,
                                       max_delta_e=self.config.colour_max_delta_e,
                                       neighbours=self.config.colour_neighbours)
        self._cache: dict[tuple[str, bool, bool, bool, bool], Replacement | None] = {}
        if lexicon is None and self.config.lexicon:
            root = find_wordnet()
            lexicon = Lexicon(root) if root is not None else None
        self.lexicon = lexicon if self.config.lexicon else None
        self.lexicon_problem: str | None = None        # why the lexicon rule stopped, if it did
        self._lexicon_targets: dict[str, str] | None = None   # base form -> vocabulary word, built on first need
        self._hypernym_of_kit: dict[str, tuple[str, ...]] | None = None   # noun -> vocabulary words that is-a it
        self._kit_ancestors: dict[str, set[int]] | None = None   # kit word -> its main sense's ancestors
        self._kit_kind: tuple[int | None] | None = None   # (the kit words' common kind's synset,), on first need

    def _stem_candidates(self, word: str, pool: Sequence[str]) -> list[int]:
        """Indices of the ``pool`` words sharing ``word``'s stem (a short pool word must be a whole prefix)."""
        out = []
        for i, known in enumerate(pool):
            need = min(self.config.min_stem, len(known))
            if known != word and word[:need] == known[:need]:
                out.append(i)
        return out

    def _word_vectors(self, words: list[str]) -> np.ndarray | None:
        """The encoder's vectors of ``words``, or None when it cannot embed single words (e.g. an
        attribute encoder that needs a colour and a shape): the word-form rule is then off."""
        if self.form_rule_problem is not None:
            return None
        try:
            vectors = np.asarray(self._embed(words), dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            self.form_rule_problem = f"the text encoder cannot embed single words ({exc})"
            return None
        if vectors.shape[0] != len(words):
            raise ValueError(f"embed returned {vectors.shape[0]} rows for {len(words)} words")
        return vectors

    def _same_word(self, word: str, pool: Sequence[str], pool_vectors: np.ndarray | None = None
                   ) -> tuple[str, float] | None:
        """The ``pool`` word that is another form of ``word`` (shared stem, cosine >= min_similarity;
        the longest one that ``word`` starts with, else the most similar), with its cosine; or None."""
        candidates = self._stem_candidates(word, pool)
        if not candidates:
            return None
        vectors = pool_vectors[candidates] if pool_vectors is not None else \
            self._word_vectors([pool[i] for i in candidates])
        own = self._word_vectors([word])
        if vectors is None or own is None:
            return None
        sims = vectors @ own[0]
        passing = [j for j in range(len(candidates)) if float(sims[j]) >= self.config.min_similarity]
        if not passing:
            return None
        # the base word itself when it is a candidate ("golden" -> gold, not goldenrod), else the most similar
        bases = [j for j in passing if word.startswith(pool[candidates[j]])]
        best = max(bases, key=lambda j: len(pool[candidates[j]])) if bases else max(passing, key=lambda j: float(sims[j]))
        return pool[candidates[best]], float(sims[best])

    def _replace(self, word: str, colour_allowed: bool, in_context: bool = False,
                 modifier: bool = False, shapeless: bool = False) -> Replacement | None:
        """Rules 1-4 for one word (module docstring). ``colour_allowed``: the word stands where a colour
        adjective would; ``in_context``: another word of the name is a kit word (rule 3 needs it);
        ``modifier``: the word stands before the name's head noun (rule 3 reads it as an adjective first);
        ``shapeless``: no other word of the name is a kit word other than a colour (only then does rule 3
        read definitions: they look for the shape a name lacks)."""
        key = (word, colour_allowed, in_context, modifier, shapeless)
        if key in self._cache:
            return self._cache[key]
        found: Replacement | None = None
        colour = self.colours.ground(word) if colour_allowed else None
        if colour is not None:                                    # a table colour: "crimson" -> red
            found = Replacement(word, colour[0], "colour", round(colour[1], 2))
        else:
            if self._vectors is None:
                self._vectors = self._word_vectors(list(self.words))
            form = self._same_word(word, self.words, self._vectors) if self._vectors is not None else None
            if form is not None:                                  # another form: "triangles" -> triangle
                found = Replacement(word, form[0], "form", round(form[1], 3))
            elif colour_allowed and word not in self.colours.names:   # a form of a table colour: "golden" -> gold
                shade = self._same_word(word, self.colours.names)
                colour = self.colours.ground(shade[0]) if shade is not None else None
                if shade is not None and colour is not None:
                    found = Replacement(word, colour[0], "colour", round(colour[1], 2), via=shade[0])
            if found is None and self.lexicon is not None and in_context:  # WordNet: "pentagram" is-a star
                found = self._lexicon_word(word, colour_allowed, modifier, shapeless)
            if found is None and self.config.typos:                       # "sqaure" -> square
                found = self._misspelling(word, colour_allowed)
        self._cache[key] = found
        return found

    def _misspelling(self, word: str, colour_allowed: bool) -> Replacement | None:
        """Rule 4: the one vocabulary word one edit away from ``word`` (a letter left out, added, changed
        or two neighbours swapped: "yelow", "sqaure"), for a word of at least 4 letters that is no colour
        name and no English word by WordNet ("stare" stays, "star" is a kit word). No lexicon, no rule."""
        lexicon = self.lexicon
        if len(word) < 4 or word in self.colours.names or lexicon is None:
            return None
        if self._guarded_lexicon(lambda: bool(lexicon.base_forms(word)
                                                                        or lexicon.adjective_nouns(word))):
            return None
        close = [k for k in self.words if abs(len(k) - len(word)) <= 1 and _one_edit_apart(word, k)
                 and (colour_allowed or not self.is_colour_word(k))]
        return Replacement(word, close[0], "typo", 1.0) if len(close) == 1 else None

    def _lexicon_word(self, word: str, colour_allowed: bool, modifier: bool, shapeless: bool) -> Replacement | None:
        """Rule 3 with its resource guarded (`_guarded_lexicon`)."""
        return self._guarded_lexicon(lambda: self._lexicon_lookup(word, colour_allowed, modifier, shapeless))

    def _guarded_lexicon(self, job: Callable[[], T]) -> T | None:
        """Run a lexicon job; a WordNet database that cannot be read (a corrupt or truncated file) turns
        rule 3 off with the reason in ``lexicon_problem`` and gives None: adds go on without it."""
        try:
            return job()
        except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
            self.lexicon_problem = f"WordNet at {getattr(self.lexicon, 'root', '?')} cannot be read ({exc})"
            self.lexicon = None
            return None

    def _lexicon_target_words(self) -> dict[str, str]:
        """Base form -> vocabulary word, for every vocabulary word's noun forms ("dots" -> dot)."""
        assert self.lexicon is not None
        if self._lexicon_targets is None:
            targets: dict[str, str] = {}
            for known in self.words:
                for form in [known, *self.lexicon.base_forms(known, ("noun",))]:
                    targets.setdefault(form, known)
            self._lexicon_targets = targets
        return self._lexicon_targets

    def _lexicon_target(self, related: str) -> str | None:
        """The vocabulary word that a WordNet word ``related`` is: one of its base forms, or another form
        of it by rule 1 that holds a whole base form of it ("checkerboard", the hypernym of "chessboard",
        holds "check": checks). Rule 1's shorter shared stem is for the user's own words; for a relative
        it let "squab" (a synonym of "dove") become "square"."""
        targets = self._lexicon_target_words()
        if related in targets:
            return targets[related]
        if " " in related or self._vectors is None:
            return None
        form = self._same_word(related, self.words, self._vectors)
        if form is None:
            return None
        return form[0] if any(related.startswith(base) for base, known in targets.items() if known == form[0]) else None

    def _lexicon_lookup(self, word: str, colour_allowed: bool, modifier: bool, shapeless: bool = False
                        ) -> Replacement | None:
        """Rule 3 (module docstring): the vocabulary word that a base form, a synonym or a direct hypernym
        of ``word`` is (`_lexicon_target`); ``score`` = WordNet sense rank, ``via`` = the relation.

        A ``modifier`` that WordNet knows as an adjective derived from nouns is read through those nouns
        only, sense by sense ("round" -> circle; "pointed" -> point, the sharp end, and so nothing: its
        noun senses would read it as point = dot); one without such pointers ("dotted") goes on as a noun."""
        assert self.lexicon is not None
        targets = self._lexicon_target_words()

        def target(related: str) -> str | None:
            known = self._lexicon_target(related)
            return known if known is not None and (colour_allowed or not self.is_colour_word(known)) else None

        if modifier:
            readings = self.lexicon.adjective_nouns(word)
            if any(readings):
                for rank, nouns in enumerate(readings):
                    hit = next((n for n in nouns if target(n) is not None), None)
                    if hit is not None:
                        return Replacement(word, str(target(hit)), "lexicon", float(rank),
                                           via=f"{word} pertains to {hit}")
                return None
        bases = self.lexicon.base_forms(word)
        for base in bases:
            if base in targets and target(base) is not None:
                return Replacement(word, targets[base], "lexicon", 0.0, via=f"base form {base}")
        for base in bases:
            for sense in self.lexicon.senses(base):
                for relation, related in (("synonym", sense.synonyms), ("is-a", sense.hypernyms)):
                    hit = next((w for w in related if w != base and target(w) is not None), None)
                    if hit is not None:
                        return Replacement(word, str(target(hit)), "lexicon", float(sense.rank),
                                           via=f"{base} {relation} {hit}")
        kind = self._kit_kind_synset()
        kind_words = set(self.lexicon.synset_words(kind)) if kind is not None else set()
        # "rectangle": the one kit word that is-a it ("square"); not for a phrase, read through its words
        # instead (WordNet files "dot", a very small circular shape, under "round shape", but not "circle")
        for base in bases if shapeless and " " not in word else ():
            under = self._kit_words_below(base) if base not in kind_words else ()
            if len(under) == 1 and target(under[0]) is not None:
                return Replacement(word, str(target(under[0])), "lexicon", 0.0,
                                   via=f"a {under[0]} is-a {base}, the only kit word that is")
        if self.config.definitions and shapeless:
            for base in bases:
                found = self._definition_reading(word, base, target)
                if found is not None:
                    return found
        return None

    def _definition_reading(self, word: str, base: str, target: Callable[[str], str | None]) -> Replacement | None:
        """Rule 3, last step: the shape the definition of ``base``'s first noun sense gives it: a shape it
        states ("poker chip": a small disk-shaped counter -> disk is-a circle; "life buoy": ... in the
        form of a ring), else the first adjective of the definition that pertains to a noun (its first
        sense with such pointers) that is a base form of a vocabulary word, or the one vocabulary word
        that is-a that noun ("tile": a flat thin rectangular slab -> rectangle -> square, the only kit
        word that is-a rectangle). Adjectives only: a
        definition's nouns say what a thing is made of or used for ("a six-sided polygon" is no triangle)."""
        assert self.lexicon is not None
        gloss = self.lexicon.definition(base)
        for statement in _STATED_SHAPE.finditer(gloss.lower()):   # "disk-shaped", "in the form of a ring"
            stated = statement.group(1) or statement.group(2)
            known = target(stated)
            via = f"{base} is {statement.group(0)}"
            if known is None:
                found = self._lexicon_lookup(stated, False, False)
                known, via = (found.replacement, f"{via} ({found.via})") if found is not None else (None, via)
            if known is not None:
                return Replacement(word, known, "lexicon", 0.0, via=via)
        exact = self._lexicon_target_words()
        for token in words_of(gloss):
            readings = next((nouns for nouns in self.lexicon.adjective_nouns(token) if nouns), ())
            for noun in readings:               # a kit word's own base form, not another form of it
                known = target(noun) if noun in exact else None     # ("medical" -> checkup is no "checks")
                via = f"{base} is {token} ({token} pertains to {noun})"
                if known is None:
                    under = self._kit_words_under().get(noun, ())
                    known = target(under[0]) if len(under) == 1 else None
                    via = f"{base} is {token} ({token} pertains to {noun}; a {known} is-a {noun})"
                if known is not None:
                    return Replacement(word, known, "lexicon", 0.0, via=via)
        return None

    def _kit_words_under(self) -> dict[str, tuple[str, ...]]:
        """WordNet noun -> the vocabulary words whose first (most frequent) sense is-a that noun directly.
        A kit word is read through `_main_forms` (a plural through its singular)."""
        assert self.lexicon is not None
        if self._hypernym_of_kit is None:
            under: dict[str, list[str]] = {}
            for known in self.words:
                for form in self._main_forms(known):
                    for sense in self.lexicon.senses(form)[:1]:     # its main sense: "stripe" is-a variety
                        for hypernym in sense.hypernyms:                # only in its fourth sense
                            under.setdefault(hypernym, [])
                            if known not in under[hypernym]:
                                under[hypernym].append(known)
            self._hypernym_of_kit = {h: tuple(k) for h, k in under.items()}
        return self._hypernym_of_kit

    def _main_forms(self, known: str) -> list[str]:
        """The WordNet lemmas a vocabulary word is read through: its noun base forms other than itself when
        it has any (the lemma "stripes" is first a grade insignia, "stripe" a band of colour), else itself."""
        assert self.lexicon is not None
        forms = self.lexicon.base_forms(known, ("noun",))
        return [f for f in forms if f != known] or [known]

    def _kit_words_below(self, noun: str) -> tuple[str, ...]:
        """The vocabulary words whose main sense is, at any height, a kind of ``noun``'s main sense ("square"
        below "quadrilateral" and "rectangle"; "triangle" and "square" below "polygon"), read through
        `_main_forms`."""
        assert self.lexicon is not None
        offset = self.lexicon.first_sense(noun)
        if offset is None:
            return ()
        if self._kit_ancestors is None:
            above: dict[str, set[int]] = {}
            for known in self.words:
                for form in self._main_forms(known):
                    above.setdefault(known, set()).update(self.lexicon.ancestors(form, senses=1))
            self._kit_ancestors = above
        return tuple(k for k, above_k in self._kit_ancestors.items() if offset in above_k)

    def kit_kind(self) -> str | None:
        """What the kit's non-colour words are kinds of, by WordNet: among the synsets above them (at any
        height, any sense) that at least half of them reach, the one they reach in the fewest is-a steps
        on average, named by its first word ("shape" for circle, square, triangle, star, ...; "entity" is
        reached by all, but far up). None without WordNet or with fewer than two such words."""
        offset = self._kit_kind_synset()
        lexicon = self.lexicon
        if offset is None or lexicon is None:
            return None
        return self._guarded_lexicon(lambda: lexicon.synset_words(offset)[0])

    def _kit_kind_synset(self) -> int | None:
        if self._kit_kind is None:
            self._kit_kind = (self._guarded_lexicon(self._find_kit_kind) if self.lexicon is not None else None,)
        return self._kit_kind[0]

    def _find_kit_kind(self) -> int | None:
        assert self.lexicon is not None
        reached: dict[int, list[int]] = {}
        nouns = 0
        for known in self.words:
            if self.is_colour_word(known):
                continue
            depths: dict[int, int] = {}
            for form in dict.fromkeys([known, *self.lexicon.base_forms(known, ("noun",))]):
                for offset, steps in self.lexicon.ancestors(form).items():
                    depths[offset] = min(steps, depths.get(offset, steps))
            nouns += bool(depths)
            for offset, steps in depths.items():
                reached.setdefault(offset, []).append(steps)
        common = [(sum(d) / len(d), offset) for offset, d in reached.items() if nouns >= 2 and 2 * len(d) >= nouns]
        return min(common)[1] if common else None

    def other_kind(self, word: str) -> str | None:
        """The kit's kind (`kit_kind`) when ``word`` (a word no rule maps) is, by WordNet, a kind of it;
        else None ("heart" -> "shape" in the shapes world; "napkin" -> None)."""
        if self.lexicon is None or not self.config.refuse_other_kinds:
            return None
        offset = self._kit_kind_synset()
        lexicon = self.lexicon
        if offset is None or lexicon is None:
            return None
        found = self._guarded_lexicon(lambda: any(offset in lexicon.ancestors(base)
                                                  for base in lexicon.base_forms(word, ("noun",))))
        return self.kit_kind() if found else None

    def prepare(self) -> None:
        """Embed the vocabulary's words and read the lexicon's indexes now instead of on first need."""
        if self.config.enabled and self._vectors is None:
            self._vectors = self._word_vectors(list(self.words))
        lexicon = self.lexicon
        if lexicon is not None:
            self._guarded_lexicon(lambda: (lexicon.load(), self._lexicon_target_words()))

    def _kit_word_alone(self, word: str) -> bool:
        """Whether ``word`` is a kit word, or one without any context: another form of one (rule 1, or
        WordNet's base forms: "dot" -> dots), or a basic colour term the colour rule grounds ("grey" ->
        gray). These give the other words of a name their context ("grey dot": each makes the other one
        a word next to a kit word)."""
        if word in self._known:
            return True
        if not self.config.enabled:
            return False
        if self._replace(word, False) is not None:
            return True
        if word in BASIC_COLOUR_TERMS and self.colours.ground(word) is not None:
            return True
        lexicon = self.lexicon
        if lexicon is None:
            return False
        targets = self._guarded_lexicon(self._lexicon_target_words) or {}
        return bool(self._guarded_lexicon(lambda: any(base in targets for base in lexicon.base_forms(word))))

    def _compounds(self, words: list[str], kit_words: list[bool]) -> dict[int, int]:
        """Start -> end (exclusive) of the runs of 2-3 words that WordNet knows as one noun ("poker chip",
        "life buoy"), longest first, among words that are no kit word and no colour name: such a run is
        read as a whole first (rule 3: "poker chip" is disk-shaped, where "chip" alone has a sense that
        is a "check"), and word by word only when the whole gives no kit word ("round shape")."""
        lexicon = self.lexicon
        if lexicon is None:
            return {}
        free = [not kit_words[j] and words[j] not in self.colours.names and not self.is_colour_word(words[j])
                for j in range(len(words))]

        def find() -> dict[int, int]:
            found: dict[int, int] = {}
            k = 0
            while k < len(words):
                end = next((k + n for n in (3, 2) if k + n <= len(words) and all(free[k:k + n])
                            and lexicon.base_forms(" ".join(words[k:k + n]), ("noun",))), k + 1)
                if end > k + 1:
                    found[k] = end
                k = end
            return found
        return self._guarded_lexicon(find) or {}

    def is_colour_word(self, word: str) -> bool:
        """A word that names a colour whatever else it could mean: a basic colour term or one of the
        vocabulary's colour words (`ColourGrounding.targets`)."""
        return word in BASIC_COLOUR_TERMS or word in self.colours.targets

    def interpret(self, name: str) -> Interpretation:
        """Rewrite ``name``: every unknown word that a rule maps is replaced in place (the rest of
        the text, punctuation included, is kept; a word then repeated next to itself is said once); a
        name with no replacement is returned unchanged.

        A word is read as a colour only where a colour adjective of a thing the kit knows stands:
        before the name's last word (the head noun), when no other word of the name is already a
        colour word, and when another word of the name is a kit word (or a form of one). The colour
        tables name colours after things ("brick", "coffee", "sky", "chocolate"): in "green brick
        wall", "coffee mug" or "sky" the word is the thing, not a shade of brown or blue."""
        replacements: list[Replacement] = []
        unknown: list[str] = []
        pieces: list[str] = []
        last = 0
        matches = list(WORD.finditer(name.lower()))
        words = [m.group(0) for m in matches]
        colour_words = [self.is_colour_word(w) for w in words]
        kit_words = [self._kit_word_alone(w) for w in words]
        compounds = self._compounds(words, kit_words) if self.config.enabled else {}
        k = 0
        while k < len(words):
            end = compounds.get(k, k + 1)            # words[k:end]: one word, or a WordNet compound
            span, k = words[k:end], end
            if span[0] in self._known or not self.config.enabled:
                continue
            others = [j for j in range(len(words)) if not end - len(span) <= j < end]
            in_context = any(kit_words[j] for j in others)
            shapeless = not any(kit_words[j] and not colour_words[j] for j in others)
            if len(span) > 1:                        # "poker chip": read as a whole first
                found = self._lexicon_word(" ".join(span), False, False, shapeless) if in_context else None
                if found is None:                    # "round shape" says nothing as a whole: word by word
                    compounds.pop(end - len(span))
                    k = end - len(span)
                    continue
            else:
                colour_allowed = end < len(words) and not any(colour_words[j] for j in others) and in_context
                found = self._replace(span[0], colour_allowed, in_context, modifier=end < len(words),
                                      shapeless=shapeless)
            if found is None:
                unknown += span
                continue
            replacements.append(found)
            pieces += [name[last:matches[end - len(span)].start()], found.replacement]
            last = matches[end - 1].end()
        text = _REPEATED_WORD.sub(r"\1", "".join(pieces) + name[last:]) if replacements else name
        kit_words = tuple(w for w in words_of(text) if w in self._known)
        dropped: tuple[str, ...] = ()
        if self.config.drop_unknown_words and unknown and any(self.is_colour_word(w) for w in kit_words) \
                and not all(self.is_colour_word(w) for w in kit_words):
            in_kit_order = sorted(dict.fromkeys(kit_words), key=lambda w: self._place.get(w, 0.5))
            dropped, text = tuple(unknown), " ".join(in_kit_order)    # "brick wall painted green" -> "green bricks"
        return Interpretation(name=name, text=text, replacements=tuple(replacements), unknown=tuple(unknown),
                              kit_words=kit_words, dropped=dropped)


class PhrasingEncoder(TextEncoder):
    """A text encoder whose names are first rewritten by a `PhraseNormaliser`.

    Args:
        base: the kit's text encoder (its ``identifier`` and ``dim`` are this encoder's).
        vocabulary: the names the kit's generator was trained on (its seen category names).
        config: `PhrasingConfig` (default: `load_phrasing_config()`).
        colour_table: as `PhraseNormaliser`.
        stuff: the names of ``vocabulary`` that are stuff categories (the rest are things), for
            ``refuse_role_clashes`` (zsp_ros.semantics.word_roles); none: that rule refuses nothing.

    ``encode(names)`` -> float32 [N, D], L2-normalised: ``normalise((1 - w) e(rewritten) + w e(name))``
    with ``w = config.raw_weight``; a name with nothing rewritten gets exactly ``base.encode([name])``.
    """

    def __init__(self, *, base: TextEncoder, vocabulary: Sequence[str], config: PhrasingConfig | None = None,
                 colour_table: Mapping[str, tuple[int, int, int]] | None = None, stuff: Sequence[str] = ()) -> None:
        self.base = base
        self.identifier = base.identifier
        self.dim = base.dim
        self.config = config or load_phrasing_config()
        self.normaliser = PhraseNormaliser(vocabulary=vocabulary, embed=base.encode, config=self.config,
                                           colour_table=colour_table)
        self.roles = WordRoles.from_names(vocabulary, stuff)

    def interpret(self, names: Sequence[str]) -> list[Interpretation]:
        """What every name becomes before it is encoded."""
        return [self.normaliser.interpret(n) for n in check_names(names)]

    def warm_up(self) -> None:
        """Read what the rewrite reads on first need (the word vectors of the vocabulary, the lexicon's
        indexes), so that the first add with an unknown word does not pay for it."""
        self.normaliser.prepare()

    def refusal(self, interpretation: Interpretation) -> str | None:
        """Why a name must not be added, or None: with ``refuse_unknown_names``, a name none of whose
        words is a word of the kit's names. The generator has learnt what those words look like and
        recombines them; for a name with none of them it extrapolates, and the head then gives the
        name whatever real objects lie nearest: on the synthetic world (results/vocabulary.md) every
        such name fired on objects of other categories, 5-8 % of all predicted segments for ten."""
        if not (self.config.enabled and self.config.refuse_unknown_names):
            return None
        if interpretation.kit_words:
            other_colour = self._other_colour(interpretation)
            if other_colour is not None:
                return other_colour
            clash = self.roles.clash(interpretation.kit_words) if self.config.refuse_role_clashes else None
            if clash is not None:
                read = f" (read as {interpretation.text!r})" if interpretation.changed else ""
                return (f"{interpretation.name!r}{read} puts together words this kit's names never do: {clash[0]!r} "
                        f"names only things (objects) in them and {clash[1]!r} only stuff (backgrounds); the "
                        f"kit has seen nothing like it and would label other things with it (phrasing setting "
                        f"refuse_role_clashes: false adds it)")
            caution = self.caution(interpretation)
            if caution is None:
                return None
            if self.config.refuse_colour_only_names:
                return (f"{caution}; name a shape it knows (phrasing setting refuse_colour_only_names: false "
                        f"adds such names with a warning)")
            kinds = [(w, self.normaliser.other_kind(w)) for w in interpretation.unknown]
            word, kind = next(((w, k) for w, k in kinds if k is not None), ("", None))
            if kind is None:
                return None
            mine = [w for w in self.normaliser.words if not self.normaliser.is_colour_word(w)]
            return (f"{interpretation.name!r} names a {kind} this kit does not know (WordNet: {word} is-a {kind}; "
                    f"its words other than colours: {', '.join(mine[:30])}): it would label "
                    f"{interpretation.kit_words[0]} things of any {kind} (phrasing setting refuse_other_kinds: "
                    f"false adds it with a warning)")
        known = self.normaliser.words
        shown = ", ".join(known[:40]) + (f", ... ({len(known)} words)" if len(known) > 40 else "")
        return (f"{interpretation.name!r} has no word this kit knows (its names use: {shown}); the kit can "
                f"only recombine those words and would label other things with it (phrasing setting "
                f"refuse_unknown_names: false adds such names anyway)")

    def _other_colour(self, interpretation: Interpretation) -> str | None:
        """With ``refuse_other_colours``: why a name with a basic colour term that is none of the kit's
        colours and no shade of one ("black square": the kit's colours have no black) must not be added,
        or None. Only for a kit whose names use at least two colours; the generator never saw that colour
        and would put the name's fakes on the kit's shapes of some other colour."""
        if not self.config.refuse_other_colours:
            return None
        mine = [w for w in self.normaliser.words if self.normaliser.is_colour_word(w)]
        others = [w for w in interpretation.unknown if w in BASIC_COLOUR_TERMS]
        if len(mine) < 2 or not others or any(self.normaliser.is_colour_word(w) for w in interpretation.kit_words):
            return None
        return (f"{interpretation.name!r} names a colour this kit does not know ({others[0]}; its colours: "
                f"{', '.join(mine)}): it would label {', '.join(interpretation.kit_words)} things of another "
                f"colour (phrasing setting refuse_other_colours: false adds it)")

    def caution(self, interpretation: Interpretation) -> str | None:
        """A warning for a name whose only kit words are colours ("red heart", "green sticky note"), or
        None: the kit can recombine its colour but not what the other words look like, so the name
        will label objects of that colour whatever their shape. Only where unknown names are refused
        (a kit that only recombines its words; CLIP knows what a heart looks like)."""
        if not (self.config.enabled and self.config.refuse_unknown_names) or not interpretation.kit_words:
            return None
        colours = [w for w in interpretation.kit_words if self.normaliser.is_colour_word(w)]
        if len(colours) < len(interpretation.kit_words) or not interpretation.unknown:
            return None
        shapes = [w for w in self.normaliser.words if not self.normaliser.is_colour_word(w)]
        shown = ", ".join(shapes[:30]) + (f", ... ({len(shapes)} words)" if len(shapes) > 30 else "")
        return (f"this kit knows only the colour of {interpretation.name!r} ({', '.join(dict.fromkeys(colours))}), "
                f"not what {', '.join(repr(w) for w in interpretation.unknown)} looks like: it will label "
                f"{colours[0]} things of any shape (its shape and texture words: {shown})")

    def _encode(self, names: list[str]) -> np.ndarray:
        texts = [i.text for i in self.interpret(names)]
        try:
            rewritten = self.base.encode(texts)
        except (ValueError, KeyError, TypeError) as exc:   # say what was typed, not only what it became
            shown = ", ".join(repr(n) if t == n else f"{n!r} (read as {t!r})" for n, t in zip(names, texts))
            raise type(exc)(f"{exc} [names: {shown}]") from exc
        w = self.config.raw_weight
        if w == 0.0:
            return rewritten
        raw = self.base.encode(names)
        changed = np.array([t != n for t, n in zip(texts, names)])[:, None]
        blend = np.where(changed, (1.0 - w) * rewritten + w * raw, raw)
        return l2_normalise(blend, what=self.identifier, names=names)

    def __repr__(self) -> str:
        return f"PhrasingEncoder(base={self.base!r}, words={len(self.normaliser.words)})"
