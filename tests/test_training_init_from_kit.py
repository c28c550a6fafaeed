"""`zsp train segmenter --init-from KIT`: a new run starts from a kit's network and seen head."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import torch

from zsp_ros.kit.checks import CLASS_HEAD_PREFIX
from zsp_ros.kit.locate import default_kit_dir
from zsp_ros.kit.model_kit import load_kit
from zsp_ros.model.build import build_mask2former
from zsp_ros.training import train_segmenter
from zsp_ros.training.init_from_kit import load_kit_weights, place_schedule
from zsp_ros.training.optim import build_optimizer, build_scheduler


@pytest.fixture(scope="module")
def kit():
    return load_kit(default_kit_dir())


def _categories(kit):
    return [{"index": i, "id": c.id, "name": c.name, "isthing": int(c.isthing)}
            for i, c in enumerate(kit.categories)]


def test_network_and_head_are_copied(kit):
    model = build_mask2former(kit.model_config, num_classes=len(kit.categories))
    info = load_kit_weights(model, kit.root, categories=_categories(kit), model_config=kit.model_config)
    state = model.state_dict()
    net = kit.network_state_dict()
    for key in list(net)[:20] + list(net)[-5:]:
        assert torch.equal(state[key], net[key].float()), key
    assert torch.equal(state[CLASS_HEAD_PREFIX + "weight"], kit.head_weight.float())
    assert torch.equal(state[CLASS_HEAD_PREFIX + "bias"], kit.head_bias.float())
    assert info["kit_sha256"] == kit.sha256 and info["tensors"] == len(state)


def test_other_categories_or_model_are_refused(kit):
    cats = _categories(kit)
    model = build_mask2former(kit.model_config, num_classes=len(cats))
    swapped = [cats[1], cats[0], *cats[2:]]
    with pytest.raises(SystemExit, match="not the run's training categories"):
        load_kit_weights(model, kit.root, categories=swapped, model_config=kit.model_config)
    other = {**kit.model_config, "decoder": {**kit.model_config["decoder"], "num_queries": 7}}
    with pytest.raises(SystemExit, match="model_config differs"):
        load_kit_weights(model, kit.root, categories=cats, model_config=other)


def test_a_missing_or_damaged_kit_is_a_one_line_error(kit, tmp_path):
    model = build_mask2former(kit.model_config, num_classes=len(kit.categories))
    with pytest.raises(SystemExit, match=r"^--init-from: "):
        load_kit_weights(model, tmp_path / "no_kit", categories=_categories(kit), model_config=kit.model_config)
    broken = tmp_path / "broken"
    shutil.copytree(kit.root, broken)
    with open(broken / "head.safetensors", "r+b") as f:                 # flip one byte: sha256 mismatch
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(SystemExit, match=r"^--init-from: .*head.safetensors"):
        load_kit_weights(model, broken, categories=_categories(kit), model_config=kit.model_config)


def test_schedule_is_placed_as_a_resume_would_place_it():
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(model, lr=3e-4, weight_decay=0.05, backbone_multiplier=1.0,
                          weight_decay_norm=0.0, weight_decay_embed=0.0)
    sched = build_scheduler(opt, max_iters=29500, power=0.9, warmup_iters=10, warmup_factor=1.0)
    place_schedule(sched, 20500)
    expected = 3e-4 * (1 - 20500 / 29500) ** 0.9                     # ~1.03e-4
    assert opt.param_groups[0]["lr"] == pytest.approx(expected)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-4 * (1 - 20501 / 29500) ** 0.9)


def _args(tmp_path: Path, **over) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_segmenter.add_arguments(parser)
    argv = ["--config", "config/synth_small_jitter.yaml", "--data", str(tmp_path), "--out",
            str(tmp_path / "run")]
    for key, value in over.items():
        argv += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return parser.parse_args(argv)


@pytest.mark.parametrize("over, message", [
    ({"start_iteration": 100}, "only applies with --init-from"),
    ({"init_from": "KIT", "resume": True}, "cannot be combined with --resume"),
    ({"init_from": "KIT", "start_iteration": 20500}, r"must be in \[0, train.iterations = 20500\)"),
])
def test_command_line_mistakes_are_clear(tmp_path, over, message):
    with pytest.raises(SystemExit, match=message):
        train_segmenter.run(_args(tmp_path, **over))
