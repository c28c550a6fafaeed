"""The real-data path end to end, every step a subprocess of the real CLI, on a COCO-format mini
dataset made here from the synthetic world with real COCO panoptic category ids (``--protocol zsp``):

data check -> data prepare -> embed (offline MiniLM) -> train segmenter --coco (1 process) ->
the same under torchrun (2 CPU processes, gloo) -> --resume -> train bank --coco -> train pading (1 and 2 processes)
-> train import (a checkpoint with the released key names, PADing generator included) ->
train kit -> zsp run over an MCAP bag written here. No step may be skipped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from coco_fakes import coco_panoptic_tree
from safetensors import safe_open

from zsp_ros.cli.main import main as zsp_main
from zsp_ros.data.coco_real import load_coco_split
from zsp_ros.data.synth_world import DEFAULT_UNSEEN
from zsp_ros.data.synth_writer import generate_world

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {
    "backbone": {"depth": 18, "width": 0.5, "norm": "GN"},
    "pixel_decoder": {"conv_dim": 32, "mask_dim": 16, "norm": "GN",
                      "transformer_in_features": ["res3", "res4", "res5"], "common_stride": 4,
                      "enc_layers": 1, "nheads": 2, "n_points": 2, "dim_feedforward": 32},
    "decoder": {"hidden_dim": 16, "num_queries": 6, "nheads": 2, "dim_feedforward": 32,
                "dec_layers": 3, "pre_norm": False, "enforce_input_project": False},
}
CROP = 64


def _zsp(*args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m zsp_ros.cli.main ARGS`` (or ``python -m MODULE`` when args[0] == "-m") at 1 thread."""
    cmd = [sys.executable, *args] if args[0] == "-m" else [sys.executable, "-m", "zsp_ros.cli.main", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"[{time.perf_counter() - t0:5.1f} s] {' '.join(args[:3])}")
    if ok and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
                    f"--- stderr\n{proc.stderr[-5000:]}")
    return proc


