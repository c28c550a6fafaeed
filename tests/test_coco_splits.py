"""The paper's COCO zero-shot splits (config/coco_splits): counts, disjointness, names in the category lists."""
from __future__ import annotations

import pytest

from zsp_ros.data.coco_real import SPLIT_FILES, load_category_list, load_coco_split, stuff_label_categories

EXPECTED = {  # split -> (category list, seen, unseen, excluded)
    "zsp": ("coco_panoptic", 119, 14, 0),
    "zss": ("coco_stuff", 156, 15, 0),
    "zsi-48-17": ("coco_instances", 48, 17, 15),
    "zsi-65-15": ("coco_instances", 65, 15, 0),
}
UNSEEN_NAMES = {
    "zsp": {"cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors", "cardboard",
            "playingfield", "river", "road", "tree-merged", "sky-other-merged", "grass-merged"},
    "zss": {"frisbee", "skateboard", "cardboard", "carrot", "scissors", "suitcase", "giraffe", "cow", "road",
            "wall-concrete", "tree", "grass", "river", "clouds", "playingfield"},
    "zsi-48-17": {"bus", "dog", "cow", "elephant", "umbrella", "tie", "skateboard", "cup", "knife", "cake",
                  "couch", "keyboard", "sink", "scissors", "airplane", "cat", "snowboard"},
    "zsi-65-15": {"airplane", "train", "parking meter", "cat", "bear", "suitcase", "frisbee", "snowboard",
                  "fork", "sandwich", "hot dog", "toilet", "mouse", "toaster", "hair drier"},
}


def test_category_lists_have_the_official_sizes():
    pan, stuff, inst = (load_category_list(n) for n in ("coco_panoptic", "coco_stuff", "coco_instances"))
    assert (len(pan), len(stuff), len(inst)) == (133, 171, 80)
    assert sum(c["isthing"] for c in pan) == 80 and sum(c["isthing"] for c in stuff) == 80
    assert [(c["id"], c["name"]) for c in inst] == [(c["id"], c["name"]) for c in pan if c["isthing"]]
    assert pan[0] == {**pan[0], "id": 1, "name": "person"} and pan[-1]["name"] == "rug-merged"
    assert sorted(c["train_id"] for c in stuff) == list(range(171))
    with pytest.raises(ValueError, match="unknown category list"):
        load_category_list("ade20k")


@pytest.mark.parametrize("name", sorted(SPLIT_FILES))
def test_split_counts_disjoint_and_named_from_the_list(name):
    dataset, n_seen, n_unseen, n_excluded = EXPECTED[name]
    split = load_coco_split(name)
    seen, unseen, excluded = set(split["seen_ids"]), set(split["unseen_ids"]), set(split["excluded_ids"])
    assert (len(seen), len(unseen), len(excluded)) == (n_seen, n_unseen, n_excluded)
    assert not seen & unseen and not (seen | unseen) & excluded
    full = {c["id"]: c for c in load_category_list(dataset)}
    assert seen | unseen | excluded == set(full)
    for c in split["categories"]:
        assert full[c["id"]]["name"] == c["name"] and full[c["id"]]["isthing"] == c["isthing"]
    assert {c["name"] for c in split["categories"] if not c["seen"]} == UNSEEN_NAMES[name]


def test_stuff_label_orders():
    train_id = stuff_label_categories("train_id")
    assert len(train_id) == 171   # 156 seen first, then the 15 unseen
    unseen = set(load_coco_split("zss")["unseen_ids"])
    assert {c["id"] for c in train_id[156:]} == unseen
    official = stuff_label_categories("cocostuff")
    assert official[0]["name"] == "person" and official[181]["name"] == "wood"
    assert official[11]["name"].startswith("unused-")       # COCO id 12 (street sign) is not annotated
    with pytest.raises(ValueError, match="label format"):
        stuff_label_categories("ade")
