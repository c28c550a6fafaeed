"""torch Datasets over COCO-format panoptic, instance and semantic data (synthetic world or COCO).

Every dataset item is a pair ``(image, target)`` (docs/CONTRACTS.md, zsp_ros/training/batching.py):

- ``image``: uint8 tensor [3, H, W], RGB.
- ``target``: dict with
  ``labels`` int64 [N] — contiguous class indices into the dataset's *training category list*
  (``dataset.categories``), ``masks`` bool [N, H, W], ``category_ids`` int64 [N] (COCO ids),
  ``image_id`` (int, or the file stem for semantic PNGs without an int name); the semantic
  dataset adds ``sem_seg`` int64 [H, W] (training indices, 255 = ignore).

The training category list is a subset of the file's categories (the zero-shot protocols
train on the seen ones); segments, annotations or pixels of any other category are left out
(their pixels belong to no mask; in ``sem_seg`` they are 255). Crowd segments/annotations
are skipped, as Mask2Former's dataset mappers do. Instances are read with pycocotools
(``COCO``, ``annToMask``); panoptic PNGs with ``id = R + 256 G + 256² B``.

A ``transform`` is a callable ``(image, target) -> (image, target)``, e.g. ``RandomResizeCrop``;
it runs before empty masks are dropped.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zsp_ros.data.categories import IGNORE_INDEX, CocoCategory, read_split, remap_lut
from zsp_ros.data.coco_format import load_json, panoptic_folder, read_panoptic_png, read_png
from zsp_ros.inference.preprocess import pad_to, padded_size

Target = dict[str, Any]
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


def _image_tensor(path: Path, image_id: Any) -> torch.Tensor:
    rgb = read_png(path, what="image", image=image_id, mode="RGB")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


def _norm_categories(categories: Sequence[dict]) -> list[CocoCategory]:
    return [{**c, "isthing": bool(c.get("isthing", True))} for c in categories]


def _finish(image: torch.Tensor, target: Target, transform: Transform | None) -> tuple[torch.Tensor, Target]:
    if transform is not None:
        image, target = transform(image, target)
    keep = target["masks"].flatten(1).any(dim=1)
    if not bool(keep.all()):
        target = {**target, "labels": target["labels"][keep], "masks": target["masks"][keep],
                  "category_ids": target["category_ids"][keep]}
    return image, target


def _stack_target(masks: list[np.ndarray], cat_ids: list[int], index: dict[int, int],
                  height: int, width: int, image_id: Any) -> Target:
    if masks:
        mask_t = torch.from_numpy(np.stack(masks).astype(bool))
    else:
        mask_t = torch.zeros((0, height, width), dtype=torch.bool)
    return {"labels": torch.tensor([index[c] for c in cat_ids], dtype=torch.int64),
            "masks": mask_t, "category_ids": torch.tensor(cat_ids, dtype=torch.int64),
            "image_id": image_id}


class CocoPanopticDataset(torch.utils.data.Dataset):
    """COCO panoptic JSON + PNG folder; one mask per (non-crowd) segment.

    Args:
        json_file: panoptic JSON. image_root: folder of the images (``images[].file_name``).
        panoptic_root: PNG folder (default by COCO convention, see coco_format.panoptic_folder).
        categories: training category list (dicts with "id"); default all of the JSON's.
        transform: ``(image, target) -> (image, target)``.
        drop_empty: leave out images with no segment of the training categories.
    """

    def __init__(self, *, json_file: str | os.PathLike, image_root: str | os.PathLike,
                 panoptic_root: str | os.PathLike | None = None, categories: Sequence[dict] | None = None,
                 transform: Transform | None = None, drop_empty: bool = False) -> None:
        data = load_json(json_file, what="panoptic JSON")
        self.json_file = Path(json_file)
        self.image_root = Path(image_root)
        self.panoptic_root = panoptic_folder(json_file, data, panoptic_root)
        self.categories = _norm_categories(categories if categories is not None else data["categories"])
        self.index = {c["id"]: i for i, c in enumerate(self.categories)}
        self.transform = transform
        images = {im["id"]: im for im in data["images"]}
        self.records = []
        for ann in data["annotations"]:
            if ann["image_id"] not in images:
                raise ValueError(f"{json_file}: annotation for image {ann['image_id']} has no images[] entry")
            segs = [s for s in ann["segments_info"] if s["category_id"] in self.index and not s.get("iscrowd", 0)]
            if drop_empty and not segs:
                continue
            self.records.append((images[ann["image_id"]], ann["file_name"], segs))
        self.image_ids = [r[0]["id"] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        im, png_name, segs = self.records[i]
        image = _image_tensor(self.image_root / im["file_name"], im["id"])
        pan = read_panoptic_png(self.panoptic_root / png_name, image=im["id"])
        h, w = image.shape[1:]
        if pan.shape != (h, w):
            raise ValueError(f"panoptic PNG {self.panoptic_root / png_name} (image {im['id']}) is "
                             f"{pan.shape[1]}x{pan.shape[0]}, the image {w}x{h}")
        target = _stack_target([pan == s["id"] for s in segs], [s["category_id"] for s in segs],
                               self.index, h, w, im["id"])
        return _finish(image, target, self.transform)


class CocoInstanceDataset(torch.utils.data.Dataset):
    """COCO instances JSON read with pycocotools; one mask per non-crowd annotation.

    Args as CocoPanopticDataset (``categories`` default: the JSON's categories).
    """

    def __init__(self, *, json_file: str | os.PathLike, image_root: str | os.PathLike,
                 categories: Sequence[dict] | None = None, transform: Transform | None = None,
                 drop_empty: bool = False) -> None:
        from pycocotools.coco import COCO

        if not Path(json_file).exists():
            raise FileNotFoundError(f"instances JSON {json_file} does not exist")
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(json_file))
        self.image_root = Path(image_root)
        cats = categories if categories is not None else self.coco.loadCats(self.coco.getCatIds())
        self.categories = _norm_categories(cats)
        self.index = {c["id"]: i for i, c in enumerate(self.categories)}
        self.transform = transform
        self.image_ids = []
        for image_id in sorted(self.coco.getImgIds()):
            if drop_empty and not self._annotations(image_id):
                continue
            self.image_ids.append(image_id)

    def _annotations(self, image_id: int) -> list[dict]:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], iscrowd=False))
        return [a for a in anns if a["category_id"] in self.index]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        image_id = self.image_ids[i]
        im = self.coco.imgs[image_id]
        image = _image_tensor(self.image_root / im["file_name"], image_id)
        h, w = image.shape[1:]
        anns = self._annotations(image_id)
        masks = [self.coco.annToMask(a) for a in anns]
        for a, m in zip(anns, masks):
            if m.shape != (h, w):
                raise ValueError(f"annotation {a['id']} (image {image_id}) has a {m.shape[1]}x{m.shape[0]} "
                                 f"mask, the image is {w}x{h}")
        target = _stack_target(masks, [a["category_id"] for a in anns], self.index, h, w, image_id)
        return _finish(image, target, self.transform)


class SemanticSegDataset(torch.utils.data.Dataset):
    """Folder of uint8 label PNGs (value = index into ``label_categories``, 255 ignore) + images.

    Args:
        image_root: images named like the labels (``.png``, else ``.jpg``).
        label_root: label PNGs. label_categories: the categories in label-value order
            (split.json order for the synthetic world).
        categories: training category list (default ``label_categories``); other classes -> 255.
        transform: ``(image, target) -> (image, target)``.
    The target has one mask per training class present, and ``sem_seg``.
    """

    def __init__(self, *, image_root: str | os.PathLike, label_root: str | os.PathLike,
                 label_categories: Sequence[dict], categories: Sequence[dict] | None = None,
                 transform: Transform | None = None) -> None:
        self.image_root = Path(image_root)
        self.label_root = Path(label_root)
        if not self.label_root.is_dir():
            raise FileNotFoundError(f"label folder {self.label_root} does not exist")
        self.label_categories = _norm_categories(label_categories)
        self.categories = _norm_categories(categories if categories is not None else label_categories)
        self.lut = remap_lut(self.label_categories, self.categories)
        self.transform = transform
        self.files = sorted(self.label_root.glob("*.png"))
        self.image_ids = [int(f.stem) if f.stem.isdigit() else f.stem for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        label_file, image_id = self.files[i], self.image_ids[i]
        image_file = self.image_root / label_file.name
        if not image_file.exists() and (self.image_root / f"{label_file.stem}.jpg").exists():
            image_file = self.image_root / f"{label_file.stem}.jpg"
        image = _image_tensor(image_file, image_id)
        label = read_png(label_file, what="label PNG", image=image_id, mode="L")
        h, w = image.shape[1:]
        if label.shape != (h, w):
            raise ValueError(f"label PNG {label_file} (image {image_id}) is {label.shape[1]}x{label.shape[0]}, "
                             f"the image {w}x{h}")
        sem = self.lut[label]
        present = [int(v) for v in np.unique(sem) if v != IGNORE_INDEX]
        target = _stack_target([sem == v for v in present], [self.categories[v]["id"] for v in present],
                               {c["id"]: i for i, c in enumerate(self.categories)}, h, w, image_id)
        target["sem_seg"] = torch.from_numpy(sem.astype(np.int64))
        return _finish(image, target, self.transform)


class RandomResizeCrop:
    """Scale by a random factor, then random-crop / pad to ``output_size`` (large-scale jitter).

    Image: bilinear (antialiased when shrinking), padding 0. Masks: nearest, padding False.
    ``sem_seg``: nearest, padding 255. Randomness from ``generator`` if given, else torch's
    global RNG (seeded per DataLoader worker by PyTorch).
    """

    def __init__(self, *, output_size: int | tuple[int, int], scale_range: tuple[float, float] = (0.5, 2.0)) -> None:
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range {scale_range} must satisfy 0 < low <= high")
        self.scale_range = scale_range

    def __call__(self, image: torch.Tensor, target: Target,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, Target]:
        lo, hi = self.scale_range
        scale = lo + (hi - lo) * float(torch.rand((), generator=generator))
        h, w = image.shape[1:]
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False,
                            antialias=scale < 1)[0].round().clamp(0, 255).to(torch.uint8)
        masks = target["masks"]
        if masks.shape[0]:
            masks = F.interpolate(masks[None].to(torch.uint8), size=(nh, nw), mode="nearest")[0].bool()
        else:
            masks = torch.zeros((0, nh, nw), dtype=torch.bool)
        out = {**target}
        sem = target.get("sem_seg")
        if sem is not None:
            sem = F.interpolate(sem[None, None].float(), size=(nh, nw), mode="nearest")[0, 0].long()
        oh, ow = self.output_size
        top = int(torch.randint(0, max(nh - oh, 0) + 1, (), generator=generator))
        left = int(torch.randint(0, max(nw - ow, 0) + 1, (), generator=generator))
        img = img[:, top:top + oh, left:left + ow]
        masks = masks[:, top:top + oh, left:left + ow]
        ph, pw = oh - img.shape[1], ow - img.shape[2]
        out["masks"] = F.pad(masks, (0, pw, 0, ph))
        if sem is not None:
            out["sem_seg"] = F.pad(sem[top:top + oh, left:left + ow], (0, pw, 0, ph), value=IGNORE_INDEX)
        return F.pad(img, (0, pw, 0, ph)), out


def collate_padded(batch: Sequence[tuple[torch.Tensor, Target]], *, size_divisibility: int = 32) -> dict[str, Any]:
    """Stack items of different sizes: pad to the largest, rounded up to ``size_divisibility``.

    Returns ``images`` uint8 [B, 3, Hp, Wp] (0 padding), ``image_sizes`` int64 [B, 2] (h, w before
    padding) and ``targets`` with masks [N, Hp, Wp] (False padding) and sem_seg (255 padding).
    """
    if not batch:
        raise ValueError("collate_padded: empty batch")
    padded_hw = padded_size(max(img.shape[1] for img, _ in batch), max(img.shape[2] for img, _ in batch),
                            max(1, size_divisibility))
    images, targets, sizes = [], [], []
    for img, tgt in batch:
        images.append(pad_to(img, padded_hw))
        sizes.append(tuple(img.shape[1:]))
        t = {**tgt, "masks": pad_to(tgt["masks"], padded_hw)}
        if "sem_seg" in tgt:
            t["sem_seg"] = pad_to(tgt["sem_seg"], padded_hw, value=IGNORE_INDEX)
        targets.append(t)
    return {"images": torch.stack(images), "image_sizes": torch.tensor(sizes, dtype=torch.int64),
            "targets": targets}


TASKS = ("panoptic", "semantic", "instance")


def world_dataset(root: str | os.PathLike, *, task: str, split: str, protocol: str = "zero-shot",
                  transform: Transform | None = None) -> torch.utils.data.Dataset:
    """A dataset over a synthetic-world folder (or any folder with the same layout).

    task: "panoptic" | "semantic" | "instance". split: "train" | "val".
    protocol: "zero-shot" (training uses the protocol views — ZSP drops images with unseen
    pixels, ZSS ignores unseen pixels, ZSI drops unseen annotations — and the training
    category list is the seen categories) or "supervised" (all categories, full files: the
    oracle). Validation always reads the full files with all categories. Instance datasets
    use thing categories only. ``dataset.categories`` is the training category list.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}; choose train or val")
    if protocol not in ("zero-shot", "supervised"):
        raise ValueError(f"unknown protocol {protocol!r}; choose zero-shot or supervised")
    root = Path(root)
    all_cats = read_split(root / "split.json")["categories"]
    zero_shot = split == "train" and protocol == "zero-shot"
    cats = [c for c in all_cats if c["seen"]] if zero_shot else list(all_cats)
    ann, images = root / "annotations", root / "images" / split
    if task == "panoptic":
        name = "panoptic_train_zsp.json" if zero_shot else f"panoptic_{split}.json"
        return CocoPanopticDataset(json_file=ann / name, image_root=images, categories=cats,
                                   transform=transform)
    if task == "semantic":
        folder = "semantic_train_zss" if zero_shot else f"semantic_{split}"
        return SemanticSegDataset(image_root=images, label_root=ann / folder, label_categories=all_cats,
                                  categories=cats, transform=transform)
    name = "instances_train_zsi.json" if zero_shot else f"instances_{split}.json"
    return CocoInstanceDataset(json_file=ann / name, image_root=images,
                               categories=[c for c in cats if c["isthing"]], transform=transform)
