"""`zsp eval panoptic` pairs images by file name (else image_id), refuses when nothing matches, and scores
categories by name with --match-names (issue 19.8).

Predictions are the synthetic world's own ground truth, rewritten the way real runs rewrite it:
ids given in reverse file order (`zsp segment $(ls -r val/*.png)`), PNGs renamed, category ids
renumbered as a runtime does for categories added by name. Scored right, each of them is 100.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from zsp_ros.cli.main import main
from zsp_ros.data.synth_writer import generate_world
from zsp_ros.evaluation.errors import EvaluationInputError
from zsp_ros.evaluation.pairing import category_map, name_key, pair_annotations


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, images=2, val_images=6, size=64, seed=5, workers=1)
    return root


def _gt(world: Path) -> dict:
    return json.loads((world / "annotations" / "panoptic_val.json").read_text())


def _pred(tmp: Path, world: Path, data: dict, rename=lambda name: name, rename_images: bool = True) -> Path:
    """Write ``data`` as a prediction JSON whose PNGs (and image records) are the ground truth's, renamed."""
    folder = tmp / "pred"
    folder.mkdir(exist_ok=True)
    for ann in data["annotations"]:
        shutil.copy(world / "annotations" / "panoptic_val" / ann["png_source"], folder / rename(ann["png_source"]))
        ann["file_name"] = rename(ann.pop("png_source"))
    for im in data.get("images", []) if rename_images else []:
        im["file_name"] = rename(im["file_name"])
    (tmp / "pred.json").write_text(json.dumps(data))
    return tmp / "pred.json"


def _reverse_ids(gt: dict) -> dict:
    """What `zsp segment $(ls -r ...)` writes: image ids 1..N over the files in reverse order."""
    anns = list(reversed(gt["annotations"]))
    ids = {ann["image_id"]: i for i, ann in enumerate(anns, start=1)}
    images = {im["id"]: im for im in gt["images"]}
    return {"images": [{**images[a["image_id"]], "id": ids[a["image_id"]]} for a in anns],
            "annotations": [{"image_id": ids[a["image_id"]], "png_source": a["file_name"],
                             "segments_info": [{"id": s["id"], "category_id": s["category_id"]}
                                               for s in a["segments_info"]]} for a in anns],
            "categories": gt["categories"]}


def _eval(world: Path, pred: Path, out: Path, *extra: str) -> int:
    return main(["eval", "panoptic", "--gt", str(world / "annotations" / "panoptic_val.json"), "--pred", str(pred),
                 "--split", str(world / "split.json"), "--out", str(out), *extra])


def test_reversed_file_order_pairs_by_file_name(world, tmp_path):
    pred = _pred(tmp_path, world, _reverse_ids(_gt(world)))
    assert _eval(world, pred, tmp_path / "m.json") == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["matching"]["images"] == {"by": "file_name", "pairs": 6}
    assert m["PQ"]["all"] == pytest.approx(100.0)
    # The same predictions paired by image_id (the old rule) score far lower: the pairing is what matters.
    gt = _gt(world)
    pairs, by = pair_annotations(gt, json.loads(pred.read_text()))
    assert by == "file_name" and all(g["file_name"] == p["file_name"] for g, p in pairs)
    assert any(g["image_id"] != p["image_id"] for g, p in pairs)


def test_image_stems_pair_when_the_png_names_differ(world, tmp_path):
    """PNG names from another tool, image records naming the source files: the image stems pair them."""
    data = _reverse_ids(_gt(world))
    for im in data["images"]:
        im["file_name"] = Path(im["file_name"]).stem + ".jpg"
    pred = _pred(tmp_path, world, data, rename=lambda name: f"pred_{name}", rename_images=False)
    assert _eval(world, pred, tmp_path / "m.json") == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["matching"]["images"]["by"] == "file_name" and m["PQ"]["all"] == pytest.approx(100.0)


def test_falls_back_to_image_id_and_says_so(world, tmp_path, capsys):
    gt = _gt(world)
    data = {"annotations": [{"image_id": a["image_id"], "png_source": a["file_name"],
                             "segments_info": a["segments_info"]} for a in gt["annotations"]]}
    pred = _pred(tmp_path, world, data, rename=lambda name: f"frame_{name}")
    assert _eval(world, pred, tmp_path / "m.json") == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["matching"]["images"] == {"by": "image_id", "pairs": 6} and m["PQ"]["all"] == pytest.approx(100.0)
    assert "paired 6 images by image_id" in capsys.readouterr().err


