"""COCO panoptic 2017, COCO-Stuff 171 and COCO instances under the paper's zero-shot protocols.

The splits are data files under ``config/coco_splits/`` (split.json format of
docs/CONTRACTS.md plus ``name``, ``dataset``, ``source`` and ``excluded_ids``):

- ``zsp``       zsp_panoptic_119_14.json   ZSP: train on images with no unseen segment
                (the paper keeps 45,617 of 118,287), evaluate on all 133 classes.
- ``zss``       zss_stuff_156_15.json      ZSS: unseen pixels are ignored (255) in training.
- ``zsi-48-17`` / ``zsi-65-15``            ZSI: unseen annotations removed in training (images
                left empty are dropped); ``excluded_ids`` take part in neither training nor test.

The datasets are those of ``coco_datasets.py`` (items ``(image uint8 [3,H,W], target)``), over
the folder layout of ``coco_layout.py``. Augment training with ``LargeScaleJitter``
(zsp_ros/data/large_scale_jitter.py; 1024 crop, scale 0.1–2.0, as Mask2Former).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from zsp_ros.data.categories import CocoCategory, read_split, validate_categories
from zsp_ros.data.coco_datasets import CocoInstanceDataset, CocoPanopticDataset, SemanticSegDataset, Transform
from zsp_ros.data.coco_format import load_json
from zsp_ros.data.coco_layout import LAYOUT, check_layout, coco_path
from zsp_ros.utils.config_files import require_config

SPLIT_FILES: dict[str, str] = {
    "zsp": "zsp_panoptic_119_14.json",
    "zss": "zss_stuff_156_15.json",
    "zsi-48-17": "zsi_instances_48_17.json",
    "zsi-65-15": "zsi_instances_65_15.json",
}
CATEGORY_FILES: dict[str, str] = {
    "coco_panoptic": "coco_panoptic_categories.json",
    "coco_stuff": "coco_stuff_categories.json",
    "coco_instances": "coco_instances_categories.json",
}
PROTOCOLS = ("zero-shot", "supervised")


def coco_splits_dir() -> Path:
    """config/coco_splits of the source checkout, else of the installed package share (the Python
    prefix's, or the one the ament index names in a colcon workspace)."""
    return require_config("coco_splits", directory=True)


def _split_path(name_or_path: str | os.PathLike) -> Path:
    if str(name_or_path) in SPLIT_FILES:
        return coco_splits_dir() / SPLIT_FILES[str(name_or_path)]
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(f"split {name_or_path!r} is neither a file nor one of {', '.join(SPLIT_FILES)}")
    return path


def load_coco_split(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """A split by short name (``SPLIT_FILES``) or path; checked by ``read_split``.

    ``excluded_ids`` defaults to [] (split files of the synthetic world have none).
    """
    split = read_split(_split_path(name_or_path))
    split.setdefault("excluded_ids", [])
    return split


def load_category_list(dataset: str) -> list[CocoCategory]:
    """The full category list of ``dataset`` ("coco_panoptic" 133, "coco_stuff" 171, "coco_instances" 80)."""
    if dataset not in CATEGORY_FILES:
        raise ValueError(f"unknown category list {dataset!r}; choose from {', '.join(CATEGORY_FILES)}")
    path = coco_splits_dir() / CATEGORY_FILES[dataset]
    cats = load_json(path, what="category list")["categories"]
    validate_categories(cats, source=str(path))
    return cats


def split_class_names(name_or_path: str | os.PathLike) -> list[str]:
    """Category names of a split in file order (seen and unseen), e.g. for ``zsp embed``."""
    return [c["name"] for c in load_coco_split(name_or_path)["categories"]]


def _categories(split: dict[str, Any], *, train: bool, protocol: str) -> list[CocoCategory]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    cats = split["categories"]
    return [c for c in cats if c["seen"]] if (train and protocol == "zero-shot") else list(cats)


def _check_split_name(split: str) -> bool:
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}; choose train or val")
    return split == "train"


# ---------------------------------------------------------------- ZSP (panoptic)

def write_zsp_view(panoptic_json: str | os.PathLike, out_json: str | os.PathLike,
                   unseen_ids: Sequence[int], *, png_folder: str | os.PathLike | None = None) -> dict[str, int]:
    """Write the ZSP training view of a COCO panoptic JSON: images with any unseen segment dropped.

    Crowd segments count, as in PADing's datasets/get_zsp_json.py. ``info.segmentations_folder``
    points (relative to ``out_json``) at the original PNG folder (default: the sibling folder
    named after ``panoptic_json``'s stem, the COCO convention), so no PNG is copied.
    Returns ``{"images", "kept", "dropped"}``.
    """
    src = Path(panoptic_json)
    data = load_json(src, what="panoptic JSON")
    unseen = set(int(i) for i in unseen_ids)
    bad = {a["image_id"] for a in data["annotations"]
           if any(s["category_id"] in unseen for s in a["segments_info"])}
    out = Path(out_json)
    folder = Path(png_folder) if png_folder is not None else src.parent.parent / src.stem
    out.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(folder.resolve(), out.parent.resolve())
    view = {**data, "info": {**(data.get("info") or {}), "segmentations_folder": rel,
                             "zero_shot_view": "zsp", "unseen_ids": sorted(unseen)},
            "images": [im for im in data["images"] if im["id"] not in bad],
            "annotations": [a for a in data["annotations"] if a["image_id"] not in bad]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(view))
    tmp.replace(out)
    return {"images": len(data["images"]), "kept": len(view["images"]), "dropped": len(bad)}


def coco_panoptic_dataset(root: str | os.PathLike, *, split: str, protocol: str = "zero-shot",
                          split_file: str | os.PathLike = "zsp",
                          transform: Transform | None = None) -> torch.utils.data.Dataset:
    """COCO panoptic 2017 under ZSP. Zero-shot training reads annotations/panoptic_train2017_zsp.json
    (``zsp data prepare``; FileNotFoundError naming the command if absent) with the seen categories;
    validation and ``protocol="supervised"`` read the full JSON with every category."""
    train = _check_split_name(split)
    sp = load_coco_split(split_file)
    cats = _categories(sp, train=train, protocol=protocol)
    zsp = train and protocol == "zero-shot"
    json_file = coco_path(root, "panoptic_train_zsp_json" if zsp else f"panoptic_{split}_json")
    if zsp and not json_file.is_file():
        raise FileNotFoundError(f"ZSP training view {json_file} does not exist; make it with "
                                f"`zsp data prepare --coco {root}`")
    return CocoPanopticDataset(json_file=json_file, image_root=coco_path(root, f"images_{split}2017"),
                               panoptic_root=coco_path(root, f"panoptic_{split}_png"), categories=cats,
                               transform=transform, drop_empty=zsp)


# ---------------------------------------------------------------- ZSS (COCO-Stuff 171, semantic)

def stuff_label_categories(label_format: str) -> list[CocoCategory]:
    """Categories in label-value order for COCO-Stuff PNGs.

    "train_id": the ZegFormer/PADing annotations_detectron2 PNGs (value = ``train_id``, 171).
    "cocostuff": the official stuffthingmaps PNGs (value = COCO-Stuff id - 1); unused values get
    placeholder categories (id 10000 + value) that no training list contains, so they read as 255.
    """
    cats = load_category_list("coco_stuff")
    if label_format == "train_id":
        return sorted(cats, key=lambda c: c["train_id"])
    if label_format == "cocostuff":
        by_value = {c["id"] - 1: c for c in cats}
        top = max(by_value) + 1
        return [by_value.get(v, {"id": 10000 + v, "name": f"unused-{v}", "isthing": False}) for v in range(top)]
    raise ValueError(f"unknown COCO-Stuff label format {label_format!r}; choose train_id or cocostuff")


def coco_stuff_dataset(root: str | os.PathLike, *, split: str, protocol: str = "zero-shot",
                       split_file: str | os.PathLike = "zss", label_format: str = "auto",
                       label_categories: Sequence[CocoCategory] | None = None,
                       transform: Transform | None = None) -> torch.utils.data.Dataset:
    """COCO-Stuff 171-class semantic segmentation under ZSS (unseen pixels -> 255 in training).

    label_format: "train_id" (coco_stuff/annotations_detectron2), "cocostuff"
    (coco_stuff/stuffthingmaps_trainval2017) or "auto" (the first of the two that exists).
    label_categories: override the label-value order (for COCO-format data of one's own).
    """
    train = _check_split_name(split)
    sp = load_coco_split(split_file)
    cats = _categories(sp, train=train, protocol=protocol)
    if label_format == "auto":
        label_format = "train_id" if coco_path(root, f"stuff_{split}_labels").is_dir() else "cocostuff"
    key = {"train_id": f"stuff_{split}_labels", "cocostuff": f"stuffthing_{split}_labels"}.get(label_format)
    if key is None:
        raise ValueError(f"unknown COCO-Stuff label format {label_format!r}; choose auto, train_id or cocostuff")
    if label_categories is None:
        label_categories = stuff_label_categories(label_format)
    return SemanticSegDataset(image_root=coco_path(root, f"images_{split}2017"), label_root=coco_path(root, key),
                              label_categories=label_categories, categories=cats, transform=transform)


# ---------------------------------------------------------------- ZSI (instances)

def coco_instance_dataset(root: str | os.PathLike, *, split: str, protocol: str = "zero-shot",
                          split_file: str | os.PathLike = "zsi-48-17", json_file: str | os.PathLike | None = None,
                          transform: Transform | None = None) -> torch.utils.data.Dataset:
    """COCO instances (2014, the ZSI splits) under ZSI.

    Zero-shot training keeps the seen categories' annotations only and drops images left
    without one; validation uses seen + unseen (``excluded_ids`` never). ``json_file``
    overrides annotations/instances_{split}2014.json (e.g. ZSI's instances_train2014_seen_48_17.json).
    """
    train = _check_split_name(split)
    sp = load_coco_split(split_file)
    excluded = set(sp["excluded_ids"])
    cats = [c for c in _categories(sp, train=train, protocol=protocol) if c["isthing"] and c["id"] not in excluded]
    json_file = Path(json_file) if json_file is not None else coco_path(root, f"instances_{split}_json")
    return CocoInstanceDataset(json_file=json_file, image_root=coco_path(root, f"images_{split}2014"),
                               categories=cats, transform=transform,
                               drop_empty=train and protocol == "zero-shot")


TASK_DATASETS = {"panoptic": coco_panoptic_dataset, "semantic": coco_stuff_dataset, "instance": coco_instance_dataset}


# ---------------------------------------------------------------- training entry points

# protocol name (the split's short name) -> task of the loaders above
COCO_PROTOCOLS: dict[str, str] = {"zsp": "panoptic", "zss": "semantic",
                                  "zsi-48-17": "instance", "zsi-65-15": "instance"}


def missing_train_files(root: str | os.PathLike, task: str) -> list[Path]:
    """Paths the training split of ``task`` needs under ``root`` that are absent (or empty).

    An entry and its alternative (COCO-Stuff label formats) count as missing only together;
    entries made by a command (the ZSP view) are left to the loader, which names the command.
    """

    report = check_layout(root)
    present = {d["key"]: d["present"] for d in report["entries"]}
    for e in LAYOUT:
        if e.alternative_of and present[e.key]:
            present[e.alternative_of] = True
    return [Path(root) / e.path for e in LAYOUT
            if task in e.tasks and "train" in e.key and not e.made_by and not e.alternative_of
            and not present[e.key]]


def coco_training_dataset(root: str | os.PathLike, *, protocol: str, supervised: bool = False,
                          split_file: str | os.PathLike | None = None,
                          transform: Transform | None = None) -> torch.utils.data.Dataset:
    """The training split of COCO under ``protocol`` (a ``COCO_PROTOCOLS`` name).

    ``dataset.categories`` is the training class list: the split's seen categories in split
    order (``supervised``: all of them, the oracle). ``split_file`` replaces the protocol's
    split (COCO-format data of one's own with other category ids). A missing input raises
    FileNotFoundError naming every missing path and pointing to ``zsp data check --coco ROOT``.
    """
    if protocol not in COCO_PROTOCOLS:
        raise ValueError(f"unknown COCO protocol {protocol!r}; choose from {', '.join(COCO_PROTOCOLS)}")
    task = COCO_PROTOCOLS[protocol]
    check = f"`zsp data check --coco {root}` lists the expected layout"
    missing = missing_train_files(root, task)
    if missing:
        raise FileNotFoundError(f"COCO {task} training data is incomplete under {root}: missing "
                                f"{', '.join(map(str, missing))}; {check}")
    loader = {"panoptic": coco_panoptic_dataset, "semantic": coco_stuff_dataset,
              "instance": coco_instance_dataset}[task]
    try:
        return loader(root, split="train", protocol="supervised" if supervised else "zero-shot",
                      split_file=protocol if split_file is None else split_file, transform=transform)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}; {check}") from None


def coco_split_categories(protocol: str, split_file: str | os.PathLike | None = None) -> list[CocoCategory]:
    """All categories (seen and unseen, ``seen`` flag kept) of a protocol's split, without ``excluded_ids``."""
    if protocol not in COCO_PROTOCOLS:
        raise ValueError(f"unknown COCO protocol {protocol!r}; choose from {', '.join(COCO_PROTOCOLS)}")
    split = load_coco_split(protocol if split_file is None else split_file)
    excluded = set(split["excluded_ids"])
    return [c for c in split["categories"] if c["id"] not in excluded]
