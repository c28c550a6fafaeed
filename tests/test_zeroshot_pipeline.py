"""Stages 1-3 end to end on a tiny world: segmenter -> bank -> PADing -> val cache -> heads scored ->
benchmark -> model kit -> `Segmenter.from_kit` segments an image.

Tiny everything (64x64 images, an 8-query Mask2Former trained 2 iterations, a 5-step PADing run,
the attribute text encoder): the numbers mean nothing, the plumbing and the exactness checks do.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from experiments.__main__ import main as experiment
from zsp_ros.cli.main import main as zsp

TINY_MODEL = {
    "backbone": {"depth": 18, "width": 0.5, "norm": "GN"},
    "pixel_decoder": {"conv_dim": 32, "mask_dim": 32, "norm": "GN",
                      "transformer_in_features": ["res3", "res4", "res5"], "common_stride": 4,
                      "enc_layers": 1, "nheads": 2, "n_points": 2, "dim_feedforward": 64},
    "decoder": {"hidden_dim": 32, "num_queries": 8, "nheads": 2, "dim_feedforward": 64,
                "dec_layers": 2, "pre_norm": False, "enforce_input_project": False},
}


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from zsp_ros.data.synth_writer import generate_world

    root = tmp_path_factory.mktemp("world")
    generate_world(root, images=20, val_images=4, size=64, workers=1)
    return root


@pytest.fixture(scope="module")
def segmenter(world, tmp_path_factory):
    torch.set_num_threads(1)
    with open("config/synth_small.yaml") as f:
        train = yaml.safe_load(f)["train"]
    train.update(batch_size=2, iterations=2, num_points=32, checkpoint_period=2)
    cfg = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY_MODEL, "train": train}))
    run = tmp_path_factory.mktemp("seg") / "run"
    assert zsp(["train", "segmenter", "--config", str(cfg), "--data", str(world), "--out", str(run),
                "--no-progress"]) == 0
    return run


@pytest.fixture(scope="module")
def pading_config(tmp_path_factory):
    from zsp_ros.training.pading_config import load_config

    cfg = load_config("config/pading_synth.yaml")
    cfg["generator"].update(num_primitives=16, num_layers=1, num_heads=2, ffn_dim=32)
    cfg["gmmn_generator"].update(noise_dim=8, hidden_dim=32)
    cfg["optim"].update(steps=5, images_per_step=4, generator_lr_steps=[100])
    cfg["final_head"].update(steps=10)
    cfg["logging"].update(log_every=5, checkpoint_every=5, tensorboard=False)
    path = tmp_path_factory.mktemp("pcfg") / "pading_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pipeline_bank_pading_cache_evaluate_kit(world, segmenter, pading_config, tmp_path, capsys):
    from zsp_ros.data.categories import read_split
    from zsp_ros.evaluation.panoptic_quality import evaluate_panoptic
    from zsp_ros.runtime.segmenter import Segmenter
    from zsp_ros.training.evaluate_head import HeadEvaluator, headline, load_head
    from zsp_ros.training.feature_bank import load_feature_bank
    from zsp_ros.training.pading_config import load_config
    from zsp_ros.training.panoptic_predict import predict_panoptic
    from zsp_ros.training.segmenter_run import load_segmenter
    from zsp_ros.training.train_pading import train_pading
    from zsp_ros.training.val_cache import ensure_val_cache

    split = read_split(world / "split.json")
    bank_path = tmp_path / "bank.safetensors"
    args = ["train", "bank", "--segmenter", str(segmenter), "--data", str(world), "--out", str(bank_path), "--quiet"]
    assert zsp(args) == 0
    bank = load_feature_bank(bank_path)
    zsp_images = len(json.loads((world / "annotations/panoptic_train_zsp.json").read_text())["images"])
    assert len(bank) == 8 * zsp_images and bank.embed_dim == 32 and bank.categories == split["categories"]
    assert set(bank.category_ids.tolist()) - {0} <= set(split["seen_ids"]) and (bank.category_ids > 0).any()
    assert zsp(args) == 0 and "up to date" in capsys.readouterr().out          # cached by segmenter hash

    full_path = tmp_path / "bank_all.safetensors"
    assert zsp(args[:-3] + ["--out", str(full_path), "--protocol", "supervised", "--quiet"]) == 0
    full = load_feature_bank(full_path)
    assert len(full) == 8 * 20 and full.extra["protocol"] == "supervised"
    assert set(full.category_ids.tolist()) & set(split["unseen_ids"])           # unseen objects are matched too

    summary = train_pading(bank_path=bank_path, segmenter=segmenter, config=load_config(pading_config),
                           out_dir=tmp_path / "pading", variant="pading", text_encoder="attributes",
                           progress=False, tensorboard=False)
    assert summary["metrics"]["steps"] == 5

    cache = ensure_val_cache(segmenter=segmenter, data_dir=world, out=tmp_path / "vc.safetensors", progress=False)
    assert cache.mask_logits.shape == (4, 8, 16, 16) and cache.query_embeds.shape == (4, 8, 32)
    again = ensure_val_cache(segmenter=segmenter, data_dir=world, out=tmp_path / "vc.safetensors", progress=False)
    assert again.extra["seconds"] == cache.extra["seconds"] and torch.equal(again.query_embeds, cache.query_embeds)

    # exactness: the cached path gives the segmenter's own PQ bit for bit (file-based evaluation)
    model, run = load_segmenter(segmenter)
    evaluator = HeadEvaluator(cache)
    own = evaluator.evaluate(model.class_head.weight, model.class_head.bias, run.categories)
    pred_json = predict_panoptic(model, data_dir=world, categories=run.categories, out_dir=tmp_path / "pred")
    reference = evaluate_panoptic(world / "annotations/panoptic_val.json", pred_json, split)
    assert own["panoptic"]["PQ"] == reference["PQ"] and own["panoptic"]["per_category"] == reference["per_category"]

    weight, bias = load_head(tmp_path / "pading" / "head.safetensors")
    full_metrics = evaluator.evaluate(weight, bias, summary["categories"],
                                      views=("panoptic", "semantic", "instance"))
    flat = headline(full_metrics)
    assert {"PQ.unseen", "mIoU.unseen", "hIoU", "mAP50.unseen", "recall100.hm"} <= set(flat)
    assert full_metrics["semantic"]["pAcc"] is not None and full_metrics["instance"]["detections"] > 0
    with pytest.raises(ValueError, match="head must be weight"):
        evaluator.evaluate(weight[:-1], bias, summary["categories"])

    kit = tmp_path / "kit"
    assert zsp(["train", "kit", "--segmenter", str(segmenter), "--pading", str(tmp_path / "pading"),
                "--bank", str(bank_path), "--out", str(kit), "--data", str(world), "--rows-per-category", "5",
                "--max-no-object-rows", "20", "--synthetic-per-category", "4", "--short-side", "64",
                "--max-long-side", "96"]) == 0
    manifest = json.loads((kit / "manifest.json").read_text())
    assert [c["id"] for c in manifest["categories"]] == split["seen_ids"]
    assert {c["origin"] for c in manifest["categories"]} == {"seen"}
    assert set(manifest["runtime"]) == {"synthetic_per_category", "class_weights", "fit_kwargs"}
    assert isinstance(manifest["provenance"]["metrics"]["PQ"]["unseen"], float)
    assert manifest["provenance"]["metrics"]["runtime_after_adding_unseen"]["added"] == \
        [c["name"] for c in split["categories"] if not c["seen"]]
    assert "runtime after adding the unseen names" in (kit / "README.md").read_text()
    assert manifest["provenance"]["network_parity_fp32"]["max_abs_embed_diff"] < 0.1
    from safetensors.torch import load_file
    network = load_file(str(kit / "network.safetensors"))
    assert all(v.dtype == torch.float16 for v in network.values() if v.is_floating_point())
    assert not any("class_embed" in k for k in network)

    from PIL import Image
    image = np.asarray(Image.open(world / "images/val/000001.png").convert("RGB"))
    with Segmenter.from_kit(kit) as seg:
        result = seg.segment(image)
        assert result.panoptic.shape == image.shape[:2] and result.semantic.shape == image.shape[:2]
        assert {s.category_id for s in result.segments} <= set(split["seen_ids"])
        assert len(seg.registry.list()) == len(split["seen_ids"])


def test_benchmark_writes_table_and_json(world, segmenter, pading_config, tmp_path):
    out = tmp_path / "results"
    assert experiment(["zeroshot", "--data", str(world), "--segmenter", str(segmenter), "--seeds", "2",
                "--out", str(out), "--config", str(pading_config), "--variants", "seen_only", "gmmn", "oracle",
                "--text-encoder", "attributes", "--work", str(tmp_path / "work"), "--quiet", "--tag", "t"]) == 0
    report = json.loads((out / "zeroshot_attributes_t.json").read_text())
    assert set(report["variants"]) == {"seen_only", "gmmn", "oracle_head"} and report["oracle"]["used"] == "oracle_head"
    pq = report["variants"]["seen_only"]["PQ"]
    assert set(pq) == {"seen", "unseen", "hm"} and pq["unseen"]["mean"] == 0.0 and pq["unseen"]["std"] == 0.0
    assert len(pq["seen"]["values"]) == 2 and {"mean", "std"} <= set(report["variants"]["gmmn"]["SQ"]["unseen"])
    assert "mIoU" in report["variants"]["gmmn"] and "mAP50" in report["variants"]["gmmn"]
    assert "mIoU" not in report["variants"]["seen_only"]
    assert set(report["goals"]) >= {"pading_over_gmmn_unseen_pq", "all_met"} and "provenance" in report
    md = (out / "zeroshot_attributes_t.md").read_text()
    assert "| seen_only |" in md and "oracle_head" in md and "## Ablation" in md
    heads = sorted((tmp_path / "work" / "runs").rglob("head.safetensors"))
    assert len(heads) == 2                               # gmmn x 2 seeds
    stamps = [h.stat().st_mtime_ns for h in heads]
    assert experiment(["zeroshot", "--data", str(world), "--segmenter", str(segmenter), "--seeds", "2",
                "--out", str(out), "--config", str(pading_config), "--variants", "gmmn", "--no-extra-views",
                "--text-encoder", "attributes", "--work", str(tmp_path / "work"), "--quiet", "--tag", "t"]) == 0
    assert [h.stat().st_mtime_ns for h in heads] == stamps          # finished runs are reused, not retrained
    assert experiment(["zeroshot", "--data", str(world), "--segmenter", str(segmenter), "--seeds", "1",
                "--out", str(out), "--config", str(pading_config), "--variants", "seen_only", "--tune",
                "--tune-images", "3", "--work", str(tmp_path / "work"), "--quiet", "--tag", "t"]) == 0
    tuned = json.loads((out / "zeroshot_tune_t.json").read_text())        # never the validation images
    assert tuned["evaluation"]["split_label"] == "tuning" and tuned["evaluation"]["images"] == 3
    assert tuned["evaluation"]["data"] == str((tmp_path / "work" / "tune_world").resolve())
    with pytest.raises(SystemExit, match="no key"):
        experiment(["zeroshot", "--data", str(world), "--segmenter", str(segmenter), "--set", "losses.nope=1",
             "--out", str(out), "--work", str(tmp_path / "work")])
