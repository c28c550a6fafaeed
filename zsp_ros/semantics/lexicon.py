"""An offline English lexicon: WordNet 3.0's noun synonyms and hypernyms, read from its database files.

Why. The phrasing rewrite (zsp_ros.semantics.phrasing) grounds a user's word in the words of a kit's
category names. Word forms and colours are covered by its first two rules; a shape or texture named
by another noun is not: the offline sentence encoder puts "pentagram" nearer "circle" than "star"
and "disc" nearer "ring" than "circle" (README, "Adding categories by name"). WordNet says what a noun *is*
("pentagram": a star with 5 points, is-a star; "disc": a flat circular plate, is-a circle), which is
exactly the relation needed to name it with a kit word.

What. `Lexicon` answers, for a word, its base forms (WordNet's "morphy": exception lists, then
suffix rules, for nouns, verbs and adjectives: "dotted" -> dot, "wedges" -> wedge) and, per noun
sense in WordNet's order (most frequent first), the sense's synonyms and its direct hypernyms, and,
per adjective sense, the nouns the adjective is derived from or pertains to ("round": having a
circular shape -> circle; "pointed": having a point -> point, the sharp end, not point = dot), and
the definition of a noun's first sense ("tile": a flat thin rectangular slab ...) and of an adjective's
senses ("cruciform": shaped like a cross), and the chain of
hypernyms above a noun ("heart" is-a plane figure is-a figure is-a shape). Nothing else of WordNet is
used.

Where. The database files of Debian's ``wordnet-base`` package (/usr/share/wordnet: index.noun,
data.noun, index.verb, index.adj, data.adj and the .exc lists), or the folder named by ``ZSP_WORDNET_DIR``.
`find_wordnet` returns None when neither exists: the rule that uses it is then off (``zsp doctor``
says so). Files are read lazily; one noun index (~118k lemmas) is held in memory, data lines are
read by offset.

Format (WordNet's wndb(5)): an index line is ``lemma pos synset_cnt p_cnt [ptr_symbol]*p_cnt
sense_cnt tagsense_cnt synset_offset*synset_cnt``; a data line at byte ``synset_offset`` is
``offset lex_filenum ss_type w_cnt(hex) [word lex_id]*w_cnt p_cnt [symbol offset pos source/target]*p_cnt ... | gloss``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet")
ENV_DIR = "ZSP_WORDNET_DIR"
POS_FILES = {"noun": "noun", "verb": "verb", "adj": "adj"}
HYPERNYM_SYMBOLS = ("@", "@i")          # hypernym, instance hypernym
ADJECTIVE_NOUN_SYMBOLS = ("+", "\\")    # derivationally related form, pertainym (adjective -> noun)
# morphy's detachment rules (suffix, replacement) per part of speech
SUFFIX_RULES = {
    "noun": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
             ("men", "man"), ("ies", "y")),
    "verb": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "adj": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
}
REQUIRED_FILES = ("index.noun", "data.noun", "index.verb", "index.adj", "data.adj", "noun.exc", "verb.exc",
                  "adj.exc")


def _without_examples(gloss: str) -> str:
    """A WordNet gloss without its quoted usage examples and trailing ";"."""
    return gloss.split('"')[0].strip().rstrip(";").strip()


def find_wordnet() -> Path | None:
    """The WordNet database folder: ``$ZSP_WORDNET_DIR`` if set, else the first of `DEFAULT_DIRS` holding
    every file of `REQUIRED_FILES`; None when there is none."""
    named = os.environ.get(ENV_DIR)
    for folder in ([named] if named else list(DEFAULT_DIRS)):
        path = Path(folder)
        if all((path / f).is_file() for f in REQUIRED_FILES):
            return path
    return None


@dataclass(frozen=True)
class Sense:
    """One noun sense: ``rank`` (0 = WordNet's most frequent sense of the lemma), its ``synonyms``
    (lower case, spaces for underscores) and the words of its direct ``hypernyms``."""
    rank: int
    synonyms: tuple[str, ...]
    hypernyms: tuple[str, ...]


class Lexicon:
    """WordNet 3.0 nouns (module docstring). ``root``: the database folder (see `find_wordnet`).

    Raises:
        FileNotFoundError: a database file is missing (the message names it).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        missing = [f for f in REQUIRED_FILES if not (self.root / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.root}: not a WordNet database folder (missing {', '.join(missing)}; "
                                    f"Debian/Ubuntu: apt-get install wordnet-base)")
        self._index: dict[str, dict[str, tuple[int, ...]]] = {}
        self._exceptions: dict[str, dict[str, tuple[str, ...]]] = {}

    def load(self) -> None:
        """Read the indexes and exception lists now (~0.7 s) instead of on first use."""
        for pos in POS_FILES:
            self._lemmas(pos)
            self._exception_list(pos)

    def _lemmas(self, pos: str) -> dict[str, tuple[int, ...]]:
        """lemma -> synset offsets (sense order) of ``pos``, read on first use."""
        if pos not in self._index:
            table: dict[str, tuple[int, ...]] = {}
            with open(self.root / f"index.{POS_FILES[pos]}", encoding="latin-1") as fh:
                for number, line in enumerate(fh, 1):
                    if line.startswith(" "):            # the licence header
                        continue
                    fields = line.split()
                    try:
                        pointers = int(fields[3])
                        table[fields[0]] = tuple(int(o) for o in fields[4 + pointers + 2:])
                    except (IndexError, ValueError):
                        raise ValueError(f"{self.root}/index.{pos}:{number}: malformed index line") from None
            self._index[pos] = table
        return self._index[pos]

    def _exception_list(self, pos: str) -> dict[str, tuple[str, ...]]:
        if pos not in self._exceptions:
            table: dict[str, tuple[str, ...]] = {}
            with open(self.root / f"{POS_FILES[pos]}.exc", encoding="latin-1") as fh:
                for line in fh:
                    fields = line.split()
                    if len(fields) >= 2:
                        table[fields[0]] = tuple(fields[1:])
            self._exceptions[pos] = table
        return self._exceptions[pos]

    def base_forms(self, word: str, parts: tuple[str, ...] = ("noun", "verb", "adj")) -> list[str]:
        """Lemmas of ``word`` (lower case; spaces as in "plus sign") as each part of speech of ``parts``, in
        that order, without repeats: the word itself when it is a lemma, its exception-list bases, then
        suffix-rule bases that are lemmas ("dotted" -> dot, "spots" -> spot)."""
        key = word.lower().replace(" ", "_")
        found: list[str] = []
        for pos in parts:
            lemmas = self._lemmas(pos)
            candidates = [key, *self._exception_list(pos).get(key, ())]
            candidates += [key[:len(key) - len(s)] + r for s, r in SUFFIX_RULES[pos] if key.endswith(s)]
            found += [c for c in candidates if c in lemmas]
        return list(dict.fromkeys(c.replace("_", " ") for c in found))

    def _synset(self, offset: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """(words, direct noun hypernym offsets) of the noun synset at ``offset`` of data.noun."""
        fields = self._data_line("noun", offset)
        count = int(fields[3], 16)
        words = tuple(fields[4 + 2 * i].split("(")[0].lower().replace("_", " ") for i in range(count))
        k = 4 + 2 * count
        pointers = int(fields[k])
        hypernyms = tuple(int(fields[k + 2 + 4 * i]) for i in range(pointers)
                          if fields[k + 1 + 4 * i] in HYPERNYM_SYMBOLS and fields[k + 3 + 4 * i] == "n")
        return words, hypernyms

    def adjective_nouns(self, word: str) -> list[tuple[str, ...]]:
        """Per adjective sense of ``word`` (as an adjective lemma, or an adjective base form of it: "rounder"),
        in WordNet's order, the words of the noun synsets its derivation and pertainym pointers name
        ("round" -> [("circle", "roundness", ...), ...]); a sense without such pointers gives (). [] when
        ``word`` is no adjective. The pointers name one sense of the noun: what the adjective is about."""
        out: list[tuple[str, ...]] = []
        for offset in self._adjective_senses(word):
            fields = self._data_line("adj", offset)
            count = int(fields[3], 16)
            k = 4 + 2 * count
            pointers = [fields[k + 1 + 4 * i: k + 5 + 4 * i] for i in range(int(fields[k]))]
            nouns = [w for symbol, target, pos, _ in pointers if symbol in ADJECTIVE_NOUN_SYMBOLS and pos == "n"
                     for w in self._synset(int(target))[0]]
            out.append(tuple(dict.fromkeys(nouns)))
        return out

    def adjective_definitions(self, word: str) -> list[str]:
        """Per adjective sense of ``word`` (as for `adjective_nouns`), in WordNet's order, its definition
        without the quoted usage examples ("cruciform" -> ["shaped like a cross"]); [] when it is no adjective."""
        return [_without_examples(self._data_line("adj", offset, gloss=True)[-1])
                for offset in self._adjective_senses(word)]

    def _adjective_senses(self, word: str) -> list[int]:
        """The data.adj offsets of ``word``'s adjective senses (it, or an adjective base form of it), in
        WordNet's order."""
        return [offset for lemma in self.base_forms(word, ("adj",))
                for offset in self._lemmas("adj").get(lemma.replace(" ", "_"), ())]

    def definition(self, lemma: str) -> str:
        """The definition of the first (most frequent) noun sense of ``lemma``, without its quoted usage
        examples ("box" -> "a (usually rectangular) container; may have a lid"); "" when it is no noun."""
        offsets = self._lemmas("noun").get(lemma.lower().replace(" ", "_"), ())
        if not offsets:
            return ""
        return _without_examples(self._data_line("noun", offsets[0], gloss=True)[-1])

    def _data_line(self, pos: str, offset: int, gloss: bool = False) -> list[str]:
        """The fields (before the gloss) of the synset at byte ``offset`` of data.<pos>, the gloss as one
        more field when ``gloss``."""
        with open(self.root / f"data.{POS_FILES[pos]}", "rb") as fh:
            fh.seek(offset)
            line = fh.readline().decode("latin-1")
        head, _, text = line.partition("|")
        fields = head.split()
        if not fields or int(fields[0]) != offset:
            raise ValueError(f"{self.root}/data.{POS_FILES[pos]}: no synset at offset {offset}")
        return [*fields, text.strip()] if gloss else fields

    def ancestors(self, lemma: str, senses: int | None = None) -> dict[int, int]:
        """Every noun synset above any noun sense of ``lemma`` (or its first ``senses`` senses: hypernyms,
        their hypernyms, ...), as data.noun offset -> the fewest is-a steps that reach it ("heart" reaches
        "plane figure" in 1, "shape" in 3); {} when ``lemma`` is no noun. `synset_words` names an offset."""
        depth: dict[int, int] = {}
        offsets = self._lemmas("noun").get(lemma.lower().replace(" ", "_"), ())
        frontier = [(h, 1) for o in offsets[:senses] for h in self._synset(o)[1]]
        while frontier:
            offset, steps = frontier.pop()
            if depth.get(offset, steps + 1) <= steps:
                continue
            depth[offset] = steps
            frontier += [(h, steps + 1) for h in self._synset(offset)[1]]
        return depth

    def first_sense(self, lemma: str) -> int | None:
        """The data.noun offset of ``lemma``'s first (most frequent) noun sense; None when it is no noun."""
        offsets = self._lemmas("noun").get(lemma.lower().replace(" ", "_"), ())
        return offsets[0] if offsets else None

    def synset_words(self, offset: int) -> tuple[str, ...]:
        """The words of the noun synset at ``offset`` of data.noun, WordNet's order ("shape", "form")."""
        return self._synset(offset)[0]

    def senses(self, lemma: str) -> list[Sense]:
        """The noun senses of ``lemma`` (a base form), most frequent first; [] when it is no noun."""
        out = []
        for rank, offset in enumerate(self._lemmas("noun").get(lemma.lower().replace(" ", "_"), ())):
            words, hypernym_offsets = self._synset(offset)
            hypernyms = tuple(w for h in hypernym_offsets for w in self._synset(h)[0])
            out.append(Sense(rank=rank, synonyms=words, hypernyms=hypernyms))
        return out
