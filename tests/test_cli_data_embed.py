"""`zsp data check/prepare` on a COCO-layout folder made here, and `zsp embed` (file, minilm, clip without weights)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from coco_fakes import coco_tree
from safetensors import safe_open

from zsp_ros.cli.main import main
from zsp_ros.data.synth_writer import generate_world


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> tuple[Path, Path]:
    world = tmp_path_factory.mktemp("world")
    generate_world(world, images=8, val_images=2, size=32, seed=5, workers=1)
    return world, coco_tree(world, tmp_path_factory.mktemp("coco"))


def test_data_check_reports_present_and_missing(coco, tmp_path, capsys):
    _, root = coco
    assert main(["data", "check", "--coco", str(root)]) == 0
    out = capsys.readouterr().out
    assert "panoptic: ready" in out and "MISSING annotations/panoptic_train2017_zsp.json" in out
    assert "zsp data prepare" in out
    assert main(["data", "check", "--coco", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISSING train2017/" in out and "instance: not ready" in out
    assert main(["data", "check", "--coco", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"]["semantic"]["ready"] is False
    assert main(["data", "check", "--coco", str(tmp_path / "nope")]) == 2


def test_data_prepare_writes_the_zsp_view(coco, capsys):
    world, root = coco
    assert main(["data", "prepare", "--coco", str(root), "--split", str(world / "split.json")]) == 0
    view = json.loads((root / "annotations/panoptic_train2017_zsp.json").read_text())
    expected = json.loads((world / "annotations/panoptic_train_zsp.json").read_text())
    assert sorted(im["id"] for im in view["images"]) == sorted(im["id"] for im in expected["images"])
    assert (root / "annotations" / view["info"]["segmentations_folder"]).resolve() == \
        (root / "panoptic_train2017").resolve()
    assert "kept" in capsys.readouterr().out


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with safe_open(str(path), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_embed_file_encoder_round_trip_with_split_ids(coco, tmp_path):
    world, _ = coco
    split = json.loads((world / "split.json").read_text())
    names = [c["name"] for c in split["categories"]]
    rng = np.random.default_rng(0)
    table = tmp_path / "w2v.json"
    table.write_text(json.dumps({n: rng.normal(size=6).tolist() for n in names}))
    out = tmp_path / "emb.safetensors"
    assert main(["embed", "--encoder", "file", "--table", str(table), "--classes", str(world / "split.json"),
                 "--out", str(out)]) == 0
    tensors, meta = _read(out)
    assert tensors["embeddings"].shape == (len(names), 6) and tensors["embeddings"].dtype == np.float32
    assert np.allclose(np.linalg.norm(tensors["embeddings"], axis=1), 1.0, atol=1e-5)
    assert tensors["category_ids"].tolist() == [c["id"] for c in split["categories"]]
    assert json.loads(meta["names"]) == names and meta["dim"] == "6"
    # the output is itself a table the file encoder reads
    again = tmp_path / "again.safetensors"
    names_file = tmp_path / "names.txt"
    names_file.write_text("\n".join(names[:3]) + "\n")
    assert main(["embed", "--encoder", "file", "--table", str(out), "--classes", str(names_file),
                 "--out", str(again)]) == 0
    t2, _ = _read(again)
    assert np.allclose(t2["embeddings"], tensors["embeddings"][:3], atol=1e-6) and "category_ids" not in t2


def test_embed_errors_are_clear(tmp_path, capsys):
    names = tmp_path / "n.txt"
    names.write_text("cow\nroad\n")
    assert main(["embed", "--encoder", "file", "--classes", str(names), "--out", str(tmp_path / "x")]) == 2
    assert "--table" in capsys.readouterr().err
    assert main(["embed", "--encoder", "minilm", "--classes", "no-such-split", "--out", str(tmp_path / "x")]) == 2
    assert "neither a split name" in capsys.readouterr().err
    pytest.importorskip("open_clip")
    rc = main(["embed", "--encoder", "clip", "--weights", str(tmp_path / "absent.safetensors"),
               "--classes", str(names), "--out", str(tmp_path / "x")])
    assert rc == 1 and "absent.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_embed_minilm_on_a_paper_split(tmp_path):
    pytest.importorskip("sentence_transformers")
    out = tmp_path / "zsi.safetensors"
    assert main(["embed", "--encoder", "minilm", "--classes", "zsi-65-15", "--out", str(out)]) == 0
    tensors, meta = _read(out)
    assert tensors["embeddings"].shape == (80, 384) and len(tensors["category_ids"]) == 80
    assert json.loads(meta["names"])[:2] == ["person", "bicycle"]
