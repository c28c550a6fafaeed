"""Tiny helpers for category lists and the seen/unseen split file (docs/CONTRACTS.md).

A category is ``{"id": int >= 1, "name": str, "isthing": bool}`` (extra keys allowed); ids are
COCO ids, stable and never renumbered. The split file ``split.json`` is::

    {"categories": [{"id", "name", "isthing", "seen": bool, ...}],
     "seen_ids": [...], "unseen_ids": [...]}

The *contiguous index* of a category is its position in a given category list (for example
the semantic PNGs use the order of ``split.json``'s categories; a training set uses the
order of its own training list). Pure Python + numpy, no torch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

IGNORE_INDEX = 255  # semantic label of void / ignored pixels

CocoCategory = dict[str, Any]   # a COCO "categories" entry: id, name, isthing, (color, supercategory)


def validate_categories(categories: Sequence[CocoCategory], *, source: str = "categories") -> None:
    """Raise ValueError naming ``source`` unless ids are ints >= 1, ids and names unique, isthing bool."""
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    for i, cat in enumerate(categories):
        for key in ("id", "name", "isthing"):
            if key not in cat:
                raise ValueError(f"{source}: category #{i} {cat!r} has no {key!r}")
        cid, name = cat["id"], cat["name"]
        if not isinstance(cid, int) or isinstance(cid, bool) or cid < 1:
            raise ValueError(f"{source}: category {name!r} has id {cid!r}; ids are ints >= 1")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{source}: category id {cid} has an empty or non-string name {name!r}")
        if cat["isthing"] not in (True, False, 0, 1):
            raise ValueError(f"{source}: category {name!r} has isthing {cat['isthing']!r}; want a bool")
        if cid in seen_ids:
            raise ValueError(f"{source}: category id {cid} appears twice")
        if name in seen_names:
            raise ValueError(f"{source}: category name {name!r} appears twice")
        seen_ids.add(cid)
        seen_names.add(name)


def make_split(categories: Sequence[CocoCategory], unseen_ids: Iterable[int]) -> dict[str, Any]:
    """Build the split.json dict: every category with ``seen`` set, plus ``seen_ids``/``unseen_ids``.

    Categories keep their order (things first, then stuff, for the synthetic world).
    """
    validate_categories(categories)
    unseen = set(int(i) for i in unseen_ids)
    known = {c["id"] for c in categories}
    unknown = sorted(unseen - known)
    if unknown:
        raise ValueError(f"unseen ids {unknown} are not category ids")
    cats = [{**c, "isthing": bool(c["isthing"]), "seen": c["id"] not in unseen} for c in categories]
    return {"categories": cats,
            "seen_ids": [c["id"] for c in cats if c["seen"]],
            "unseen_ids": [c["id"] for c in cats if not c["seen"]]}


def read_split(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a split.json; errors name the file."""
    path = Path(path)
    try:
        split = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"split file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"split file {path} is not valid JSON: {exc}") from None
    if not isinstance(split, dict) or "categories" not in split:
        raise ValueError(f"split file {path} has no 'categories' list")
    validate_categories(split["categories"], source=str(path))
    for cat in split["categories"]:
        if not isinstance(cat.get("seen"), bool):
            raise ValueError(f"{path}: category {cat['name']!r} has no boolean 'seen'")
    seen = [c["id"] for c in split["categories"] if c["seen"]]
    unseen = [c["id"] for c in split["categories"] if not c["seen"]]
    if "seen_ids" in split and sorted(split["seen_ids"]) != sorted(seen):
        raise ValueError(f"{path}: 'seen_ids' disagrees with the categories' 'seen' flags")
    if "unseen_ids" in split and sorted(split["unseen_ids"]) != sorted(unseen):
        raise ValueError(f"{path}: 'unseen_ids' disagrees with the categories' 'seen' flags")
    split["seen_ids"], split["unseen_ids"] = seen, unseen
    return split


def split_to_json_bytes(split: dict[str, Any]) -> bytes:
    """Deterministic serialisation of a split dict (indent 2, trailing newline)."""
    return (json.dumps(split, indent=2) + "\n").encode()


def by_id(categories: Sequence[CocoCategory]) -> dict[int, CocoCategory]:
    """Map category id -> category."""
    return {c["id"]: c for c in categories}


def by_name(categories: Sequence[CocoCategory]) -> dict[str, CocoCategory]:
    """Map category name -> category."""
    return {c["name"]: c for c in categories}


def contiguous_index(categories: Sequence[CocoCategory]) -> dict[int, int]:
    """Map category id -> position in ``categories`` (the contiguous class index)."""
    return {c["id"]: i for i, c in enumerate(categories)}


def remap_lut(source: Sequence[CocoCategory], target: Sequence[CocoCategory],
              *, ignore: int = IGNORE_INDEX) -> np.ndarray:
    """uint8 [256] table mapping a label indexed in ``source`` order to its index in ``target``.

    Labels whose category is not in ``target``, and ``ignore`` itself, map to ``ignore``.
    Use: ``lut[label_png]``.
    """
    if len(target) >= ignore:
        raise ValueError(f"{len(target)} target categories do not fit below ignore index {ignore}")
    lut = np.full(256, ignore, dtype=np.uint8)
    index = contiguous_index(target)
    for i, cat in enumerate(source):
        if cat["id"] in index:
            lut[i] = index[cat["id"]]
    return lut


def select(categories: Sequence[CocoCategory], ids: Iterable[int]) -> list[CocoCategory]:
    """The categories whose id is in ``ids``, in the order of ``categories``; unknown ids raise."""
    wanted = list(ids)
    known = by_id(categories)
    missing = [i for i in wanted if i not in known]
    if missing:
        raise ValueError(f"category ids {missing} are not in the category list")
    keep = set(wanted)
    return [c for c in categories if c["id"] in keep]