def test_nothing_matching_is_an_error_not_pq_zero(world, tmp_path, capsys):
    data = _reverse_ids(_gt(world))
    for ann in data["annotations"]:
        ann["image_id"] += 1000
    for im in data["images"]:
        im["id"] += 1000
    pred = _pred(tmp_path, world, data, rename=lambda name: f"other_{name}")
    assert _eval(world, pred, tmp_path / "m.json") == 2
    err = capsys.readouterr().err
    assert "none of the 6 predictions matches one of the 6 ground-truth images by file name" in err
    assert "'other_" in err and not (tmp_path / "m.json").exists()


def test_a_missing_or_doubled_name_names_the_image(world, tmp_path):
    gt = _gt(world)
    data = _reverse_ids(gt)
    data["annotations"] = data["annotations"][1:]            # the last ground-truth image has no prediction
    data["images"] = data["images"][1:]
    pred = json.loads(_pred(tmp_path, world, data).read_text())
    last = gt["annotations"][-1]
    with pytest.raises(EvaluationInputError, match=rf"pred.json \(image {last['image_id']}\): no prediction named "
                                                   rf"{Path(last['file_name']).stem}"):
        pair_annotations(gt, pred, pred_file=tmp_path / "pred.json")
    pred["annotations"].append({**pred["annotations"][0], "image_id": 99})
    with pytest.raises(EvaluationInputError, match="several predictions are named"):
        pair_annotations(gt, pred)


def _renumbered(gt: dict, extra_name: str | None = None) -> dict:
    """Predictions whose categories carry runtime ids (1000 + k) and names spelled differently."""
    data = _reverse_ids(gt)
    new_id = {c["id"]: 1000 + k for k, c in enumerate(gt["categories"])}
    data["categories"] = [{**c, "id": new_id[c["id"]], "name": "  " + c["name"].upper().replace(" ", "  _")}
                          for c in gt["categories"]]
    for ann in data["annotations"]:
        for s in ann["segments_info"]:
            s["category_id"] = new_id[s["category_id"]]
    if extra_name:                                            # a category the ground truth does not have
        data["categories"].append({"id": 5000, "name": extra_name, "isthing": 1})
        first = data["annotations"][0]["segments_info"][0]
        first["category_id"] = 5000
    return data


def test_match_names_scores_runtime_ids_by_name(world, tmp_path, capsys):
    pred = _pred(tmp_path, world, _renumbered(_gt(world)))
    assert _eval(world, pred, tmp_path / "m.json") == 2                 # by id: unknown category ids
    err = capsys.readouterr().err
    assert "unknown category id 10" in err and "score them by name with --match-names" in err
    assert _eval(world, pred, tmp_path / "m.json", "--match-names") == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["PQ"]["all"] == pytest.approx(100.0) and m["PQ"]["unseen"] == pytest.approx(100.0)
    cats = m["matching"]["categories"]
    assert cats["matched"] == 64 and cats["unmatched_predicted"] == [] and cats["dropped_segments"] == 0
    assert len(cats["renumbered"]) == 64


def test_match_names_leaves_out_names_the_ground_truth_lacks(world, tmp_path, capsys):
    pred = _pred(tmp_path, world, _renumbered(_gt(world), extra_name="purple teapot"))
    assert _eval(world, pred, tmp_path / "m.json", "--match-names") == 0
    m = json.loads((tmp_path / "m.json").read_text())
    cats = m["matching"]["categories"]
    assert cats["unmatched_predicted"] == ["purple teapot"] and cats["dropped_segments"] == 1
    assert m["PQ"]["all"] < 100.0                               # that segment's ground truth is now missed
    assert "purple teapot" in capsys.readouterr().err


def test_category_map_rules():
    gt = [{"id": 1, "name": "red circle"}, {"id": 2, "name": "blue star"}]
    mapping, report = category_map(gt, [{"id": 7, "name": "Red Circle"}, {"id": 2, "name": "blue_star"},
                                        {"id": 9, "name": "cat"}])
    assert mapping == {7: 1, 2: 2, 9: None}
    assert report == {"by": "name", "matched": 2, "renumbered": {"7": 1}, "unmatched_predicted": ["cat"]}
    assert name_key("  Red\tCIRCLE ") == name_key("red-circle") == "redcircle"
    with pytest.raises(EvaluationInputError, match="same name up to case and spaces"):
        category_map(gt, [{"id": 1, "name": "red circle"}, {"id": 3, "name": "RED CIRCLE"}])
    with pytest.raises(EvaluationInputError, match="needs the prediction JSON's 'categories'"):
        category_map(gt, [])
