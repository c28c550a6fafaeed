"""Fixed attribute vectors for the synthetic world: one-hot colour ⊕ one-hot shape (⊕ ...).

A diagnostic upper bound on semantic quality: the vector of "red circle" is exactly the
concatenation of a one-hot over the colour vocabulary and a one-hot over the shape
vocabulary (divided by sqrt(number of groups) to have unit norm), so compositions share
exactly what their words share and nothing else.

Names are parsed into words against the vocabularies: every group contributes exactly one
entry, entries may span several words ("light blue"), word order is free, and a word that is
in no vocabulary is an error.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np

from zsp_ros.semantics.base import TextEncoder, check_names


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.lower().split())


class AttributeEncoder(TextEncoder):
    """Concatenated one-hot attribute vectors.

    Args:
        vocabularies: ordered groups, e.g. ``{"colour": ["red", "green"], "shape": ["circle",
            "star"]}``; an entry may hold several words; no entry may appear in two groups.

    Attributes:
        dim: the total vocabulary size (sum over groups).
        identifier: ``attributes:<first 12 hex of the sha256 of the vocabularies as JSON>``.
    """

    def __init__(self, *, vocabularies: Mapping[str, Sequence[str]]) -> None:
        if not vocabularies:
            raise ValueError("vocabularies must name at least one attribute group")
        self.vocabularies = {str(g): [str(e) for e in entries] for g, entries in vocabularies.items()}
        self._entries: dict[tuple[str, ...], tuple[int, int]] = {}  # words -> (group, column)
        column = 0
        for g, (group, entries) in enumerate(self.vocabularies.items()):
            if not entries:
                raise ValueError(f"attribute group {group!r} is empty")
            for entry in entries:
                words = _words(entry)
                if not words:
                    raise ValueError(f"attribute group {group!r} has an empty entry")
                if words in self._entries:
                    raise ValueError(f"attribute {entry!r} appears twice in the vocabularies")
                self._entries[words] = (g, column)
                column += 1
        self.dim = column
        self._num_groups = len(self.vocabularies)
        self._longest = max(len(w) for w in self._entries)
        digest = hashlib.sha256(json.dumps(self.vocabularies, sort_keys=False).encode()).hexdigest()
        self.identifier = f"attributes:{digest[:12]}"

    @classmethod
    def from_names(cls, names: Sequence[str], *, groups: Sequence[str] = ("colour", "shape")
                   ) -> AttributeEncoder:
        """Infer two vocabularies from names "<first word> <rest>" (e.g. "red circle").

        The first word of each name goes to ``groups[0]``, the remaining words (as one entry)
        to ``groups[1]``; entries keep their first-seen order.
        """
        if len(groups) != 2:
            raise ValueError(f"from_names infers exactly two groups, got {list(groups)}")
        first: dict[str, None] = {}
        rest: dict[str, None] = {}
        for name in check_names(names):
            words = _words(name)
            if len(words) < 2:
                raise ValueError(f"cannot split {name!r} into '<{groups[0]}> <{groups[1]}>'")
            first[words[0]] = None
            rest[" ".join(words[1:])] = None
        return cls(vocabularies={groups[0]: list(first), groups[1]: list(rest)})

    def parse(self, name: str) -> list[str]:
        """The attribute entry of every group for ``name``, in group order (raises if unparsable)."""
        words = _words(name)
        chosen: list[tuple[str, ...] | None] = [None] * self._num_groups
        i = 0
        while i < len(words):
            for length in range(min(self._longest, len(words) - i), 0, -1):  # longest match first
                span = words[i:i + length]
                if span in self._entries:
                    g, _ = self._entries[span]
                    if chosen[g] is not None:
                        group = list(self.vocabularies)[g]
                        raise ValueError(f"{name!r} names two {group} attributes: "
                                         f"{' '.join(chosen[g])!r} and {' '.join(span)!r}")
                    chosen[g] = span
                    i += length
                    break
            else:
                raise ValueError(f"{name!r}: the word {words[i]!r} is in no attribute vocabulary "
                                 f"({', '.join(self.vocabularies)})")
        missing = [group for group, c in zip(self.vocabularies, chosen) if c is None]
        if missing:
            raise ValueError(f"{name!r} names no {' and no '.join(missing)} attribute")
        return [" ".join(c) for c in chosen]

    def _encode(self, names: list[str]) -> np.ndarray:
        out = np.zeros((len(names), self.dim), dtype=np.float32)
        for row, name in enumerate(names):
            for entry in self.parse(name):
                out[row, self._entries[_words(entry)][1]] = 1.0
        return out / np.sqrt(self._num_groups)