def _configs(root: Path) -> tuple[Path, Path]:
    """Tiny segmenter config (the real train section, tiny sizes) and tiny PADing config."""
    train = yaml.safe_load((REPO / "config/synth_small.yaml").read_text())["train"]
    lsj = yaml.safe_load((REPO / "config/r50_coco_panoptic.yaml").read_text())["train"]["large_scale_jitter"]
    train.update(batch_size=2, iterations=2, num_points=16, checkpoint_period=2, log_period=1,
                 large_scale_jitter={**lsj, "crop_size": 1024, "min_scale": 0.5, "max_scale": 1.5})
    seg = root / "tiny_segmenter.yaml"
    seg.write_text(yaml.safe_dump({"model": TINY_MODEL, "train": train}))
    pading = yaml.safe_load((REPO / "config/pading_synth.yaml").read_text())
    pading["generator"].update(num_primitives=8, num_layers=1, num_heads=2, ffn_dim=32)
    pading["optim"].update(steps=3, images_per_step=2)
    pading["final_head"].update(steps=3, max_rows_per_class=50)
    pading["logging"].update(tensorboard=False, log_every=1, checkpoint_every=100)
    pad = root / "tiny_pading.yaml"
    pad.write_text(yaml.safe_dump(pading))
    return seg, pad


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with safe_open(str(path), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _released_checkpoint(run: Path, path: Path, pading_cfg: dict) -> None:
    """A PADing-style .pth: the trained segmenter under the official detectron2 names (DDP
    ``module.`` prefix), PADing's generator under the released names and shapes
    (fc_projection, dict_feature, generator.layers.i.{self_attn,multihead_attn}.in_proj_*, ...)
    and modules that have no counterpart (new_fc, criterion.empty_weight)."""
    from safetensors.torch import load_file

    net = load_file(str(run / "segmenter.safetensors"))
    e, g = TINY_MODEL["decoder"]["hidden_dim"], pading_cfg["generator"]
    torch.manual_seed(0)
    layer = torch.nn.TransformerDecoderLayer(e, g["num_heads"], g["ffn_dim"], dropout=0.0)
    dec = torch.nn.TransformerDecoder(layer, g["num_layers"], norm=torch.nn.LayerNorm(e))
    k = net["sem_seg_head.predictor.class_embed.weight"].shape[0]
    state = {**net, "fc_projection.weight": torch.randn(e, 384), "fc_projection.bias": torch.zeros(e),
             "dict_feature.weight": torch.randn(g["num_primitives"], e),
             **{f"generator.{n}": v for n, v in dec.state_dict().items()},
             "new_fc.weight": torch.zeros(k, e), "new_fc.bias": torch.zeros(k),
             "criterion.empty_weight": torch.ones(k)}
    torch.save({"model": {f"module.{n}": v for n, v in state.items()}, "iteration": 2}, path)


def _write_bag(path: Path, n: int = 3) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    t = store.types
    rng = np.random.default_rng(0)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for i in range(n):
            rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            stamp = 10**9 + i * 10**8
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](
                sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam")
            msg = t["sensor_msgs/msg/Image"](header=header, height=48, width=64, encoding="rgb8",
                                             is_bigendian=0, step=3 * 64, data=rgb.reshape(-1))
            w.write(conn, stamp, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> tuple[Path, Path]:
    world = tmp_path_factory.mktemp("world")
    generate_world(world, images=10, val_images=2, size=48, seed=2, unseen=list(DEFAULT_UNSEEN[:3]),
                   workers=1)
    return world, coco_panoptic_tree(world, tmp_path_factory.mktemp("coco"))


@pytest.mark.timeout(400)
def test_coco_format_data_through_every_command(coco, tmp_path):
    world, root = coco
    seg_cfg, pad_cfg = _configs(tmp_path)
    split = load_coco_split("zsp")

    # 1. data check: panoptic ready except the ZSP view, which it says how to make
    out = _zsp("data", "check", "--coco", str(root), "--task", "panoptic").stdout
    assert "panoptic: ready" in out and "MISSING annotations/panoptic_train2017_zsp.json" in out
    assert "zsp data prepare" in out
    # training before `prepare` stops naming the missing view and the commands (in-process: cheap)
    with pytest.raises(SystemExit, match=r"panoptic_train2017_zsp\.json.*zsp data prepare.*zsp data check --coco"):
        zsp_main(["train", "segmenter", "--config", str(seg_cfg), "--coco", str(root), "--out",
                  str(tmp_path / "never"), "--device", "cpu", "--no-progress"])

    # 2. data prepare: the ZSP view keeps exactly the world's ZSP images (unseen mapped to COCO unseen)
    out = _zsp("data", "prepare", "--coco", str(root)).stdout
    view = json.loads((root / "annotations/panoptic_train2017_zsp.json").read_text())
    world_view = json.loads((world / "annotations/panoptic_train_zsp.json").read_text())
    assert sorted(im["id"] for im in view["images"]) == sorted(im["id"] for im in world_view["images"])
    assert f"kept {len(view['images'])} of 10" in out and 2 <= len(view["images"]) < 10

    # 3. embed the 133 ZSP class names with the offline encoder
    emb = tmp_path / "emb_zsp.safetensors"
    _zsp("embed", "--encoder", "minilm-l6-v2", "--classes", "zsp", "--out", str(emb))
    tensors, meta = _read(emb)
    assert tensors["embeddings"].shape == (133, 384)
    assert tensors["category_ids"].tolist() == [c["id"] for c in split["categories"]]

    # 4. train segmenter on COCO, one process, LSJ crop from --crop-size
    run1 = tmp_path / "run1"
    common = ["--coco", str(root), "--protocol", "zsp", "--device", "cpu", "--no-progress"]
    _zsp("train", "segmenter", "--config", str(seg_cfg), "--out", str(run1), "--crop-size", str(CROP), *common)
    categories = json.loads((run1 / "categories.json").read_text())
    assert [c["id"] for c in categories] == split["seen_ids"] and len(categories) == 119
    assert [c["index"] for c in categories] == list(range(119))
    resolved = yaml.safe_load((run1 / "config.yaml").read_text())
    assert resolved["train"]["large_scale_jitter"]["crop_size"] == CROP
    prov = json.loads((run1 / "provenance.json").read_text())
    assert prov["data"]["protocol"] == "zsp" and prov["train_images"] == len(view["images"])

    # 5. the same under torchrun: 2 CPU processes on gloo, same global batch -> same first step
    run2 = tmp_path / "run2"
    _zsp("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "zsp_ros.training.train_segmenter", "--config", str(seg_cfg), "--out", str(run2),
         "--crop-size", str(CROP), *common, timeout=240)
    summary = json.loads((run2 / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["last"]["iteration"] == 2
    one, two = _metrics(run1)[0], _metrics(run2)[0]
    # a metrics.jsonl line: the last layer's losses (zsp_ros/training/criterion.py LOSS_NAMES),
    # their weighted total, and the step's bookkeeping (zsp_ros/training/loop.py); a missing
    # key is a failure, not a comparison silently left out
    losses = {"loss_ce", "loss_mask", "loss_dice", "total"}
    assert set(one) == set(two) == losses | {"grad_norm", "lr", "iteration", "step_s"}, \
        (sorted(one), sorted(two))
    assert one["iteration"] == two["iteration"] == 1
    for key in sorted(losses):
        assert two[key] == pytest.approx(one[key], rel=1e-3, abs=1e-5), key

    # 6. --resume continues the 2-process run (one process now; the config comes from RUN/config.yaml)
    _zsp("train", "segmenter", "--out", str(run2), "--resume", "--iters", "3", *common)
    summary = json.loads((run2 / "train_summary.json").read_text())
    assert summary["start_iteration"] == 2 and summary["last"]["iteration"] == 3
    assert json.loads((run2 / "checkpoints/last_checkpoint.json").read_text())["iteration"] == 3

    # 7. the feature bank on the COCO ZSP training view
    bank = tmp_path / "bank.safetensors"
    _zsp("train", "bank", "--segmenter", str(run2), "--coco", str(root), "--protocol", "zsp",
         "--out", str(bank), "--batch-size", "2", "--quiet")
    tensors, meta = _read(bank)
    bank_cats = json.loads(meta["categories"])
    assert [c["id"] for c in bank_cats] == [c["id"] for c in split["categories"]]
    assert tensors["embeds"].shape[1] == TINY_MODEL["decoder"]["hidden_dim"]
    assert set(np.unique(tensors["category_ids"])) - {0} <= set(split["seen_ids"])

    # 8. PADing stages 2-3 for a few steps (offline MiniLM text encoder)
    pading = tmp_path / "pading"
    _zsp("train", "pading", "--bank", str(bank), "--segmenter", str(run2), "--config", str(pad_cfg),
         "--out", str(pading), "--quiet", "--no-tensorboard")
    pad_summary = json.loads((pading / "config.json").read_text())
    assert pad_summary["metrics"]["steps"] == 3 and len(pad_summary["categories"]) == 133
    # ... and the same stage under torchrun (2 CPU processes; the released code runs it on one GPU)
    pading2 = tmp_path / "pading_ddp"
    _zsp("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "zsp_ros.training.train_pading",
         "--bank", str(bank), "--segmenter", str(run2), "--config", str(pad_cfg), "--out", str(pading2),
         "--quiet", "--no-tensorboard", timeout=240)
    ddp_summary = json.loads((pading2 / "config.json").read_text())
    assert ddp_summary["world_size"] == 2 and ddp_summary["metrics"]["steps"] == 3
    assert (pading2 / "generator.safetensors").is_file() and (pading2 / "head.safetensors").is_file()

    # 9. import a checkpoint written with the released key names (segmenter + PADing generator)
    released = tmp_path / "pading_final.pth"
    _released_checkpoint(run2, released, yaml.safe_load(pad_cfg.read_text()))
    imported = tmp_path / "imported"
    out = _zsp("train", "import", "--checkpoint", str(released), "--config", str(seg_cfg),
               "--categories", "zsp", "--pading-config", str(pad_cfg), "--out", str(imported)).stdout
    assert "not mapped (ignored): new_fc.weight" in out and "PADing generator" in out
    report = json.loads((imported / "import_report.json").read_text())
    assert report["missing"] == [] and report["num_classes"] == 119
    assert sorted(report["unmapped"]) == ["criterion.empty_weight", "new_fc.bias", "new_fc.weight"]
    assert (imported / "generator.safetensors").is_file()
    assert json.loads((imported / "categories.json").read_text()) == categories

    # 10. the model kit, and 11. zsp run over a bag written here
    kit = tmp_path / "kit"
    _zsp("train", "kit", "--segmenter", str(run2), "--pading", str(pading), "--bank", str(bank),
         "--out", str(kit), "--short-side", "64", "--max-long-side", "96", "--rows-per-category", "10")
    manifest = json.loads((kit / "manifest.json").read_text())
    assert [c["id"] for c in manifest["categories"]] == split["seen_ids"]
    bag = tmp_path / "in_bag"
    _write_bag(bag)
    result = tmp_path / "replay"
    _zsp("run", "--kit", str(kit), "--input", str(bag), "--out", str(result), "--write-bag")
    pred = json.loads((result / "panoptic.json").read_text())
    assert [im["stamp_ns"] for im in pred["images"]] == [10**9, 10**9 + 10**8, 10**9 + 2 * 10**8]
    assert all((result / "panoptic" / a["file_name"]).is_file() for a in pred["annotations"])
    assert (result / "bag").is_dir()


def test_missing_coco_files_name_the_path_and_the_check_command(tmp_path):
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    seg_cfg, _ = _configs(tmp_path)
    args = ["train", "segmenter", "--config", str(seg_cfg), "--coco",
            str(tmp_path / "coco"), "--protocol", "zss", "--out", str(tmp_path / "run"), "--device", "cpu"]
    with pytest.raises(SystemExit, match=r"train2017.*coco_stuff/annotations_detectron2/train2017.*"
                                         r"zsp data check --coco"):
        zsp_main(args)
    with pytest.raises(SystemExit, match="--crop-size only apply with --coco"):
        zsp_main(["train", "segmenter", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--crop-size", "64"])
    assert not (tmp_path / "run").exists()
