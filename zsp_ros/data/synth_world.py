"""The categories of the synthetic zero-shot world: compositions of attributes named in words.

Things are ``colour × shape`` ("red circle", "purple star"): solid shapes.
Stuff is ``colour × texture`` ("gray bricks", "blue dots"): textured background regions.
Ids are stable: things first (colour-major), then stuff; id 1 is "red circle".

The default unseen split holds out one thing per thing colour along a fixed diagonal of the
colour × shape grid and three stuff categories along a diagonal of the colour × texture grid
(11 of 64 categories, 17 %), so that every unseen category's colour and its shape or texture
also appear in some seen category — the condition for a text embedding to carry any
knowledge about it.
"""
from __future__ import annotations

from typing import Any, Sequence

from zsp_ros.data.categories import CocoCategory, make_split

# Thing colours: name -> RGB (uint8). Saturated and far apart in hue/lightness so they stay
# recognisable after the renderer's illumination change (x0.8-1.2) and noise.
THING_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 175, 55),
    "blue": (35, 75, 225),
    "yellow": (240, 215, 30),
    "purple": (135, 50, 185),
    "orange": (250, 135, 20),
    "pink": (250, 135, 200),
    "white": (245, 245, 245),
}
THING_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")

# Stuff colours: muted so that a thing of the same colour word still stands out on them.
STUFF_COLOURS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "brown": (130, 85, 45),
    "green": (75, 125, 70),
    "blue": (70, 100, 160),
}
STUFF_TEXTURES: tuple[str, ...] = ("stripes", "dots", "checks", "bricks")


def _default_unseen_names() -> list[str]:
    colours = list(THING_COLOURS)
    things = [f"{c} {THING_SHAPES[(5 * i + 2) % len(THING_SHAPES)]}" for i, c in enumerate(colours)]
    stuff_colours = list(STUFF_COLOURS)
    stuff = [f"{stuff_colours[j]} {STUFF_TEXTURES[(j + 1) % len(STUFF_TEXTURES)]}" for j in range(3)]
    return things + stuff


def world_categories() -> list[CocoCategory]:
    """All categories, things first then stuff, ids 1..N.

    Each is ``{"id", "name", "isthing", "colour", "shape" | "texture", "color": [r, g, b]}``;
    ``color`` is the nominal RGB (COCO panoptic's display colour field), ``colour`` the word.
    """
    cats: list[CocoCategory] = []
    for colour, rgb in THING_COLOURS.items():
        for shape in THING_SHAPES:
            cats.append({"id": len(cats) + 1, "name": f"{colour} {shape}", "isthing": True,
                         "colour": colour, "shape": shape, "color": list(rgb)})
    for colour, rgb in STUFF_COLOURS.items():
        for texture in STUFF_TEXTURES:
            cats.append({"id": len(cats) + 1, "name": f"{colour} {texture}", "isthing": False,
                         "colour": colour, "texture": texture, "color": list(rgb)})
    return cats


DEFAULT_UNSEEN: tuple[str, ...] = tuple(_default_unseen_names())


def _attributes(cat: CocoCategory) -> list[tuple[str, str]]:
    """(kind, word) pairs of a category, e.g. [("colour", "red"), ("shape", "circle")]."""
    kind = "shape" if cat["isthing"] else "texture"
    return [("colour", cat["colour"]), (kind, cat[kind])]


def check_unseen(categories: Sequence[CocoCategory], unseen_names: Sequence[str]) -> list[int]:
    """Validate an unseen split given by names; return the unseen ids in category order.

    Raises ValueError when a name is not a category, a name repeats, or an unseen
    category's colour or shape/texture is not carried by any seen category.
    """
    names = {c["name"]: c for c in categories}
    wanted = [n.strip() for n in unseen_names]
    for name in wanted:
        if name not in names:
            close = [n for n in names if set(n.split()) & set(name.split())][:6]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise ValueError(f"unseen category {name!r} is not a category of the synthetic world{hint}")
    dupes = sorted({n for n in wanted if wanted.count(n) > 1})
    if dupes:
        raise ValueError(f"unseen categories listed twice: {', '.join(dupes)}")
    unseen = set(wanted)
    seen_attributes = {a for c in categories if c["name"] not in unseen for a in _attributes(c)}
    for name in wanted:
        for kind, word in _attributes(names[name]):
            if (kind, word) not in seen_attributes:
                raise ValueError(
                    f"unseen split leaves the {kind} {word!r} of {name!r} in no seen category; "
                    f"keep at least one category with {kind} {word!r} seen")
    if not any(c["isthing"] and c["name"] not in unseen for c in categories):
        raise ValueError("unseen split leaves no seen thing category")
    if not any(not c["isthing"] and c["name"] not in unseen for c in categories):
        raise ValueError("unseen split leaves no seen stuff category")
    return [c["id"] for c in categories if c["name"] in unseen]


def parse_unseen(text: str | None) -> list[str] | None:
    """``"red circle, blue star"`` -> ["red circle", "blue star"]; None -> None; "" -> []."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def world_split(unseen_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The split.json dict of the synthetic world (default unseen split when None)."""
    cats = world_categories()
    names = list(DEFAULT_UNSEEN if unseen_names is None else unseen_names)
    return make_split(cats, check_unseen(cats, names))
