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
   ("round" -> circle; "pointed" -> point, the sharp end: nothing, where its noun senses said "dot"),
   and one derived from no noun through the shape its definitions state ("cruciform": shaped like a
   cross); a word that is no noun is read as such an adjective wherever it stands ("purple cruciform").
   A relative that is another form of a kit word by rule 1 counts ("chessboard" is-a checkerboard ->
   "checks"). With ``definitions``, for a name that still lacks a shape/texture word, the first
   adjective of the word's definition that pertains to a kit noun, or to the noun that exactly one kit
   word's main sense is-a ("tile": a flat thin rectangular slab -> rectangle -> square); a shape the
   definition states comes first ("donut": a small ring-shaped friedcake -> ring). Two or three words
   that WordNet knows as one noun are read as a whole first ("poker chip": a small disk-shaped
   counter -> disk is-a circle, where "chip" alone would be a "check"); a hyphenated word WordNet knows
   is one word of any part of speech and is never split ("three-sided" -> triangle; "three-cornered"
   stays as typed, where "cornered" alone is a corner, which WordNet files under crossroad: "cross").
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

Where. This module holds the rewrite itself (`PhraseNormaliser`: rules 1, 2 and 4, and where in a name
each may apply); rule 3's questions to WordNet are zsp_ros/semantics/lexicon_rule.py, the settings
zsp_ros/semantics/phrasing_config.py, what a name became zsp_ros/semantics/interpretation.py, and the
encoder that refuses or warns zsp_ros/semantics/phrasing_encoder.py.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from zsp_ros.semantics.base import check_names
from zsp_ros.semantics.colour_words import BASIC_COLOUR_TERMS, ColourGrounding, build_colour_table
from zsp_ros.semantics.interpretation import Interpretation, Replacement
from zsp_ros.semantics.lexicon import Lexicon, find_wordnet
from zsp_ros.semantics.lexicon_rule import LexiconRule
from zsp_ros.semantics.phrasing_config import PhrasingConfig
from zsp_ros.semantics.text_words import WORD, words_of

# two words rewritten to the same kit word are said once: "blue round disc" -> "blue circle", not
# "blue circle circle" (on the dev set the doubled word cost that category half its PQ)
_REPEATED_WORD = re.compile(r"\b(\w+)(?:[\s-]+\1\b)+", re.IGNORECASE)

