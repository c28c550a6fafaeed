"""Write the synthetic zero-shot world to disk in the standard COCO formats.

Layout (docs/CONTRACTS.md)::

    DIR/split.json
    DIR/images/{train,val}/NNNNNN.png                  RGB uint8
    DIR/annotations/panoptic_{train,val}.json          COCO panoptic
    DIR/annotations/panoptic_{train,val}/NNNNNN.png    id = R + 256 G + 256² B
    DIR/annotations/instances_{train,val}.json         COCO instances, RLE masks
    DIR/annotations/semantic_{train,val}/NNNNNN.png    uint8 index in split.json order, 255 ignore
    DIR/annotations/panoptic_train_zsp.json            ZSP view: images with an unseen pixel dropped
                                                       (PNGs: info.segmentations_folder = panoptic_train)
    DIR/annotations/instances_train_zsi.json           ZSI view: unseen annotations removed
    DIR/annotations/semantic_train_zss/NNNNNN.png      ZSS view: unseen pixels set to 255

Image ids run from 1; file names are the id on six digits. Panoptic segment ids are
``category_id * 1000 + k`` (k counts that category's segments in the image). Each image is
rendered from its own generator, seeded by (seed, split, index), so the bytes written do not
depend on the number of worker processes.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zsp_ros.data.categories import IGNORE_INDEX, split_to_json_bytes
from zsp_ros.data.coco_format import encode_png, id2rgb
from zsp_ros.data.preview import write_world_preview
from zsp_ros.data.synth_render import render_scene
from zsp_ros.data.synth_world import world_split

SPLITS = {"train": 0, "val": 1}   # split name -> the code mixed into each image's seed
_OUTPUTS = ("split.json", "images", "annotations", "preview.png")
_STATE: dict[str, Any] = {}       # per-process job description (set by _init_worker)


def _init_worker(state: dict[str, Any]) -> None:
    _STATE.clear()
    _STATE.update(state)


def _render_and_write(task: tuple[str, int]) -> dict[str, Any]:
    """Render image ``index`` of ``split``, write its PNGs, return its annotation record."""
    from pycocotools import mask as mask_utils

    split, index = task
    st = _STATE
    rng = np.random.default_rng([st["seed"], SPLITS[split], index])
    scene = render_scene(rng, height=st["height"], width=st["width"], things=st["things"], stuff=st["stuff"])
    image_id = index + 1
    name = f"{image_id:06d}.png"

    counter: dict[int, int] = {}
    seg_ids = []
    for seg in scene.segments:
        k = counter.get(seg["category_id"], 0)
        counter[seg["category_id"]] = k + 1
        seg_ids.append(seg["category_id"] * 1000 + k)
    id_lookup = np.array(seg_ids + [0], dtype=np.int64)                 # -1 (void) -> id 0
    sem_lookup = np.array([st["sem_index"][s["category_id"]] for s in scene.segments] + [IGNORE_INDEX],
                          dtype=np.uint8)
    pan = id_lookup[scene.segment_map]
    sem = sem_lookup[scene.segment_map]

    root = Path(st["root"])
    (root / "images" / split / name).write_bytes(encode_png(scene.image))
    (root / "annotations" / f"panoptic_{split}" / name).write_bytes(encode_png(id2rgb(pan)))
    (root / "annotations" / f"semantic_{split}" / name).write_bytes(encode_png(sem))
    if split == "train":
        zss = st["zss_lut"][sem]
        (root / "annotations" / "semantic_train_zss" / name).write_bytes(encode_png(zss))

    segments_info, instances = [], []
    for seg_index, (seg, seg_id) in enumerate(zip(scene.segments, seg_ids)):
        mask = scene.segment_map == seg_index
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
        segments_info.append({"id": seg_id, "category_id": seg["category_id"], "iscrowd": 0,
                              "bbox": bbox, "area": int(mask.sum())})
        if seg["isthing"]:
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            instances.append({"category_id": seg["category_id"],
                              "segmentation": {"size": [int(s) for s in rle["size"]],
                                               "counts": rle["counts"].decode("ascii")},
                              "area": int(mask_utils.area(rle)),
                              "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                              "iscrowd": 0})
    return {"image": {"id": image_id, "file_name": name, "width": st["width"], "height": st["height"]},
            "segments_info": segments_info, "instances": instances,
            "has_unseen": any(s["category_id"] in st["unseen"] for s in segments_info)}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _panoptic_json(records: Sequence[dict], categories: list[dict], info: dict) -> dict:
    return {"info": info, "licenses": [],
            "images": [r["image"] for r in records],
            "annotations": [{"image_id": r["image"]["id"], "file_name": r["image"]["file_name"],
                             "segments_info": r["segments_info"]} for r in records],
            "categories": categories}


def _instances_json(records: Sequence[dict], categories: list[dict], info: dict,
                    drop: set[int] = frozenset()) -> dict:
    annotations = []
    for r in records:
        for inst in r["instances"]:
            if inst["category_id"] in drop:
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": r["image"]["id"], **inst})
    return {"info": info, "licenses": [], "images": [r["image"] for r in records],
            "annotations": annotations, "categories": categories}


def _parse_size(size: int | Sequence[int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 16 or width < 16:
        raise ValueError(f"image size {height}x{width} is too small; want at least 16x16")
    return int(height), int(width)


def _prepare_dir(root: Path, overwrite: bool) -> None:
    existing = [name for name in _OUTPUTS if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{root} already holds a world ({', '.join(existing)}); "
                              "pass overwrite=True (--overwrite) to replace it")
    for name in existing:
        path = root / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for split in SPLITS:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"panoptic_{split}").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"semantic_{split}").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "semantic_train_zss").mkdir(parents=True, exist_ok=True)


def default_workers() -> int:
    """Worker processes used when none are asked for: min(2, CPU count)."""
    return max(1, min(2, os.cpu_count() or 1))


def generate_world(out_dir: str | os.PathLike, *, images: int = 2000, val_images: int = 500,
                   size: int | Sequence[int] = 128, seed: int = 0,
                   unseen: Sequence[str] | None = None, workers: int | None = None,
                   overwrite: bool = False, preview: bool = False) -> dict[str, Any]:
    """Generate the synthetic world under ``out_dir``; return a summary dict.

    images / val_images: counts of training and validation images. size: S or (H, W) in
    pixels. unseen: unseen category names (None = the default split, [] = none unseen).
    workers: processes (None = ``default_workers()``; 1 = in this process). The bytes
    written depend only on (images, val_images, size, seed, unseen). preview: also write
    DIR/preview.png (a contact sheet of validation images).
    Summary keys: root, train_images, val_images, zsp_train_images, zsi_train_annotations,
    instances_train_annotations, seconds, images_per_s, workers.
    """
    if images < 1 or val_images < 1:
        raise ValueError(f"need at least one training and one validation image, got {images} and {val_images}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    height, width = _parse_size(size)
    split = world_split(unseen)
    categories = split["categories"]
    unseen_ids = set(split["unseen_ids"])
    workers = default_workers() if workers is None else int(workers)
    root = Path(out_dir)
    start = time.perf_counter()
    _prepare_dir(root, overwrite)

    zss_lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for i, cat in enumerate(categories):
        if cat["seen"]:
            zss_lut[i] = i
    state = {"root": str(root), "height": height, "width": width, "seed": seed,
             "things": [c for c in categories if c["isthing"]],
             "stuff": [c for c in categories if not c["isthing"]],
             "sem_index": {c["id"]: i for i, c in enumerate(categories)},
             "unseen": unseen_ids, "zss_lut": zss_lut}
    tasks = [("train", i) for i in range(images)] + [("val", i) for i in range(val_images)]
    if workers <= 1:
        _init_worker(state)
        results = [_render_and_write(t) for t in tasks]
    else:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(workers, initializer=_init_worker, initargs=(state,)) as pool:
            results = pool.map(_render_and_write, tasks, chunksize=max(1, len(tasks) // (8 * workers)))
    train, val = results[:images], results[images:]

    pan_cats = [{"id": c["id"], "name": c["name"], "supercategory": c.get("shape", c.get("texture", "")),
                 "isthing": int(c["isthing"]), "color": c["color"]} for c in categories]
    ins_cats = [{"id": c["id"], "name": c["name"], "supercategory": c["shape"]}
                for c in categories if c["isthing"]]
    ann = root / "annotations"
    for name, records in (("train", train), ("val", val)):
        info = {"description": "zsp_ros synthetic zero-shot world", "version": "1.0", "split": name,
                "seed": seed, "height": height, "width": width}
        (ann / f"panoptic_{name}.json").write_bytes(_dumps(_panoptic_json(records, pan_cats, info)))
        (ann / f"instances_{name}.json").write_bytes(_dumps(_instances_json(records, ins_cats, info)))
    zsp_records = [r for r in train if not r["has_unseen"]]
    info = {"description": "zsp_ros synthetic zero-shot world, ZSP training view (images with an "
            "unseen pixel dropped)", "version": "1.0", "split": "train", "seed": seed,
            "height": height, "width": width, "segmentations_folder": "panoptic_train"}
    (ann / "panoptic_train_zsp.json").write_bytes(_dumps(_panoptic_json(zsp_records, pan_cats, info)))
    info = {"description": "zsp_ros synthetic zero-shot world, ZSI training view (unseen "
            "annotations removed)", "version": "1.0", "split": "train", "seed": seed,
            "height": height, "width": width}
    zsi = _instances_json(train, ins_cats, info, drop=unseen_ids)
    (ann / "instances_train_zsi.json").write_bytes(_dumps(zsi))
    (root / "split.json").write_bytes(split_to_json_bytes(split))
    if preview:
        write_world_preview(root, out=root / "preview.png")
    seconds = time.perf_counter() - start
    return {"root": str(root), "train_images": images, "val_images": val_images,
            "zsp_train_images": len(zsp_records), "zsi_train_annotations": len(zsi["annotations"]),
            "instances_train_annotations": sum(len(r["instances"]) for r in train),
            "seconds": round(seconds, 3), "images_per_s": round((images + val_images) / seconds, 1),
            "workers": workers}
