"""What a name became in the phrasing rewrite: the rewritten words (`Replacement`) and the whole
reading of a name (`Interpretation`), which the add response reports to the user."""
from __future__ import annotations

from dataclasses import dataclass


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
