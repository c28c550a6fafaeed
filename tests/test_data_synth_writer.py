"""Synthetic world on disk: layout, determinism, COCO consistency, protocol views, CLI, preview."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from zsp_ros.cli.main import main
from zsp_ros.data.coco_format import encode_png, rgb2id
from zsp_ros.data.synth_writer import generate_world

TINY = dict(images=24, val_images=8, size=64, seed=3)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, workers=1, **TINY)
    return root


def _load(root: Path, name: str) -> dict:
    return json.loads((root / "annotations" / name).read_text())


def test_layout_follows_the_contract(world):
    for split, n in (("train", 24), ("val", 8)):
        for folder in (f"images/{split}", f"annotations/panoptic_{split}", f"annotations/semantic_{split}"):
            names = sorted(p.name for p in (world / folder).iterdir())
            assert names == [f"{i:06d}.png" for i in range(1, n + 1)], folder
        for name in (f"panoptic_{split}.json", f"instances_{split}.json"):
            assert (world / "annotations" / name).is_file()
    assert len(list((world / "annotations/semantic_train_zss").iterdir())) == 24
    for name in ("panoptic_train_zsp.json", "instances_train_zsi.json"):
        assert (world / "annotations" / name).is_file()
    split = json.loads((world / "split.json").read_text())
    assert set(split) >= {"categories", "seen_ids", "unseen_ids"}
    im = Image.open(world / "images/val/000001.png")
    assert im.mode == "RGB" and im.size == (64, 64)
    assert Image.open(world / "annotations/semantic_val/000001.png").mode == "L"


def test_same_arguments_same_bytes_whatever_the_workers(world, tmp_path):
    again = tmp_path / "again"
    generate_world(again, workers=2, **TINY)
    assert _digest(again) == _digest(world)
    other = tmp_path / "other_seed"
    generate_world(other, workers=1, **{**TINY, "seed": 4})
    assert _digest(other)["images/train/000001.png"] != _digest(world)["images/train/000001.png"]


def test_refuses_to_overwrite_unless_asked(world, tmp_path):
    with pytest.raises(FileExistsError, match="already holds a world"):
        generate_world(world, workers=1, **TINY)
    root = tmp_path / "w"
    generate_world(root, workers=1, images=4, val_images=2, size=32, seed=0)
    generate_world(root, workers=1, images=2, val_images=1, size=32, seed=0, overwrite=True)
    assert len(list((root / "images/train").iterdir())) == 2


def test_panoptic_png_json_semantic_and_instances_agree(world):
    split = json.loads((world / "split.json").read_text())
    index = {c["id"]: i for i, c in enumerate(split["categories"])}
    pan_json = _load(world, "panoptic_val.json")
    inst = _load(world, "instances_val.json")
    assert {c["id"] for c in pan_json["categories"]} == set(index)
    assert all(c["isthing"] in (0, 1) for c in pan_json["categories"])
    assert {c["id"] for c in inst["categories"]} == {c["id"] for c in split["categories"] if c["isthing"]}
    inst_by_image: dict[int, list] = {}
    for a in inst["annotations"]:
        inst_by_image.setdefault(a["image_id"], []).append(a)
    for ann in pan_json["annotations"]:
        ids = rgb2id(np.asarray(Image.open(world / "annotations/panoptic_val" / ann["file_name"])))
        sem = np.asarray(Image.open(world / "annotations/semantic_val" / ann["file_name"]))
        assert set(np.unique(ids).tolist()) == {s["id"] for s in ann["segments_info"]}
        thing_masks = []
        for s in ann["segments_info"]:
            m = ids == s["id"]
            ys, xs = np.nonzero(m)
            assert s["area"] == m.sum() and s["iscrowd"] == 0
            assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert (sem[m] == index[s["category_id"]]).all()
            if split["categories"][index[s["category_id"]]]["isthing"]:
                thing_masks.append((s["category_id"], m))
        rles = inst_by_image.get(ann["image_id"], [])
        assert len(rles) == len(thing_masks)
        for (cid, m), a in zip(thing_masks, rles):
            assert a["category_id"] == cid and a["iscrowd"] == 0 and a["area"] == m.sum()
            assert (mask_utils.decode(a["segmentation"]).astype(bool) == m).all()


def test_protocol_views(world):
    split = json.loads((world / "split.json").read_text())
    unseen = set(split["unseen_ids"])
    unseen_index = {i for i, c in enumerate(split["categories"]) if not c["seen"]}
    full = _load(world, "panoptic_train.json")
    zsp = _load(world, "panoptic_train_zsp.json")
    # ZSP: exactly the images without an unseen pixel, PNGs shared with panoptic_train/.
    expected = [a["image_id"] for a in full["annotations"]
                if not any(s["category_id"] in unseen for s in a["segments_info"])]
    assert [a["image_id"] for a in zsp["annotations"]] == expected
    assert [im["id"] for im in zsp["images"]] == expected and 0 < len(expected) < 24
    assert zsp["info"]["segmentations_folder"] == "panoptic_train"
    for a in zsp["annotations"]:
        ids = rgb2id(np.asarray(Image.open(world / "annotations/panoptic_train" / a["file_name"])))
        assert set(np.unique(ids).tolist()) == {s["id"] for s in a["segments_info"]}
        assert all(s["category_id"] not in unseen for s in a["segments_info"])
    # ZSS: unseen pixels ignored, everything else as in the full labels.
    n_unseen_pixels = 0
    for f in sorted((world / "annotations/semantic_train").iterdir()):
        sem = np.asarray(Image.open(f))
        zss = np.asarray(Image.open(world / "annotations/semantic_train_zss" / f.name))
        is_unseen = np.isin(sem, list(unseen_index))
        n_unseen_pixels += is_unseen.sum()
        assert (zss[is_unseen] == 255).all() and (zss[~is_unseen] == sem[~is_unseen]).all()
    assert n_unseen_pixels > 0
    # ZSI: all images kept, unseen annotations removed, the rest unchanged.
    inst = _load(world, "instances_train.json")
    zsi = _load(world, "instances_train_zsi.json")
    assert zsi["images"] == inst["images"]
    kept = [{k: v for k, v in a.items() if k != "id"} for a in inst["annotations"] if a["category_id"] not in unseen]
    assert [{k: v for k, v in a.items() if k != "id"} for a in zsi["annotations"]] == kept
    assert len(kept) < len(inst["annotations"])
    assert [a["id"] for a in zsi["annotations"]] == list(range(1, len(kept) + 1))


def test_encode_png_round_trip():
    rng = np.random.default_rng(0)
    for arr in (rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), rng.integers(0, 256, (4, 9), dtype=np.uint8)):
        import io
        assert (np.asarray(Image.open(io.BytesIO(encode_png(arr)))) == arr).all()
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2), dtype=np.int32))


def test_cli_synth_writes_world_and_preview(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--images", "6", "--val-images", "3", "--size", "48x64",
                 "--unseen", "red circle, gray dots", "--preview", "--workers", "1"]) == 0
    split = json.loads((out / "split.json").read_text())
    assert [c["name"] for c in split["categories"] if not c["seen"]] == ["red circle", "gray dots"]
    assert Image.open(out / "images/train/000001.png").size == (64, 48)
    preview = Image.open(out / "preview.png")
    assert preview.mode == "RGB" and preview.size[0] > 2 * 64 * 3
    assert "preview.png" in capsys.readouterr().out


def test_cli_synth_rejects_bad_unseen(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "x"), "--unseen", "red blob"]) == 2
    assert "'red blob' is not a category" in capsys.readouterr().err
    every_ring = ",".join(f"{c} ring" for c in ("red", "green", "blue", "yellow", "purple", "orange", "pink", "white"))
    assert main(["synth", "--out", str(tmp_path / "x"), "--unseen", every_ring]) == 2
    assert "shape 'ring'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
