"""The category set a segmenter labels with: an immutable value object with a version.

Index ``k`` of a `CategorySet` is row ``k`` of the classifier head that goes with it (row K is
no-object). Ids are stable (docs/CONTRACTS.md): never renumbered, never reused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

import numpy as np

Origin = Literal["seen", "added"]
ORIGINS: tuple[str, ...] = ("seen", "added")


@dataclass(frozen=True)
class Category:
    """One category: stable ``id`` >= 1, plain-language ``name``, thing or stuff, and where it came from.

    origin "seen": trained with real examples (in the kit); "added": added by name at runtime.
    """
    id: int
    name: str
    isthing: bool
    origin: Origin = "seen"

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, (int, np.integer)) or self.id < 1:
            raise ValueError(f"category id must be an integer >= 1, got {self.id!r} ({self.name!r})")
        if self.origin not in ORIGINS:
            raise ValueError(f"category origin must be one of {ORIGINS}, got {self.origin!r}")

    def to_dict(self) -> dict:
        return {"id": int(self.id), "name": self.name, "isthing": bool(self.isthing), "origin": self.origin}

    @classmethod
    def from_dict(cls, d: dict) -> Category:
        return cls(id=int(d["id"]), name=str(d["name"]), isthing=bool(d["isthing"]),
                   origin=d.get("origin", "seen"))


@dataclass(frozen=True)
class CategorySet:
    """An ordered, versioned, immutable set of categories (order = classifier row order).

    ``text_encoder`` is the identifier of the encoder whose embeddings named the categories.
    """
    categories: tuple[Category, ...]
    version: int = 0
    text_encoder: str = ""
    _by_id: dict = field(init=False, repr=False, compare=False)
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cats = tuple(self.categories)
        object.__setattr__(self, "categories", cats)
        by_id, by_name = {}, {}
        for k, c in enumerate(cats):
            if c.id in by_id:
                raise ValueError(f"category id {c.id} appears twice ({by_id[c.id][1].name!r}, {c.name!r})")
            key = name_key(c.name)
            if key in by_name:
                raise ValueError(f"category name {c.name!r} appears twice (ids {by_name[key][1].id}, {c.id})")
            by_id[c.id] = (k, c)
            by_name[key] = (k, c)
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_by_name", by_name)

    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self):
        return iter(self.categories)

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.categories]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    @property
    def isthing(self) -> np.ndarray:
        """bool [K] in row order."""
        return np.array([c.isthing for c in self.categories], dtype=bool)

    def get(self, id_or_name: int | str) -> Category | None:
        """The category with this id, or this name (case-insensitive), or None."""
        if isinstance(id_or_name, str):
            hit = self._by_name.get(name_key(id_or_name))
        else:
            hit = self._by_id.get(int(id_or_name))
        return None if hit is None else hit[1]

    def index_of(self, category_id: int) -> int:
        """Row of ``category_id`` in the head; KeyError when absent."""
        return self._by_id[int(category_id)][0]

    def to_dict(self) -> dict:
        return {"version": self.version, "text_encoder": self.text_encoder,
                "categories": [c.to_dict() for c in self.categories]}

    @classmethod
    def from_dicts(cls, items: Iterable[dict], *, version: int = 0, text_encoder: str = "") -> CategorySet:
        return cls(tuple(Category.from_dict(d) for d in items), version=version, text_encoder=text_encoder)


def name_key(name: str) -> str:
    """How names are compared for duplicates: case-insensitive (``str.casefold``)."""
    return name.casefold()
