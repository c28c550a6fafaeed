"""`zsp train segmenter` / `zsp train oracle` end to end on a tiny synthetic world (tiny model)."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from zsp_ros.cli.main import main as zsp
from zsp_ros.data.categories import read_split

TINY_MODEL = {
    "backbone": {"depth": 18, "width": 0.5, "norm": "GN"},
    "pixel_decoder": {"conv_dim": 32, "mask_dim": 32, "norm": "GN",
                      "transformer_in_features": ["res3", "res4", "res5"], "common_stride": 4,
                      "enc_layers": 1, "nheads": 2, "n_points": 2, "dim_feedforward": 64},
    "decoder": {"hidden_dim": 32, "num_queries": 8, "nheads": 2, "dim_feedforward": 64,
                "dec_layers": 2, "pre_norm": False, "enforce_input_project": False},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from zsp_ros.data.synth_writer import generate_world

    root = tmp_path_factory.mktemp("world")
    generate_world(root, images=16, val_images=4, size=64, workers=1)
    return root


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    with open("config/synth_small.yaml") as f:
        train = yaml.safe_load(f)["train"]          # the real train section, tiny sizes on top
    train.update(batch_size=2, iterations=3, num_points=32, checkpoint_period=2)
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump({"model": TINY_MODEL, "train": train}))
    return path


@pytest.fixture(autouse=True)
def _one_thread(_few_torch_threads):
    torch.set_num_threads(1)


def test_segmenter_trains_resumes_and_evaluates(world, config, tmp_path):
    run = tmp_path / "run"
    args = ["train", "segmenter", "--config", str(config), "--data", str(world), "--out", str(run),
            "--no-progress"]
    assert zsp(args + ["--eval", "--eval-limit", "2"]) == 0
    for name in ("config.yaml", "provenance.json", "categories.json", "segmenter.safetensors",
                 "train_summary.json", "metrics.jsonl", "checkpoints/last_checkpoint.json",
                 "eval/panoptic_val.json", "eval/metrics_panoptic.json"):
        assert (run / name).is_file(), name
    split = read_split(world / "split.json")
    categories = json.loads((run / "categories.json").read_text())
    assert [c["id"] for c in categories] == split["seen_ids"]         # seen only, split order
    assert [c["index"] for c in categories] == list(range(len(categories)))
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"] == TINY_MODEL and resolved["train"]["iterations"] == 3
    assert resolved["train"]["hflip"] is True                          # optional keys recorded
    assert "versions" in json.loads((run / "provenance.json").read_text())
    metrics = json.loads((run / "eval/metrics_panoptic.json").read_text())
    assert {"PQ", "SQ", "RQ", "per_category"} <= set(metrics) and metrics["images"] == 2
    preds = json.loads((run / "eval/panoptic_val.json").read_text())
    for ann in preds["annotations"]:
        assert (run / "eval/panoptic_val" / ann["file_name"]).is_file()
        assert all(s["category_id"] in split["seen_ids"] for s in ann["segments_info"])

    with pytest.raises(SystemExit, match="--resume"):                 # never overwrite a run
        zsp(args)
    assert zsp(["train", "segmenter", "--data", str(world), "--out", str(run), "--resume",
                "--iters", "4", "--no-progress"]) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["start_iteration"] == 3 and summary["last"]["iteration"] == 4
    assert json.loads((run / "checkpoints/last_checkpoint.json").read_text())["iteration"] == 4


def test_oracle_trains_on_every_category(world, config, tmp_path):
    run = tmp_path / "oracle"
    assert zsp(["train", "oracle", "--config", str(config), "--data", str(world), "--out",
                str(run), "--iters", "1", "--no-progress"]) == 0
    categories = json.loads((run / "categories.json").read_text())
    split = read_split(world / "split.json")
    assert [c["id"] for c in categories] == [c["id"] for c in split["categories"]]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["view"] == "all" and summary["train_images"] == 16
