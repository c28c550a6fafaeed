"""Word roles: which kit words name only things or only stuff, and the names that mix them."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from zsp_ros.semantics.base import TextEncoder
from zsp_ros.semantics.build import with_phrasing
from zsp_ros.semantics.word_roles import WordRoles


class _Hashed(TextEncoder):
    """A deterministic stand-in: every text gets its own random unit vector (no two words alike)."""
    identifier, dim = "hashed", 16

    def _encode(self, names):
        return np.stack([np.random.default_rng(zlib.crc32(n.encode())).standard_normal(self.dim)
                         for n in names]).astype(np.float32)

KIT = ["red circle", "green circle", "green stripes", "gray stripes", "red star"]
STUFF = ["green stripes", "gray stripes"]


def test_roles_come_from_the_kit_names():
    roles = WordRoles.from_names(KIT, STUFF)
    assert roles.things == {"red", "circle", "star"} and roles.stuff == {"gray", "stripes"}   # green is both
    assert roles.clash(["gray", "star"]) == ("star", "gray")
    assert roles.clash(["green", "star"]) is None and roles.clash(["red", "circle"]) is None
    assert WordRoles.from_names(KIT, []).clash(["gray", "star"]) is None          # no stuff names: no roles


def test_a_name_mixing_the_roles_is_refused_by_name():
    encoder = with_phrasing(_Hashed(), {"vocabulary": KIT, "stuff": STUFF})
    refusal = encoder.refusal(encoder.interpret(["gray star"])[0])
    assert refusal is not None and "'star' names only things" in refusal and "'gray' only stuff" in refusal
    assert encoder.refusal(encoder.interpret(["green star"])[0]) is None            # green: both roles
    assert encoder.refusal(encoder.interpret(["red stripes"])[0]) is not None
    off = with_phrasing(_Hashed(), {"vocabulary": KIT, "stuff": STUFF, "refuse_role_clashes": False})
    assert off.refusal(off.interpret(["gray star"])[0]) is None
    no_roles = with_phrasing(_Hashed(), {"vocabulary": KIT})
    assert no_roles.refusal(no_roles.interpret(["gray star"])[0]) is None


def test_stuff_names_that_are_not_a_list_of_names_are_refused():
    with pytest.raises(ValueError, match="phrasing 'stuff' must be a list of category names"):
        with_phrasing(_Hashed(), {"vocabulary": KIT, "stuff": "gray stripes"})
