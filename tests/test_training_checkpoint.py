"""Checkpoints: safetensors weights + state file, atomic pointer, pruning, exact resume."""
from __future__ import annotations

import json

import pytest
import torch
from helpers_training import TinySegmenter, ToyDataset
from safetensors.torch import load_file

from zsp_ros.training import checkpoint, distributed
from zsp_ros.training.criterion import build_criterion
from zsp_ros.training.loop import LoopSettings, run_training
from zsp_ros.training.optim import WarmupPoly, build_optimizer, build_scheduler, param_groups

TRAIN_CFG = {"loss_weights": {"class": 2.0, "mask": 5.0, "dice": 5.0},
             "no_object_weight": 0.1, "num_points": 32, "oversample_ratio": 3.0,
             "importance_sample_ratio": 0.75}
SINGLE = distributed.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


@pytest.fixture(autouse=True)
def _one_thread(_few_torch_threads):
    torch.set_num_threads(1)


def _parts(max_iters: int):
    torch.manual_seed(0)
    model = TinySegmenter(num_classes=3, num_queries=4, dim=8)
    optimizer = build_optimizer(model, lr=3e-3, weight_decay=0.05, backbone_multiplier=0.1)
    scheduler = build_scheduler(optimizer, max_iters=max_iters, power=0.9, warmup_iters=2,
                                warmup_factor=0.1)
    return model, build_criterion(TRAIN_CFG, num_classes=3, num_aux=1), optimizer, scheduler


def _settings(max_iters: int, **kw) -> LoopSettings:
    return LoopSettings(max_iters=max_iters, global_batch=2, seed=5, progress=False, **kw)


def test_resume_continues_exactly(tmp_path):
    model, crit, opt, sched = _parts(6)
    straight = run_training(model=model, criterion=crit, optimizer=opt, scheduler=sched,
                            dataset=ToyDataset(5), info=SINGLE, settings=_settings(6))
    straight_state = model.state_dict()

    run = tmp_path / "run"
    model, crit, opt, sched = _parts(6)
    first = run_training(model=model, criterion=crit, optimizer=opt, scheduler=sched,
                         dataset=ToyDataset(5), info=SINGLE,
                         settings=_settings(3, checkpoint_period=3), out_dir=run)
    torch.manual_seed(123)                           # resume must restore the RNG itself
    model, crit, opt, sched = _parts(6)
    start = checkpoint.load_checkpoint(run / "checkpoints", model=model, optimizer=opt,
                                       scheduler=sched)
    assert start == 3
    rest = run_training(model=model, criterion=crit, optimizer=opt, scheduler=sched,
                        dataset=ToyDataset(5), info=SINGLE, settings=_settings(6),
                        start_iter=start, out_dir=run)
    resumed = first + rest
    assert [h["iteration"] for h in resumed] == list(range(1, 7))
    for a, b in zip(straight, resumed):
        assert a["total"] == pytest.approx(b["total"], rel=1e-6) and a["lr"] == b["lr"]
    for k, v in straight_state.items():
        assert torch.allclose(v, model.state_dict()[k], atol=1e-7), k
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[-1])["iteration"] == 6   # log_period 20 + last
    assert any((run / "tensorboard").iterdir())


def test_files_pointer_and_pruning(tmp_path):
    model, _, opt, sched = _parts(10)
    for it in (2, 4, 6):
        checkpoint.save_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched,
                                   iteration=it, keep_last=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["last_checkpoint.json", "model_0000004.safetensors",
                     "model_0000006.safetensors", "state_0000004.pt", "state_0000006.pt"]
    assert checkpoint.latest_checkpoint(tmp_path)["iteration"] == 6
    weights = load_file(tmp_path / "model_0000006.safetensors")
    assert set(weights) == set(model.state_dict())
    state = torch.load(tmp_path / "state_0000006.pt", weights_only=True)
    assert {"iteration", "optimizer", "scheduler", "rng", "world_size"} <= set(state)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_missing_checkpoint_and_mismatched_weights_are_clear_errors(tmp_path):
    model, _, opt, sched = _parts(4)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched)
    checkpoint.save_weights(tmp_path / "w.safetensors", model)
    other = TinySegmenter(num_classes=5, num_queries=4, dim=8)
    with pytest.raises(Exception, match="class_head|size mismatch"):
        checkpoint.load_weights(tmp_path / "w.safetensors", other)
    smaller = TinySegmenter(num_classes=3, num_queries=4, dim=8, num_layers=1)
    with pytest.raises(KeyError, match="unexpected"):
        checkpoint.load_weights(tmp_path / "w.safetensors", smaller)


def test_param_groups_and_schedule():
    model = TinySegmenter(num_classes=3)
    groups = {(g["lr"], g["weight_decay"]): g["names"] for g in param_groups(
        model, lr=1e-4, weight_decay=0.05, backbone_multiplier=0.1)}
    assert all(n.startswith("backbone") for n in groups[(1e-5, 0.05)])
    assert set(groups[(1e-4, 0.0)]) == {"query.weight", "norm.weight", "norm.bias"}
    assert "class_head.weight" in groups[(1e-4, 0.05)]
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))
    poly = WarmupPoly(max_iters=100, power=0.9, warmup_iters=10, warmup_factor=0.1)
    assert poly(0) == pytest.approx(0.1)
    assert poly(5) == pytest.approx((0.1 * 0.5 + 0.5) * 0.95 ** 0.9)
    assert poly(50) == pytest.approx(0.5 ** 0.9) and poly(100) == 0.0
