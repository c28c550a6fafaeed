"""Two CPU processes on gloo follow the same loss trajectory as one process with the same
global batch: the data stream, flips and loss points depend only on (seed, iteration, slot),
and the loss normalisers are global (zsp_ros/training/criterion.py). The toy images hold 1-4 objects,
so the processes see different numbers of targets.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers_training import TinySegmenter, ToyDataset, free_port, join_gloo_group

from zsp_ros.training import distributed
from zsp_ros.training.criterion import build_criterion
from zsp_ros.training.loop import LoopSettings, run_training
from zsp_ros.training.optim import build_optimizer, build_scheduler

GLOBAL_BATCH, ITERS, SEED = 4, 5, 3
TRAIN_CFG = {"loss_weights": {"class": 2.0, "mask": 5.0, "dice": 5.0},
             "no_object_weight": 0.1, "num_points": 48, "oversample_ratio": 3.0,
             "importance_sample_ratio": 0.75}


def _train(info: distributed.DistInfo) -> tuple[list[dict], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = TinySegmenter(num_classes=3, num_queries=5, dim=12)
    criterion = build_criterion(TRAIN_CFG, num_classes=3, num_aux=1)
    optimizer = build_optimizer(model, lr=3e-3, weight_decay=0.05, backbone_multiplier=0.1)
    scheduler = build_scheduler(optimizer, max_iters=ITERS, power=0.9, warmup_iters=2,
                                warmup_factor=0.1)
    settings = LoopSettings(max_iters=ITERS, global_batch=GLOBAL_BATCH, seed=SEED,
                            clip_grad_norm=0.01, flip=True, progress=False)
    history = run_training(model=model, criterion=criterion, optimizer=optimizer,
                           scheduler=scheduler, dataset=ToyDataset(7, objects=None), info=info,
                           settings=settings)
    return history, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    info = join_gloo_group(rank, world_size, port)
    try:
        history, state = _train(info)
        Path(out_dir, f"history_{rank}.json").write_text(json.dumps(history))
        torch.save(state, Path(out_dir, f"state_{rank}.pt"))
        distributed.barrier()          # leave together, as train_segmenter does (a gloo peer torn down
    finally:                           # while the other still talks aborts it: SIGABRT, seen once in CI)
        distributed.shutdown()


@pytest.mark.timeout(120)
def test_two_gloo_processes_match_one_process(tmp_path):
    torch.set_num_threads(1)
    single, single_state = _train(distributed.DistInfo(rank=0, world_size=1, local_rank=0,
                                                       device=torch.device("cpu")))
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    for rank in range(2):
        multi = json.loads((tmp_path / f"history_{rank}.json").read_text())
        assert [h["iteration"] for h in multi] == list(range(1, ITERS + 1))
        for a, b in zip(single, multi):
            for key in ("total", "loss_ce", "loss_mask", "loss_dice", "lr"):
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (key, a, b)
        state = torch.load(tmp_path / f"state_{rank}.pt")
        for name, value in single_state.items():
            assert torch.allclose(value, state[name], atol=1e-5), name
    # the model really moved, so matching weights is not trivial
    torch.manual_seed(0)
    init = TinySegmenter(num_classes=3, num_queries=5, dim=12).state_dict()
    assert any(not torch.allclose(init[k], single_state[k], atol=1e-4) for k in init)
    assert single[-1]["total"] != pytest.approx(single[0]["total"], rel=1e-3)
