"""The vocabulary benchmark's name sets: reading config/vocabulary/*.json and mapping added names back to ground truth.

A name set maps every unseen category of the world to the words a user might type (or, for
``absent`` sets, adds names of things that never occur, next to the canonical unseen names).
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsp_ros.utils.config_files import require_config

NAMES_FILE = "unseen_paraphrases.json"
ABSENT_ID = -1          # the ground-truth id an absent name maps to: no world category has it
FAMILIES = ("canonical", "colour_synonyms", "shape_synonyms", "everyday", "spelling", "absent")


@dataclass(frozen=True)
class NameSet:
    """One part of a name set: the names added together to a fresh registry.

    key: "canonical" or "<family>/<part>"; kind: "canonical" | "paraphrase" | "absent";
    truth: casefolded added name -> world category id it names (None: names nothing in the world).
    """
    key: str
    family: str
    part: str
    kind: str
    names: tuple[str, ...]
    isthing: tuple[bool, ...]
    truth: dict[str, int | None]


def default_names_file() -> Path:
    """config/vocabulary/unseen_paraphrases.json of the source checkout, else of the installed share."""
    return require_config("vocabulary", NAMES_FILE)


def load_name_sets(document: Mapping[str, Any], split: Mapping[str, Any]) -> list[NameSet]:
    """The name sets of a names document (the JSON of `default_names_file`) for a world's split.

    Raises ValueError when the document's unseen list is not the world's, a paraphrase part does not
    give exactly one phrase per unseen category, a part repeats a name, or an absent name is a
    category of the world.
    """
    world = {c["name"].casefold(): c for c in split["categories"]}
    unseen = [c for c in split["categories"] if not c["seen"]]
    if {n.casefold() for n in document["unseen"]} != {c["name"].casefold() for c in unseen}:
        raise ValueError(f"the names file is written for the unseen categories {sorted(document['unseen'])}; "
                         f"this world's are {sorted(c['name'] for c in unseen)}")
    sets = [_name_set("canonical", "canonical", "", "canonical", [(c["name"], c["isthing"], c["id"]) for c in unseen])]
    for family, body in document.get("paraphrase_sets", {}).items():
        for part in ("dev", "heldout"):
            phrases = {k.casefold(): v for k, v in body[part].items()}
            if set(phrases) != {c["name"].casefold() for c in unseen}:
                raise ValueError(f"{family}/{part} must give one phrase per unseen category; it has "
                                 f"{sorted(phrases)}")
            rows = [(phrases[c["name"].casefold()], c["isthing"], c["id"]) for c in unseen]
            sets.append(_name_set(f"{family}/{part}", family, part, "paraphrase", rows))
    for family, body in document.get("absent_sets", {}).items():
        for part in ("dev", "heldout"):
            clash = [e["name"] for e in body[part] if e["name"].casefold() in world]
            if clash:
                raise ValueError(f"{family}/{part}: {clash} are categories of the world, not absent names")
            rows = [(c["name"], c["isthing"], c["id"]) for c in unseen]
            rows += [(e["name"], bool(e["isthing"]), None) for e in body[part]]
            sets.append(_name_set(f"{family}/{part}", family, part, "absent", rows))
    return sets


def _name_set(key: str, family: str, part: str, kind: str, rows: list[tuple[str, bool, int | None]]) -> NameSet:
    truth: dict[str, int | None] = {}
    for name, _, world_id in rows:
        if name.casefold() in truth:
            raise ValueError(f"{key}: the name {name!r} is given twice")
        truth[name.casefold()] = world_id
    return NameSet(key=key, family=family, part=part, kind=kind, names=tuple(r[0] for r in rows),
                   isthing=tuple(bool(r[1]) for r in rows), truth=truth)


def ground_truth_ids(categories: Iterable[Any], truth: Mapping[str, int | None],
                     world_ids: Mapping[str, int]) -> dict[int, int]:
    """Registry category id -> the world category id its segments are scored as.

    ``categories``: objects with ``id`` and ``name`` (a `CategorySet`); ``truth``: casefolded added
    name -> world id, None for an absent name (-> ``ABSENT_ID``); ``world_ids``: casefolded world
    name -> id (the kit's seen categories map by name). Raises ValueError for a name in neither.
    """
    out: dict[int, int] = {}
    for c in categories:
        key = c.name.casefold()
        if key in truth:
            target = truth[key]
            out[int(c.id)] = ABSENT_ID if target is None else int(target)
        elif key in world_ids:
            out[int(c.id)] = int(world_ids[key])
        else:
            raise ValueError(f"category {c.name!r} (id {c.id}) is neither a name of the set nor a world category")
    return out


def absent_shares(segments: Iterable[tuple[int, int]], absent: Collection[int]) -> dict[str, Any]:
    """How much of the prediction carries an absent name.

    ``segments``: (category id, area in pixels) of every predicted segment of every image;
    ``absent``: the category ids of absent names. Shares are of predicted segments and of predicted
    (non-void) pixels; None when nothing was predicted. ``per_category``: id -> {segments, pixels}
    for every absent id (zeros included).
    """
    n = pixels = absent_n = absent_pixels = 0
    per = {int(a): {"segments": 0, "pixels": 0} for a in absent}
    for category_id, area in segments:
        n += 1
        pixels += int(area)
        if int(category_id) in per:
            absent_n += 1
            absent_pixels += int(area)
            per[int(category_id)]["segments"] += 1
            per[int(category_id)]["pixels"] += int(area)
    return {"segments": n, "absent_segments": absent_n, "segment_share": absent_n / n if n else None,
            "pixels": pixels, "absent_pixels": absent_pixels,
            "pixel_share": absent_pixels / pixels if pixels else None, "per_category": per}
