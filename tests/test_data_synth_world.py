"""Synthetic world: category definitions, the default unseen split and its validation, rendering."""
from __future__ import annotations

import numpy as np
import pytest

from zsp_ros.data.categories import make_split, read_split, remap_lut, split_to_json_bytes
from zsp_ros.data.synth_render import render_scene, shape_mask
from zsp_ros.data.synth_world import (
    DEFAULT_UNSEEN,
    THING_COLOURS,
    THING_SHAPES,
    check_unseen,
    parse_unseen,
    world_categories,
    world_split,
)


def test_categories_are_compositions_named_in_words():
    cats = world_categories()
    things = [c for c in cats if c["isthing"]]
    stuff = [c for c in cats if not c["isthing"]]
    assert len(things) >= 48 and len(stuff) >= 10
    assert [c["id"] for c in cats] == list(range(1, len(cats) + 1))
    assert cats.index(stuff[0]) == len(things)          # things first, then stuff
    assert cats[0]["name"] == "red circle"
    for c in cats:
        words = c["name"].split()
        assert len(words) == 2 and all(w.isalpha() and w.islower() for w in words)
        assert words[0] == c["colour"] and words[1] == (c["shape"] if c["isthing"] else c["texture"])
    assert len({c["name"] for c in cats}) == len(cats)
    # Thing colours far apart (min pairwise RGB distance) so they survive photometric noise.
    rgb = np.array(list(THING_COLOURS.values()), dtype=float)
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 1e9
    assert dist.min() > 70


def test_default_split_fraction_and_attribute_coverage():
    split = world_split()
    cats = split["categories"]
    unseen = [c for c in cats if not c["seen"]]
    assert [c["name"] for c in unseen] == list(DEFAULT_UNSEEN)
    assert 0.15 <= len(unseen) / len(cats) <= 0.20
    assert any(c["isthing"] for c in unseen) and any(not c["isthing"] for c in unseen)
    seen = [c for c in cats if c["seen"]]
    for c in unseen:
        kind = "shape" if c["isthing"] else "texture"
        assert any(s["colour"] == c["colour"] for s in seen), c["name"]
        assert any(s.get(kind) == c[kind] for s in seen), c["name"]
    assert split["seen_ids"] == [c["id"] for c in seen]
    assert split["unseen_ids"] == [c["id"] for c in unseen]
    assert world_split() == split                                    # deterministic


def test_unseen_override_and_errors():
    cats = world_categories()
    assert check_unseen(cats, ["red circle", "blue dots"]) == [1, next(c["id"] for c in cats
                                                                      if c["name"] == "blue dots")]
    assert world_split([])["unseen_ids"] == []
    with pytest.raises(ValueError, match="'red blob' is not a category"):
        check_unseen(cats, ["red blob"])
    with pytest.raises(ValueError, match="listed twice"):
        check_unseen(cats, ["red circle", "red circle"])
    every_red = [f"red {s}" for s in THING_SHAPES]                  # colour red never seen
    with pytest.raises(ValueError, match="colour 'red'"):
        check_unseen(cats, every_red)
    every_circle = [f"{c} circle" for c in THING_COLOURS]           # shape circle never seen
    with pytest.raises(ValueError, match="shape 'circle'"):
        check_unseen(cats, every_circle)
    assert parse_unseen(" red circle , blue dots ,") == ["red circle", "blue dots"]
    assert parse_unseen(None) is None and parse_unseen("") == []


def test_split_file_round_trip_and_lut(tmp_path):
    split = world_split()
    path = tmp_path / "split.json"
    path.write_bytes(split_to_json_bytes(split))
    assert read_split(path) == split
    seen = [c for c in split["categories"] if c["seen"]]
    lut = remap_lut(split["categories"], seen)
    first_unseen = next(i for i, c in enumerate(split["categories"]) if not c["seen"])
    assert lut[first_unseen] == 255 and lut[255] == 255 and lut[0] == 0
    with pytest.raises(ValueError, match="ids are ints >= 1"):
        make_split([{"id": 0, "name": "x", "isthing": True}], [])


def test_shapes_are_distinct_masks():
    ys, xs = np.mgrid[-1.2:1.2:64j, -1.2:1.2:64j]
    masks = {s: shape_mask(s, xs, ys) for s in THING_SHAPES}
    for a in THING_SHAPES:
        assert masks[a].sum() > 200, a
        for b in THING_SHAPES:
            if a < b:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert iou < 0.8, (a, b, iou)
    assert not masks["ring"][32, 32] and masks["circle"][32, 32]      # the ring has a hole


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_render_scene_labels_every_pixel(size):
    cats = world_categories()
    things = [c for c in cats if c["isthing"]]
    stuff = [c for c in cats if not c["isthing"]]
    n_things = []
    for seed in range(30):
        scene = render_scene(np.random.default_rng(seed), height=size[0], width=size[1], things=things, stuff=stuff)
        assert scene.image.shape == (*size, 3) and scene.image.dtype == np.uint8
        assert scene.segment_map.shape == size and scene.segment_map.min() >= 0
        counts = np.bincount(scene.segment_map.ravel(), minlength=len(scene.segments))
        assert len(counts) == len(scene.segments) and (counts > 0).all()
        stuff_ids = [s["category_id"] for s in scene.segments if not s["isthing"]]
        assert 1 <= len(stuff_ids) <= 3 and len(set(stuff_ids)) == len(stuff_ids)
        assert [s["isthing"] for s in scene.segments] == sorted(s["isthing"] for s in scene.segments)
        n_things.append(sum(s["isthing"] for s in scene.segments))
        # Photometric noise: a thing's pixels are not one value.
        for k, seg in enumerate(scene.segments):
            if seg["isthing"] and counts[k] > 20:
                assert scene.image[scene.segment_map == k].std(axis=0).max() > 1.0
    assert max(n_things) >= 4 and min(n_things) <= 2


def test_render_colour_survives_noise():
    """A rendered thing's median colour points (cosine, so brightness-free) at its own colour."""
    cats = world_categories()
    things = [c for c in cats if c["isthing"]]
    stuff = [c for c in cats if not c["isthing"]]
    by_id = {c["id"]: c for c in cats}
    palette = {name: np.array(rgb, float) for name, rgb in THING_COLOURS.items()}
    hits = total = 0
    for seed in range(40):
        scene = render_scene(np.random.default_rng(seed), height=96, width=96, things=things, stuff=stuff)
        for k, seg in enumerate(scene.segments):
            mask = scene.segment_map == k
            if seg["isthing"] and mask.sum() > 30:
                mean = np.median(scene.image[mask].astype(float), axis=0)
                nearest = max(palette, key=lambda n: palette[n] @ mean / np.linalg.norm(palette[n]))
                hits += nearest == by_id[seg["category_id"]]["colour"]
                total += 1
    assert total > 50 and hits / total > 0.97
