"""Which of a kit's words name only things and which only stuff, and the names that mix the two.

Why. A kit's generator recombines the words of its category names; it has seen each word only in the
roles those names give it. In the synthetic world gray and brown are the colours of background
textures only, pink, orange and white of objects only, and a star is always an object: a "gray star"
puts a stuff-only word with a thing-only one. Nothing the kit has seen looks like that, and added,
such names labelled real objects of other categories (results/vocabulary_round4.md: "gray star" took
14-17 segments per seed). A name that mixes the roles is refused by `PhrasingEncoder.refusal` with
``refuse_role_clashes``. A word used in both roles (green: "green circle" and "green stripes") clashes
with nothing, and a kit that gives no stuff names (or none of whose words is exclusive) refuses nothing.

Pure Python, no resources.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zsp_ros.semantics.text_words import words_of


@dataclass(frozen=True)
class WordRoles:
    """``things`` / ``stuff``: the vocabulary words used only in thing / only in stuff category names."""
    things: frozenset[str]
    stuff: frozenset[str]

    @classmethod
    def from_names(cls, names: Sequence[str], stuff_names: Iterable[str]) -> WordRoles:
        """Roles of the words of ``names`` (the kit's category names), ``stuff_names`` being those of its
        stuff categories (the others are things)."""
        stuff_set = {n.casefold() for n in stuff_names}
        if not stuff_set:
            return cls(frozenset(), frozenset())
        roles: dict[str, set[bool]] = {}
        for name in names:
            for word in words_of(name):
                roles.setdefault(word, set()).add(name.casefold() not in stuff_set)
        return cls(things=frozenset(w for w, r in roles.items() if r == {True}),
                   stuff=frozenset(w for w, r in roles.items() if r == {False}))

    def clash(self, words: Iterable[str]) -> tuple[str, str] | None:
        """(a thing-only word, a stuff-only word) of ``words`` when it holds both, else None."""
        words = list(words)
        thing = next((w for w in words if w in self.things), None)
        stuff = next((w for w in words if w in self.stuff), None)
        return (thing, stuff) if thing is not None and stuff is not None else None