def vocabulary_words(names: Sequence[str]) -> list[str]:
    """The sorted word set of ``names`` (`words_of` each)."""
    return sorted({word for name in names for word in words_of(name)})


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
        self._rule: LexiconRule | None = None           # rule 3, set through the ``lexicon`` property
        self.lexicon = lexicon if self.config.lexicon else None

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
            if found is None and self._rule is not None and in_context:  # WordNet: "pentagram" is-a star
                found = self._rule.read(word, colour_allowed, modifier, shapeless)
            if found is None and self.config.typos:                       # "sqaure" -> square
                found = self._misspelling(word, colour_allowed)
        self._cache[key] = found
        return found

    def _misspelling(self, word: str, colour_allowed: bool) -> Replacement | None:
        """Rule 4: the one vocabulary word one edit away from ``word`` (a letter left out, added, changed
        or two neighbours swapped: "yelow", "sqaure"), for a word of at least 4 letters that is no colour
        name and no English word by WordNet ("stare" stays, "star" is a kit word). No lexicon, no rule."""
        if len(word) < 4 or word in self.colours.names or self._rule is None or self._rule.lexicon is None:
            return None
        if self._rule.is_english_word(word):
            return None
        close = [k for k in self.words if abs(len(k) - len(word)) <= 1 and _one_edit_apart(word, k)
                 and (colour_allowed or not self.is_colour_word(k))]
        return Replacement(word, close[0], "typo", 1.0) if len(close) == 1 else None

    # ------------------------------------------------------------------ rule 3 (lexicon_rule.py)
    @property
    def lexicon(self) -> Lexicon | None:
        """The WordNet database rule 3 reads; None when the rule is off, or stopped (`lexicon_problem`)."""
        return self._rule.lexicon if self._rule is not None else None

    @lexicon.setter
    def lexicon(self, lexicon: Lexicon | None) -> None:
        self._rule = LexiconRule(lexicon, words=self.words, definitions=self.config.definitions,
                                 same_word=self._form_of_kit_word, is_colour_word=self.is_colour_word) \
            if lexicon is not None else None

    @property
    def lexicon_problem(self) -> str | None:
        """Why rule 3 stopped (a WordNet database that cannot be read), or None."""
        return self._rule.problem if self._rule is not None else None

    def _form_of_kit_word(self, word: str) -> str | None:
        """Rule 1 for rule 3's relatives: the vocabulary word that ``word`` is another form of, or None."""
        if self._vectors is None:
            return None
        form = self._same_word(word, self.words, self._vectors)
        return form[0] if form is not None else None

    def kit_kind(self) -> str | None:
        """What the kit's non-colour words are kinds of, by WordNet ("shape" in the shapes world), or None
        (`LexiconRule.kit_kind`)."""
        return self._rule.kit_kind() if self._rule is not None else None

    def other_kind(self, word: str) -> str | None:
        """The kit's kind (`kit_kind`) when ``word`` (a word no rule maps) is, by WordNet, a kind of it;
        else None ("heart" -> "shape" in the shapes world; "napkin" -> None)."""
        if self._rule is None or not self.config.refuse_other_kinds:
            return None
        return self._rule.other_kind(word)

    def prepare(self) -> None:
        """Embed the vocabulary's words and read the lexicon's indexes now instead of on first need."""
        if self.config.enabled and self._vectors is None:
            self._vectors = self._word_vectors(list(self.words))
        if self._rule is not None:
            self._rule.prepare()

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
        return self._rule is not None and self._rule.is_kit_word_form(word)

    def _compounds(self, words: list[str], kit_words: list[bool], joins: list[str]) -> dict[int, tuple[int, str]]:
        """Start -> (end (exclusive), lemma) of the runs of 2-3 words that WordNet knows as one word
        (`LexiconRule.compounds`: "poker chip", "life buoy", "three-sided"), among words that are no kit
        word and no colour name: such a run is read as a whole first (rule 3: "poker chip" is disk-shaped,
        where "chip" alone has a sense that is a "check"). A noun written with spaces is read word by word
        when the whole gives no kit word ("round shape"); a hyphenated word never is: "three-cornered"
        means having three corners, not a corner (which WordNet files under crossroad: "cross")."""
        if self._rule is None:
            return {}
        free = [not kit_words[j] and words[j] not in self.colours.names and not self.is_colour_word(words[j])
                for j in range(len(words))]
        return self._rule.compounds(words, free, joins)

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
        joins = [name.lower()[a.end():b.start()] for a, b in zip(matches, matches[1:])]
        compounds = self._compounds(words, kit_words, joins) if self.config.enabled else {}
        k = 0
        while k < len(words):
            end, lemma = compounds.get(k, (k + 1, words[k]))   # words[k:end]: one word, or a WordNet compound
            span, k = words[k:end], end
            if span[0] in self._known or not self.config.enabled:
                continue
            others = [j for j in range(len(words)) if not end - len(span) <= j < end]
            in_context = any(kit_words[j] for j in others)
            shapeless = not any(kit_words[j] and not colour_words[j] for j in others)
            if len(span) > 1:                        # "poker chip": read as a whole first
                found = self._rule.read(lemma, False, end < len(words), shapeless) \
                    if in_context and self._rule is not None else None
                if found is None and "-" not in lemma:   # "round shape" says nothing as a whole: word by word
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
        in_text = tuple(w for w in words_of(text) if w in self._known)
        dropped: tuple[str, ...] = ()
        if self.config.drop_unknown_words and unknown and any(self.is_colour_word(w) for w in in_text) \
                and not all(self.is_colour_word(w) for w in in_text):
            in_kit_order = sorted(dict.fromkeys(in_text), key=lambda w: self._place.get(w, 0.5))
            dropped, text = tuple(unknown), " ".join(in_kit_order)    # "brick wall painted green" -> "green bricks"
        return Interpretation(name=name, text=text, replacements=tuple(replacements), unknown=tuple(unknown),
                              kit_words=in_text, dropped=dropped)


