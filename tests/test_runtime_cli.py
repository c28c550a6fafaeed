"""`zsp segment` and `zsp categories` on a kit built only from the project's real parts (tiny sizes)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from runtime_fakes import make_real_kit

from zsp_ros.cli.main import main


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory):
    return make_real_kit(tmp_path_factory.mktemp("kit") / "kit")


def _images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_segment_writes_coco_panoptic_and_overlays(kit_dir, tmp_path, capsys):
    paths = _images(tmp_path / "in", [(40, 60), (70, 30)])
    out = tmp_path / "out"
    rc = main(["segment", *paths, "--kit", str(kit_dir), "--out", str(out), "--add", "red star, blue circle",
               "--overlap-threshold", "0.5"])
    assert rc == 0
    assert "added red star (id 5), blue circle (id 6)" in capsys.readouterr().out
    coco = json.loads((out / "panoptic.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["img0.png", "img1.png"]
    assert {c["name"] for c in coco["categories"]} >= {"red star", "blue circle", "red circle"}
    assert coco["info"]["category_set_version"] == 2
    for im, ann in zip(coco["images"], coco["annotations"]):
        png = np.asarray(Image.open(out / "panoptic" / ann["file_name"]))
        assert png.shape == (im["height"], im["width"], 3)
        png = png.astype(np.int64)
        ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
        assert sorted(np.unique(ids[ids > 0]).tolist()) == sorted(s["id"] for s in ann["segments_info"])
        for s in ann["segments_info"]:
            assert s["area"] == int((ids == s["id"]).sum())
        overlay = np.asarray(Image.open(out / "overlay" / ann["file_name"]))
        assert overlay.shape == (im["height"], im["width"], 3)
    assert sum(len(a["segments_info"]) for a in coco["annotations"]) > 0      # the check above saw segments


def test_segment_errors(kit_dir, tmp_path, capsys):
    assert main(["segment", "x.png", "--kit", str(tmp_path / "nokit"), "--out", str(tmp_path)]) == 2
    assert "not a directory" in capsys.readouterr().err
    paths = _images(tmp_path / "in", [(8, 8)])
    assert main(["segment", *paths, "--kit", str(kit_dir), "--out", str(tmp_path / "o"), "--add", "red circle"]) == 2
    assert "already a category" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["segment", str(tmp_path / "bad.png"), *paths, "--kit", str(kit_dir), "--out",
                 str(tmp_path / "o2")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "o2" / "panoptic.json").read_text())["annotations"]) == 1


def test_categories_add_list_remove(kit_dir, tmp_path, capsys):
    state = str(tmp_path / "state")
    assert main(["categories", "list", "--state", state, "--kit", str(kit_dir)]) == 0
    assert "version 1" in capsys.readouterr().out
    assert main(["categories", "add", "red star", "green star", "--state", state, "--kit", str(kit_dir),
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "added red star (id 5), green star (id 6)" in out
    assert "\n  'red star' (id 5): nearest '" in out and "\n  'green star' (id 6): nearest '" in out
    assert main(["categories", "remove", "green star", "--id", "1", "--state", state, "--kit", str(kit_dir)]) == 0
    assert "removed ids 1, 6; version 3" in capsys.readouterr().out
    assert main(["categories", "list", "--state", state, "--json"]) == 0       # no kit needed to list
    listed = json.loads(capsys.readouterr().out)
    assert listed["version"] == 3 and [c["id"] for c in listed["categories"]] == [2, 4, 5]
    assert main(["categories", "add", "  padded", "--state", state, "--kit", str(kit_dir)]) == 2
    assert "leading or trailing whitespace" in capsys.readouterr().err
    assert main(["categories", "remove", "nothing", "--state", state, "--kit", str(kit_dir)]) == 2
    assert "unknown category 'nothing'" in capsys.readouterr().err
    # the segmenter starts from the same state
    out = tmp_path / "seg"
    assert main(["segment", *_images(tmp_path / "in", [(16, 16)]), "--kit", str(kit_dir), "--out", str(out),
                 "--state", state]) == 0
    coco = json.loads((out / "panoptic.json").read_text())
    assert [c["id"] for c in coco["categories"]] == [2, 4, 5]
