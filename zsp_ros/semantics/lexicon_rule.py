"""Rule 3 of the phrasing rewrite: read a user's word through WordNet toward the words of a kit's names.

Why and what, rule by rule: zsp_ros/semantics/phrasing.py (its docstring, "3. Lexicon"). This module
holds everything that rule asks of WordNet (zsp_ros/semantics/lexicon.py) about one kit: which base
forms are kit words, which kit words lie under a noun, what the kit's words are kinds of ("shape"),
what a definition says a thing's shape is, and which runs of words WordNet knows as one noun. Its
answers are cached per kit; a WordNet database that cannot be read turns the rule off (``problem``).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from zsp_ros.semantics.interpretation import Replacement
from zsp_ros.semantics.lexicon import Lexicon
from zsp_ros.semantics.text_words import words_of

T = TypeVar("T")
_STATED_SHAPE = re.compile(r"\b([a-z]+)-shaped\b|\bin the (?:form|shape) of an? ([a-z]+)|\bshaped like an? ([a-z]+)")


class LexiconRule:
    """WordNet's reading of words for one kit.

    Args:
        lexicon: the WordNet database.
        words: the kit's vocabulary (the sorted words of its names).
        definitions: also read a noun's definition for the shape it describes (`lookup`).
        same_word: word -> the vocabulary word that is another form of it by rule 1 (shared stem,
            text-encoder cosine), or None; also None while rule 1 cannot run.
        is_colour_word: whether a word names a colour (`PhraseNormaliser.is_colour_word`).
    """

    def __init__(self, lexicon: Lexicon, *, words: Sequence[str], definitions: bool,
                 same_word: Callable[[str], str | None], is_colour_word: Callable[[str], bool]) -> None:
        self.lexicon: Lexicon | None = lexicon
        self.problem: str | None = None             # why the rule stopped, if it did
        self.words = list(words)
        self.definitions = definitions
        self._same_word = same_word
        self._is_colour_word = is_colour_word
        self._targets: dict[str, str] | None = None                  # base form -> vocabulary word
        self._hypernym_of_kit: dict[str, tuple[str, ...]] | None = None   # noun -> vocabulary words that is-a it
        self._kit_ancestors: dict[str, set[int]] | None = None       # kit word -> its main sense's ancestors
        self._kit_kind: tuple[int | None] | None = None               # (the kit words' common kind,), on first need

    # ------------------------------------------------------------------------------ resource guard
    def guarded(self, job: Callable[[Lexicon], T]) -> T | None:
        """Run ``job(lexicon)``; a WordNet database that cannot be read (a corrupt or truncated file)
        turns the rule off with the reason in ``problem`` and gives None: adds go on without it."""
        lexicon = self.lexicon
        if lexicon is None:
            return None
        try:
            return job(lexicon)
        except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
            self.problem = f"WordNet at {getattr(lexicon, 'root', '?')} cannot be read ({exc})"
            self.lexicon = None
            return None

    def prepare(self) -> None:
        """Read the lexicon's indexes and the kit's base forms now instead of on first need."""
        def read(lexicon: Lexicon) -> None:
            lexicon.load()
            self.target_words()
        self.guarded(read)

    # ------------------------------------------------------------------------------ questions
    def is_english_word(self, word: str) -> bool:
        """Whether WordNet knows ``word`` (a base form of any part of speech, or an adjective of nouns);
        rule 4 (typos) leaves such words alone. False without a readable lexicon."""
        return bool(self.guarded(lambda lexicon: bool(lexicon.base_forms(word) or lexicon.adjective_nouns(word))))

    def is_kit_word_form(self, word: str) -> bool:
        """Whether a base form of ``word`` is a base form of a vocabulary word ("dot" -> dots)."""
        targets = self.guarded(lambda _: self.target_words()) or {}
        return bool(self.guarded(lambda lexicon: any(base in targets for base in lexicon.base_forms(word))))

    def compounds(self, words: list[str], free: list[bool], joins: list[str]) -> dict[int, tuple[int, str]]:
        """Start -> (end (exclusive), lemma) of the runs of 2-3 ``free`` words that WordNet knows as one
        word, longest first: written with hyphens (``joins[j]``, the text between words j and j + 1, all
        "-") and a lemma of any part of speech ("three-sided", "t-shirt"), or a noun written with spaces
        ("poker chip", "life buoy")."""
        def lemma(lexicon: Lexicon, k: int, n: int) -> str | None:
            if k + n > len(words) or not all(free[k:k + n]):
                return None
            hyphenated = "-".join(words[k:k + n])
            if all(j == "-" for j in joins[k:k + n - 1]) and hyphenated in lexicon.base_forms(hyphenated):
                return hyphenated
            spaced = " ".join(words[k:k + n])
            return spaced if lexicon.base_forms(spaced, ("noun",)) else None

        def find(lexicon: Lexicon) -> dict[int, tuple[int, str]]:
            found: dict[int, tuple[int, str]] = {}
            k = 0
            while k < len(words):
                hit = next(((k + n, text) for n in (3, 2) if (text := lemma(lexicon, k, n)) is not None), None)
                if hit is not None:
                    found[k] = hit
                k = hit[0] if hit is not None else k + 1
            return found
        return self.guarded(find) or {}

    def read(self, word: str, colour_allowed: bool, modifier: bool, shapeless: bool) -> Replacement | None:
        """`lookup` with the resource guarded."""
        return self.guarded(lambda _: self.lookup(word, colour_allowed, modifier, shapeless))

    # ------------------------------------------------------------------------------ the rule
    def target_words(self) -> dict[str, str]:
        """Base form -> vocabulary word, for every vocabulary word's noun forms ("dots" -> dot)."""
        assert self.lexicon is not None
        if self._targets is None:
            targets: dict[str, str] = {}
            for known in self.words:
                for form in [known, *self.lexicon.base_forms(known, ("noun",))]:
                    targets.setdefault(form, known)
            self._targets = targets
        return self._targets

    def target(self, related: str) -> str | None:
        """The vocabulary word that a WordNet word ``related`` is: one of its base forms, or another form
        of it by rule 1 that holds a whole base form of it ("checkerboard", the hypernym of "chessboard",
        holds "check": checks). Rule 1's shorter shared stem is for the user's own words; for a relative
        it let "squab" (a synonym of "dove") become "square"."""
        targets = self.target_words()
        if related in targets:
            return targets[related]
        if " " in related:
            return None
        form = self._same_word(related)
        if form is None:
            return None
        return form if any(related.startswith(base) for base, known in targets.items() if known == form) else None

    def lookup(self, word: str, colour_allowed: bool, modifier: bool, shapeless: bool = False,
               nested: bool = False) -> Replacement | None:
        """Rule 3 (zsp_ros/semantics/phrasing.py): the vocabulary word that a base form, a synonym or a
        direct hypernym of ``word`` is (`target`); ``score`` = WordNet sense rank, ``via`` = the relation.

        A ``modifier`` that WordNet knows as an adjective derived from nouns is read through those nouns
        only, sense by sense ("round" -> circle; "pointed" -> point, the sharp end, and so nothing: its
        noun senses would read it as point = dot); one without such pointers ("dotted") goes on as a noun.
        ``shapeless``: the name has no kit word but colours; only then are the kit words under a noun and
        definitions read (they look for the shape a name lacks). ``nested``: a word a definition stated;
        its own adjective definitions are not read again (no chain of definitions, no cycle)."""
        assert self.lexicon is not None
        targets = self.target_words()

        def target(related: str) -> str | None:
            known = self.target(related)
            return known if known is not None and (colour_allowed or not self._is_colour_word(known)) else None

        if not modifier and not self.lexicon.base_forms(word, ("noun",)):
            modifier = True                 # no noun at all ("purple cruciform"): read as the adjective it is
        if modifier:
            readings = self.lexicon.adjective_nouns(word)
            for rank, nouns in enumerate(readings):
                hit = next((n for n in nouns if target(n) is not None), None)
                if hit is not None:
                    return Replacement(word, str(target(hit)), "lexicon", float(rank),
                                       via=f"{word} pertains to {hit}")
            for gloss in self.lexicon.adjective_definitions(word) if self.definitions and not nested else ():
                found = self._stated_shape(word, word, gloss, target)    # "cruciform": shaped like a cross
                if found is not None:
                    return found
            if any(readings):
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
        kind = self.kit_kind_synset()
        kind_words = set(self.lexicon.synset_words(kind)) if kind is not None else set()
        # "rectangle": the one kit word that is-a it ("square"); not for a phrase, read through its words
        # instead (WordNet files "dot", a very small circular shape, under "round shape", but not "circle")
        for base in bases if shapeless and " " not in word else ():
            under = self.kit_words_below(base) if base not in kind_words else ()
            if len(under) == 1 and target(under[0]) is not None:
                return Replacement(word, str(target(under[0])), "lexicon", 0.0,
                                   via=f"a {under[0]} is-a {base}, the only kit word that is")
        if self.definitions and shapeless:
            for base in bases:
                found = self.definition_reading(word, base, target)
                if found is not None:
                    return found
        return None

    def definition_reading(self, word: str, base: str, target: Callable[[str], str | None]) -> Replacement | None:
        """Rule 3, last step: the shape the definition of ``base``'s first noun sense gives it: a shape it
        states ("poker chip": a small disk-shaped counter -> disk is-a circle; "life buoy": ... in the
        form of a ring), else the first adjective of the definition that pertains to a noun (its first
        sense with such pointers) that is a base form of a vocabulary word, or the one vocabulary word
        that is-a that noun ("tile": a flat thin rectangular slab -> rectangle -> square, the only kit
        word that is-a rectangle). Adjectives only: a
        definition's nouns say what a thing is made of or used for ("a six-sided polygon" is no triangle)."""
        assert self.lexicon is not None
        gloss = self.lexicon.definition(base)
        stated = self._stated_shape(word, base, gloss, target)
        if stated is not None:
            return stated
        exact = self.target_words()
        for token in words_of(gloss):
            readings = next((nouns for nouns in self.lexicon.adjective_nouns(token) if nouns), ())
            for noun in readings:               # a kit word's own base form, not another form of it
                known = target(noun) if noun in exact else None     # ("medical" -> checkup is no "checks")
                via = f"{base} is {token} ({token} pertains to {noun})"
                if known is None:
                    under = self.kit_words_under().get(noun, ())
                    known = target(under[0]) if len(under) == 1 else None
                    via = f"{base} is {token} ({token} pertains to {noun}; a {known} is-a {noun})"
                if known is not None:
                    return Replacement(word, known, "lexicon", 0.0, via=via)
        return None

    def _stated_shape(self, word: str, base: str, gloss: str, target: Callable[[str], str | None]
                      ) -> Replacement | None:
        """The kit word for the shape a definition states ("a small disk-shaped counter", "in the form of a
        ring", "shaped like a cross"): the stated noun itself, or what rule 3 makes of it ("disk" is-a
        circle); None when it states none that is a kit word."""
        for statement in _STATED_SHAPE.finditer(gloss.lower()):
            stated = statement.group(1) or statement.group(2) or statement.group(3)
            known = target(stated)
            via = f"{base} is {statement.group(0)}"
            if known is None:
                found = self.lookup(stated, False, False, nested=True)
                known, via = (found.replacement, f"{via} ({found.via})") if found is not None else (None, via)
            if known is not None:
                return Replacement(word, known, "lexicon", 0.0, via=via)
        return None

    # ------------------------------------------------------------------------------ the kit in WordNet
    def kit_words_under(self) -> dict[str, tuple[str, ...]]:
        """WordNet noun -> the vocabulary words whose first (most frequent) sense is-a that noun directly.
        A kit word is read through `main_forms` (a plural through its singular)."""
        assert self.lexicon is not None
        if self._hypernym_of_kit is None:
            under: dict[str, list[str]] = {}
            for known in self.words:
                for form in self.main_forms(known):
                    for sense in self.lexicon.senses(form)[:1]:     # its main sense: "stripe" is-a variety
                        for hypernym in sense.hypernyms:                # only in its fourth sense
                            under.setdefault(hypernym, [])
                            if known not in under[hypernym]:
                                under[hypernym].append(known)
            self._hypernym_of_kit = {h: tuple(k) for h, k in under.items()}
        return self._hypernym_of_kit

    def main_forms(self, known: str) -> list[str]:
        """The WordNet lemmas a vocabulary word is read through: its noun base forms other than itself when
        it has any (the lemma "stripes" is first a grade insignia, "stripe" a band of colour), else itself."""
        assert self.lexicon is not None
        forms = self.lexicon.base_forms(known, ("noun",))
        return [f for f in forms if f != known] or [known]

    def kit_words_below(self, noun: str) -> tuple[str, ...]:
        """The vocabulary words whose main sense is, at any height, a kind of ``noun``'s main sense ("square"
        below "quadrilateral" and "rectangle"; "triangle" and "square" below "polygon"), read through
        `main_forms`."""
        assert self.lexicon is not None
        offset = self.lexicon.first_sense(noun)
        if offset is None:
            return ()
        if self._kit_ancestors is None:
            above: dict[str, set[int]] = {}
            for known in self.words:
                for form in self.main_forms(known):
                    above.setdefault(known, set()).update(self.lexicon.ancestors(form, senses=1))
            self._kit_ancestors = above
        return tuple(k for k, above_k in self._kit_ancestors.items() if offset in above_k)

    def kit_kind(self) -> str | None:
        """What the kit's non-colour words are kinds of, by WordNet: among the synsets above them (at any
        height, any sense) that at least half of them reach, the one they reach in the fewest is-a steps
        on average, named by its first word ("shape" for circle, square, triangle, star, ...; "entity" is
        reached by all, but far up). None without WordNet or with fewer than two such words."""
        offset = self.kit_kind_synset()
        if offset is None:
            return None
        return self.guarded(lambda lexicon: lexicon.synset_words(offset)[0])

    def kit_kind_synset(self) -> int | None:
        if self._kit_kind is None:
            self._kit_kind = (self.guarded(self._find_kit_kind),)
        return self._kit_kind[0]

    def _find_kit_kind(self, lexicon: Lexicon) -> int | None:
        reached: dict[int, list[int]] = {}
        nouns = 0
        for known in self.words:
            if self._is_colour_word(known):
                continue
            depths: dict[int, int] = {}
            for form in dict.fromkeys([known, *lexicon.base_forms(known, ("noun",))]):
                for offset, steps in lexicon.ancestors(form).items():
                    depths[offset] = min(steps, depths.get(offset, steps))
            nouns += bool(depths)
            for offset, steps in depths.items():
                reached.setdefault(offset, []).append(steps)
        common = [(sum(d) / len(d), offset) for offset, d in reached.items() if nouns >= 2 and 2 * len(d) >= nouns]
        return min(common)[1] if common else None

    def other_kind(self, word: str) -> str | None:
        """The kit's kind (`kit_kind`) when ``word`` is, by WordNet, a kind of it; else None ("heart" ->
        "shape" in the shapes world; "napkin" -> None)."""
        offset = self.kit_kind_synset()
        if offset is None:
            return None
        found = self.guarded(lambda lexicon: any(offset in lexicon.ancestors(base)
                                                 for base in lexicon.base_forms(word, ("noun",))))
        return self.kit_kind() if found else None
