"""The words of a category name, as every part of the phrasing rewrite splits them."""
from __future__ import annotations

import re

WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text``: runs of letters/digits (inner apostrophes kept); a hyphen separates
    words, so the parts of "wall-concrete" or "ring-shaped" are rewritten (or kept) one by one."""
    return WORD.findall(text.lower())
