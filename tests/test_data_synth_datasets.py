"""Dataset loaders over the COCO-format files: item shapes, protocol category lists, transforms, collate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zsp_ros.data.coco_datasets import (
    CocoInstanceDataset,
    CocoPanopticDataset,
    RandomResizeCrop,
    SemanticSegDataset,
    collate_padded,
    world_dataset,
)
from zsp_ros.data.coco_format import rgb2id
from zsp_ros.data.synth_writer import generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, images=24, val_images=8, size=64, seed=1, workers=1)
    return root


def _check_item(image, target, n_classes, size=(64, 64)):
    assert image.dtype == torch.uint8 and image.shape == (3, *size)
    n = target["labels"].shape[0]
    assert target["labels"].dtype == torch.int64 and target["category_ids"].dtype == torch.int64
    assert target["masks"].dtype == torch.bool and target["masks"].shape == (n, *size)
    assert target["category_ids"].shape == (n,)
    if n:
        assert 0 <= int(target["labels"].min()) and int(target["labels"].max()) < n_classes
        assert target["masks"].flatten(1).any(1).all()


@pytest.mark.parametrize("task", ["panoptic", "semantic", "instance"])
def test_zero_shot_training_sees_only_seen_categories(world, task):
    split = json.loads((world / "split.json").read_text())
    seen = [c for c in split["categories"] if c["seen"]]
    ds = world_dataset(world, task=task, split="train")
    expected = [c for c in seen if c["isthing"]] if task == "instance" else seen
    assert [c["id"] for c in ds.categories] == [c["id"] for c in expected]
    seen_ids = {c["id"] for c in seen}
    for i in range(len(ds)):
        image, target = ds[i]
        _check_item(image, target, len(ds.categories))
        assert set(target["category_ids"].tolist()) <= seen_ids
        assert [ds.categories[int(lab)]["id"] for lab in target["labels"]] == target["category_ids"].tolist()
    val = world_dataset(world, task=task, split="val")
    assert len(val) == 8
    assert len(val.categories) == (48 if task == "instance" else len(split["categories"]))


def test_panoptic_item_matches_png(world):
    ds = CocoPanopticDataset(json_file=world / "annotations/panoptic_val.json", image_root=world / "images/val")
    image, target = ds[2]
    ids = rgb2id(np.asarray(Image.open(world / "annotations/panoptic_val/000003.png")))
    ann = json.loads((world / "annotations/panoptic_val.json").read_text())["annotations"][2]
    assert target["image_id"] == 3
    assert target["category_ids"].tolist() == [s["category_id"] for s in ann["segments_info"]]
    for m, s in zip(target["masks"], ann["segments_info"]):
        assert (m.numpy() == (ids == s["id"])).all()
    assert (target["masks"].sum(0) == 1).all()            # the synthetic world has no void
    assert (image.permute(1, 2, 0).numpy() == np.asarray(Image.open(world / "images/val/000003.png"))).all()


def test_semantic_item_and_ignore(world):
    split = json.loads((world / "split.json").read_text())
    ds = world_dataset(world, task="semantic", split="train")
    unseen_total = 0
    for i in range(len(ds)):
        _, target = ds[i]
        sem = target["sem_seg"]
        assert sem.dtype == torch.int64 and sem.shape == (64, 64)
        full = np.asarray(Image.open(world / f"annotations/semantic_train/{i + 1:06d}.png"))
        unseen = np.isin(full, [k for k, c in enumerate(split["categories"]) if not c["seen"]])
        unseen_total += unseen.sum()
        assert (sem.numpy()[unseen] == 255).all() and (sem.numpy()[~unseen] != 255).all()
        for label, m in zip(target["labels"], target["masks"]):
            assert (sem[m] == label).all()
    assert unseen_total > 0
    sds = SemanticSegDataset(image_root=world / "images/val", label_root=world / "annotations/semantic_val",
                             label_categories=split["categories"])
    assert sds.image_ids[:2] == [1, 2]


def test_instance_dataset_uses_pycocotools_masks(world):
    ds = CocoInstanceDataset(json_file=world / "annotations/instances_val.json", image_root=world / "images/val")
    assert len(ds.categories) == 48 and ds.image_ids == list(range(1, 9))
    image, target = ds[0]
    _check_item(image, target, 48)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoInstanceDataset(json_file=world / "missing.json", image_root=world)


def test_random_resize_crop_and_collate(world):
    ds = world_dataset(world, task="semantic", split="val", transform=RandomResizeCrop(output_size=(48, 40)))
    torch.manual_seed(0)
    items = [ds[i] for i in range(4)]
    for image, target in items:
        _check_item(image, target, 64, size=(48, 40))
        assert target["sem_seg"].shape == (48, 40)
        for label, m in zip(target["labels"], target["masks"]):
            assert (target["sem_seg"][m] == label).all()
    # Same generator seed -> same crop.
    raw = world_dataset(world, task="panoptic", split="val")
    img, tgt = raw[0]
    aug = RandomResizeCrop(output_size=64, scale_range=(0.5, 0.5))      # shrink: padding appears
    a = aug(img, tgt, torch.Generator().manual_seed(5))
    b = aug(img, tgt, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["masks"], b[1]["masks"])
    assert a[0].shape == (3, 64, 64) and not a[1]["masks"][:, 32:, 32:].any()
    batch = collate_padded([items[0], raw[1]], size_divisibility=32)
    assert batch["images"].shape == (2, 3, 64, 64) and batch["images"].dtype == torch.uint8
    assert batch["image_sizes"].tolist() == [[48, 40], [64, 64]]
    assert batch["targets"][0]["masks"].shape[1:] == (64, 64)
    assert (batch["targets"][0]["sem_seg"][48:] == 255).all()


def test_world_dataset_rejects_bad_arguments(world):
    with pytest.raises(ValueError, match="unknown task"):
        world_dataset(world, task="depth", split="train")
    with pytest.raises(ValueError, match="unknown protocol"):
        world_dataset(world, task="panoptic", split="train", protocol="open")
    oracle = world_dataset(world, task="panoptic", split="train", protocol="supervised")
    assert len(oracle) == 24 and len(oracle.categories) == 64
