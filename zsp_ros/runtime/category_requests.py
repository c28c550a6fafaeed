"""Validation of add / remove requests against the current category set, with messages meant for the user.

Every problem in a request is listed in one `CategoryError` (the service answers ``success=false``
with it; the CLI prints it). Nothing here changes state.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from zsp_ros.kit.category_set import CategorySet, name_key

MAX_NAME_CHARS = 64
MAX_NAMES_PER_REQUEST = 256


class CategoryError(ValueError):
    """A rejected add/remove request; the message is meant for the user (service response, CLI).

    ``refused``: {name: reason} when the request was refused because of particular names (the rest
    of the request would be accepted without them); empty otherwise.
    """

    def __init__(self, message: str, refused: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.refused = dict(refused or {})


def validate_names(names: Sequence[str], isthing: bool | Sequence[bool] | None,
                   current: CategorySet) -> tuple[list[str], list[bool]]:
    """Check an add request; return (names, isthing per name) or raise CategoryError listing every problem."""
    if isinstance(names, str):
        raise CategoryError(f"names must be a list of names, got the single string {names!r}")
    names = list(names)
    if not names:
        raise CategoryError("no names given")
    if len(names) > MAX_NAMES_PER_REQUEST:
        raise CategoryError(f"{len(names)} names in one request; at most {MAX_NAMES_PER_REQUEST}")
    problems: list[str] = []
    seen_keys: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str):
            problems.append(f"{name!r} is not a string ({type(name).__name__})")
            continue
        shown = repr(name if len(name) <= 40 else name[:40] + "…")
        if not name.strip():
            problems.append(f"name {shown} is empty")
            continue
        if name != name.strip():
            problems.append(f"name {shown} has leading or trailing whitespace")
        if len(name) > MAX_NAME_CHARS:
            problems.append(f"name {shown} is {len(name)} characters long (at most {MAX_NAME_CHARS})")
        if not name.isprintable():
            problems.append(f"name {shown} contains non-printable characters")
        key = name_key(name)
        if key in seen_keys:
            problems.append(f"name {shown} is given more than once")
            continue
        seen_keys[key] = name
        existing = current.get(name)
        if existing is not None:
            problems.append(f"{shown} is already a category (id {existing.id})")
    if isthing is None:
        flags = [True] * len(names)
    elif isinstance(isthing, (bool, np.bool_)):
        flags = [bool(isthing)] * len(names)
    else:
        flags = [bool(v) for v in isthing]
        if len(flags) == 0:
            flags = [True] * len(names)
        elif len(flags) != len(names):
            problems.append(f"isthing has {len(flags)} values for {len(names)} names")
    if problems:
        raise CategoryError("; ".join(problems))
    return names, flags


def validate_added_count(new: int, current: CategorySet, cap: int) -> None:
    """Refuse an add of ``new`` names that would make more than ``cap`` categories of origin "added"."""
    added = sum(c.origin == "added" for c in current)
    if added + new > cap:
        raise CategoryError(f"{added} categories are added already and {new} more would exceed the cap of {cap} "
                            f"added categories (max_added_categories); remove some first")


def validate_remove(names_or_ids: Sequence[str | int] | str | int, current: CategorySet) -> set[int]:
    """Check a remove request (names or ids); return the ids to remove or raise CategoryError listing every problem."""
    if isinstance(names_or_ids, (str, int)):
        names_or_ids = [names_or_ids]
    items = list(names_or_ids)
    if not items:
        raise CategoryError("no categories given")
    problems, gone = [], []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, np.integer)):
            problems.append(f"{item!r} is neither a name nor an id")
            continue
        cat = current.get(item)
        if cat is None:
            problems.append(f"unknown category {item!r}" if isinstance(item, str)
                            else f"unknown category id {int(item)}")
        elif cat.id in gone:
            problems.append(f"category {cat.name!r} (id {cat.id}) is listed more than once")
        else:
            gone.append(cat.id)
    if not problems and len(gone) == len(current):
        problems.append("cannot remove every category; at least one must remain")
    if problems:
        raise CategoryError("; ".join(problems))
    return set(gone)
