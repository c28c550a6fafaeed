"""Colour words: which colour of a kit's vocabulary a colour name is a shade of (phrasing rule 2).

A colour name is looked up in a colour table (name -> sRGB): Pillow's CSS table (148 names) and the xkcd
colour survey's 949 names (config/colours/xkcd.tsv, public domain; what ~200,000 people called colours,
so it has "scarlet", "amber", "sage"; its values win for a name in both: "azure" is sky blue there,
near-white in CSS). `ColourGrounding` places the name in CIELAB and gives it the vocabulary colour word
that its nearest *labelled* table colours vote for (a table name is labelled by the vocabulary colour
word it ends with: "darkred" -> red, "light grey blue" -> blue), when the nearest is within a CIE76 ΔE.
A basic colour term (Berlin & Kay's eleven) is never grounded as another one. Where in a name a word
may be read as a colour is the phrasing rewrite's business (zsp_ros/semantics/phrasing.py).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from zsp_ros.utils.config_files import find_config

SURVEY_FILE = "xkcd.tsv"
# Berlin & Kay's basic colour terms: one is never grounded as another (module docstring, rule 2)
BASIC_COLOUR_TERMS = frozenset({"black", "white", "gray", "grey", "red", "green", "yellow", "blue", "brown",
                                "purple", "pink", "orange"})


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 255], float [..., 3] -> CIELAB (D65) [..., 3] (L in [0, 100])."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def css_colour_table() -> dict[str, tuple[int, int, int]]:
    """Pillow's CSS colour names -> sRGB (empty if Pillow is not installed)."""
    try:
        from PIL import ImageColor
    except ImportError:                    # the colour rule is then simply off
        return {}
    return {name: ImageColor.getrgb(name)[:3] for name in sorted(ImageColor.colormap)}


def survey_table_path() -> Path | None:
    """config/colours/xkcd.tsv of the source checkout, else of the installed share; None if neither."""
    return find_config("colours", SURVEY_FILE)


def read_colour_table(path: str | Path) -> dict[str, tuple[int, int, int]]:
    """A ``name<TAB>#rrggbb`` file ('#' lines are comments) -> {name: sRGB}; a malformed line is an
    error naming the file and line."""
    table: dict[str, tuple[int, int, int]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, value = line.partition("\t")
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value.strip()) or not name.strip():
            raise ValueError(f"{path}:{number}: expected 'name<TAB>#rrggbb', got {line!r}")
        hex_value = value.strip()[1:]
        table[name.strip().lower()] = (int(hex_value[0:2], 16), int(hex_value[2:4], 16), int(hex_value[4:6], 16))
    return table


def build_colour_table(*, survey: bool = True) -> dict[str, tuple[int, int, int]]:
    """The colour table of the colour rule: CSS, then (``survey``) the xkcd survey's names over it, each
    name also under its other grey/gray spelling when that is not a name of its own."""
    table = css_colour_table()
    path = survey_table_path() if survey else None
    if path is not None:
        table.update(read_colour_table(path))
    for name in list(table):
        for a, b in (("grey", "gray"), ("gray", "grey")):
            table.setdefault(name.replace(a, b), table[name])
    return table


class ColourGrounding:
    """Colour word -> the vocabulary colour word it is a shade of (or None).

    Args:
        vocabulary: the known words; those that are table colour names are the targets.
        table: colour name -> sRGB (default: `build_colour_table`).
        max_delta_e, neighbours: `PhrasingConfig.colour_max_delta_e`, ``colour_neighbours``.
    """

    def __init__(self, *, vocabulary: Sequence[str], table: Mapping[str, tuple[int, int, int]] | None = None,
                 max_delta_e: float, neighbours: int) -> None:
        table = build_colour_table() if table is None else dict(table)
        self.names = sorted(table)
        self.lab = srgb_to_lab(np.array([table[n] for n in self.names], dtype=np.float64).reshape(-1, 3))
        # targets: the vocabulary's colour words. A survey name that is also a thing ("apple", "brick",
        # "sky", COCO words) is no target: only basic colour terms and CSS names are.
        css = set(css_colour_table())
        targets = sorted({w for w in vocabulary if w in table and (w in BASIC_COLOUR_TERMS or w in css)},
                         key=len, reverse=True)
        # a table colour is labelled by the vocabulary colour word its name ends with (longest first)
        self.labels = [next((t for t in targets if n.endswith(t)), None) for n in self.names]
        self.targets = frozenset(targets)
        self.max_delta_e = float(max_delta_e)
        self.neighbours = int(neighbours)
        self._vocabulary = set(vocabulary)

    def ground(self, word: str) -> tuple[str, float] | None:
        """(vocabulary colour word, ΔE to the nearest labelled colour) for a table colour ``word``
        outside the vocabulary; None when the word is not a table colour or nothing is close."""
        if word in self._vocabulary or word not in self.names:
            return None
        if word in BASIC_COLOUR_TERMS:          # only the other spelling of the same basic term
            other = {"grey": "gray", "gray": "grey"}.get(word)
            return (other, 0.0) if other in self._vocabulary else None
        own = self.lab[self.names.index(word)]
        rows = [i for i, label in enumerate(self.labels) if label is not None and self.names[i] != word]
        if not rows:
            return None
        dist = np.linalg.norm(self.lab[rows] - own, axis=1)
        order = np.argsort(dist, kind="stable")[:self.neighbours]
        if float(dist[order[0]]) > self.max_delta_e:
            return None
        votes: dict[str, list[float]] = {}
        for j in order:
            votes.setdefault(str(self.labels[rows[j]]), []).append(float(dist[j]))
        # most votes; a tie goes to the smaller summed distance, then to the name (deterministic)
        label = min(votes, key=lambda k: (-len(votes[k]), sum(votes[k]), k))
        return label, float(dist[order[0]])
