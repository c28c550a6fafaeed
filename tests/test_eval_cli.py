"""`zsp eval` end to end on a tiny synthetic world: ground truth against itself, output keys, errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zsp_ros.cli.main import main
from zsp_ros.data.synth_writer import generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, images=4, val_images=8, size=64, seed=2, workers=1)
    return root


def _eval(world, task, gt, pred, out, *extra):
    return main(["eval", task, "--gt", str(gt), "--pred", str(pred), "--split", str(world / "split.json"),
                 "--out", str(out), *extra])


def test_ground_truth_against_itself_scores_100(world, tmp_path):
    a = world / "annotations"
    assert _eval(world, "panoptic", a / "panoptic_val.json", a / "panoptic_val.json", tmp_path / "p.json") == 0
    p = json.loads((tmp_path / "p.json").read_text())
    for metric in ("PQ", "SQ", "RQ"):
        assert set(p[metric]) == {"all", "things", "stuff", "seen", "unseen", "hm"}
        assert all(v == pytest.approx(100.0) for v in p[metric].values())
    assert isinstance(p["per_category"], list) and len(p["per_category"]) == 64

    assert _eval(world, "semantic", a / "semantic_val", a / "semantic_val", tmp_path / "s.json") == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["mIoU"] == {"all": 100.0, "seen": 100.0, "unseen": 100.0}
    assert s["hIoU"] == 100.0 and s["pAcc"] == 100.0

    gt = json.loads((a / "instances_val.json").read_text())
    results = [{"image_id": x["image_id"], "category_id": x["category_id"], "segmentation": x["segmentation"],
                "score": 1.0} for x in gt["annotations"]]
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert _eval(world, "instance", a / "instances_val.json", tmp_path / "results.json", tmp_path / "i.json") == 0
    i = json.loads((tmp_path / "i.json").read_text())
    for key in ("mAP50", "recall100"):
        assert {"seen", "unseen", "hm"} <= set(i[key])
        assert i[key]["seen"] == pytest.approx(100.0) and i[key]["unseen"] == pytest.approx(100.0)


def test_prediction_folder_option_and_wrong_categories(world, tmp_path):
    """A prediction with every stuff segment relabelled scores stuff PQ 0 and things PQ 100."""
    a = world / "annotations"
    pred = json.loads((a / "panoptic_val.json").read_text())
    split = json.loads((world / "split.json").read_text())
    stuff_ids = [c["id"] for c in split["categories"] if not c["isthing"]]
    for ann in pred["annotations"]:
        for s in ann["segments_info"]:
            if s["category_id"] in stuff_ids:
                s["category_id"] = stuff_ids[(stuff_ids.index(s["category_id"]) + 1) % len(stuff_ids)]
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    assert _eval(world, "panoptic", a / "panoptic_val.json", tmp_path / "pred.json", tmp_path / "m.json",
                 "--pred-folder", str(a / "panoptic_val")) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["PQ"]["things"] == pytest.approx(100.0) and m["PQ"]["stuff"] == 0.0


def test_errors_name_the_file_and_image(world, tmp_path, capsys):
    a = world / "annotations"
    folder = tmp_path / "pred"
    shutil.copytree(a / "panoptic_val", folder)
    shutil.copy(a / "panoptic_val.json", tmp_path / "pred.json")
    small = np.asarray(Image.open(folder / "000003.png"))[:32]
    Image.fromarray(small).save(folder / "000003.png")
    assert _eval(world, "panoptic", a / "panoptic_val.json", tmp_path / "pred.json", tmp_path / "m.json") == 2
    err = capsys.readouterr().err
    assert f"{folder / '000003.png'} (image 3)" in err and "64x32 (WxH)" in err
    assert not (tmp_path / "m.json").exists()

    assert _eval(world, "semantic", a / "semantic_val", tmp_path / "none", tmp_path / "m.json") == 2
    assert "prediction label folder does not exist" in capsys.readouterr().err
    assert _eval(world, "instance", a / "instances_val.json", tmp_path / "none.json", tmp_path / "m.json") == 2
    assert "none.json: results JSON does not exist" in capsys.readouterr().err
    assert main(["eval", "panoptic", "--gt", str(a / "panoptic_val.json"), "--pred", str(a / "panoptic_val.json"),
                 "--split", str(tmp_path / "nosplit.json")]) == 2
    assert "nosplit.json does not exist" in capsys.readouterr().err
