"""Real-COCO loaders under ZSP / ZSS / ZSI, run on a COCO-layout folder made from a tiny synthetic world."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from coco_fakes import coco_tree

from zsp_ros.data.coco_format import load_json
from zsp_ros.data.coco_layout import check_layout
from zsp_ros.data.coco_real import (
    coco_instance_dataset,
    coco_panoptic_dataset,
    coco_split_categories,
    coco_stuff_dataset,
    coco_training_dataset,
    missing_train_files,
    write_zsp_view,
)
from zsp_ros.data.large_scale_jitter import LargeScaleJitter
from zsp_ros.data.synth_writer import generate_world


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> tuple[Path, Path]:
    world = tmp_path_factory.mktemp("world")
    generate_world(world, images=16, val_images=4, size=48, seed=3, workers=1)
    return world, coco_tree(world, tmp_path_factory.mktemp("coco"))


def test_zsp_view_drops_images_with_unseen_segments(coco):
    world, root = coco
    split = world / "split.json"
    unseen = set(json.loads(split.read_text())["unseen_ids"])
    with pytest.raises(FileNotFoundError, match="zsp data prepare"):
        coco_panoptic_dataset(root, split="train", split_file=split)
    summary = write_zsp_view(root / "annotations/panoptic_train2017.json",
                             root / "annotations/panoptic_train2017_zsp.json", sorted(unseen))
    expected = load_json(world / "annotations/panoptic_train_zsp.json")
    assert summary["kept"] == len(expected["images"]) and summary["dropped"] == 16 - summary["kept"]
    ds = coco_panoptic_dataset(root, split="train", split_file=split)
    assert sorted(ds.image_ids) == sorted(im["id"] for im in expected["images"] if any(
        a["image_id"] == im["id"] and a["segments_info"] for a in expected["annotations"]))
    assert all(c.get("seen") is not False for c in ds.categories) and len(ds.categories) == 64 - len(unseen)
    image, target = ds[0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.uint8
    assert not set(target["category_ids"].tolist()) & unseen
    val = coco_panoptic_dataset(root, split="val", split_file=split)
    assert len(val) == 4 and len(val.categories) == 64


def test_zss_ignores_unseen_pixels(coco):
    world, root = coco
    split = json.loads((world / "split.json").read_text())
    cats = split["categories"]
    train = coco_stuff_dataset(root, split="train", split_file=world / "split.json", label_categories=cats)
    full = coco_stuff_dataset(root, split="train", protocol="supervised", split_file=world / "split.json",
                              label_categories=cats)
    assert len(train) == len(full) == 16
    unseen_in_full = 0
    for i in range(len(train)):
        (_, t), (_, f) = train[i], full[i]
        seen_index = {c["id"]: k for k, c in enumerate(train.categories)}
        assert not set(t["category_ids"].tolist()) & set(split["unseen_ids"])
        unseen_px = torch.zeros_like(f["sem_seg"], dtype=torch.bool)
        for k, c in enumerate(full.categories):
            if not c["seen"]:
                unseen_px |= f["sem_seg"] == k
        unseen_in_full += int(unseen_px.sum())
        assert bool((t["sem_seg"][unseen_px] == 255).all())
        for k, c in enumerate(full.categories):   # seen pixels keep their class under the seen index
            if c["seen"]:
                assert bool((t["sem_seg"][f["sem_seg"] == k] == seen_index[c["id"]]).all())
    assert unseen_in_full > 0
    with pytest.raises(ValueError, match="label format"):
        coco_stuff_dataset(root, split="train", split_file=world / "split.json", label_format="ade")


def test_zsi_removes_unseen_annotations(coco):
    world, root = coco
    split = json.loads((world / "split.json").read_text())
    ds = coco_instance_dataset(root, split="train", split_file=world / "split.json")
    zsi = load_json(world / "annotations/instances_train_zsi.json")
    n = sum(ds[i][1]["labels"].shape[0] for i in range(len(ds)))
    assert n == sum(1 for a in zsi["annotations"] if not a.get("iscrowd", 0))
    assert all(c["isthing"] and c["seen"] for c in ds.categories)
    val = coco_instance_dataset(root, split="val", split_file=world / "split.json")
    assert {c["id"] for c in val.categories} == {c["id"] for c in split["categories"] if c["isthing"]}


def test_large_scale_jitter_shapes_and_ranges():
    g = torch.Generator().manual_seed(0)
    lsj = LargeScaleJitter(crop_size=64, min_scale=0.1, max_scale=2.0)
    image = torch.randint(0, 255, (3, 40, 40), dtype=torch.uint8)   # square: scale > 1 fills the crop
    masks = torch.zeros(2, 40, 40, dtype=torch.bool)
    masks[0, :, :20] = True
    masks[1, :, 20:] = True
    target = {"masks": masks, "labels": torch.tensor([0, 1]), "sem_seg": masks[1].long()}
    padded = 0
    for _ in range(20):
        img, out = lsj(image, target, generator=g)
        assert img.shape == (3, 64, 64) and out["masks"].shape == (2, 64, 64) and out["sem_seg"].shape == (64, 64)
        pad = ~out["masks"].any(0)
        assert bool((out["sem_seg"][pad & (out["sem_seg"] != 0)] == 255).all())
        padded += int((out["sem_seg"] == 255).sum() > 0)
    assert 0 < padded < 20        # small scales pad, large ones fill the crop
    with pytest.raises(ValueError, match="min_scale"):
        LargeScaleJitter(min_scale=0.0)


def test_layout_check_reports_tasks(coco, tmp_path):
    _, root = coco
    report = check_layout(root)
    assert report["tasks"]["panoptic"]["ready"] and report["tasks"]["instance"]["ready"]
    assert report["tasks"]["semantic"]["ready"]
    empty = check_layout(tmp_path)
    assert not any(t["ready"] for t in empty["tasks"].values())
    assert "annotations/panoptic_train2017.json" in empty["tasks"]["panoptic"]["missing"]


def test_training_dataset_entry_point_and_missing_files(coco, tmp_path):
    world, root = coco
    split = json.loads((world / "split.json").read_text())
    ds = coco_training_dataset(root, protocol="zsi-48-17", split_file=world / "split.json")
    assert [c["id"] for c in ds.categories] == [c["id"] for c in split["categories"] if c["seen"] and c["isthing"]]
    oracle = coco_training_dataset(root, protocol="zsi-48-17", split_file=world / "split.json", supervised=True)
    assert len(oracle.categories) == sum(c["isthing"] for c in split["categories"])
    # the paper splits: the bank records every category but the excluded ones
    zsi = coco_split_categories("zsi-65-15")
    assert len(zsi) == 80 and sum(c["seen"] for c in zsi) == 65
    assert len(coco_split_categories("zsp")) == 133
    # nothing there: every missing training path is named, with the command that lists the layout
    assert missing_train_files(tmp_path, "instance") == [tmp_path / "train2014",
                                                          tmp_path / "annotations/instances_train2014.json"]
    with pytest.raises(FileNotFoundError, match=r"train2017.*panoptic_train2017\.json.*zsp data check --coco"):
        coco_training_dataset(tmp_path, protocol="zsp")
    with pytest.raises(ValueError, match="unknown COCO protocol"):
        coco_training_dataset(root, protocol="zero-shot")
    # only the alternative COCO-Stuff label folder present: still complete
    alt = tmp_path / "alt"
    for sub in ("train2017", "coco_stuff/stuffthingmaps_trainval2017/train2017"):
        (alt / sub).mkdir(parents=True)
        (alt / sub / "000001.png").write_bytes(b"x")
    assert missing_train_files(alt, "semantic") == []
