"""Resume restores everything a run needs to continue exactly: PADing stage (models, both
optimizers, LR schedule, per-rank RNG states) in one process and in two gloo processes, and
the segmenter checkpoint's GradScaler. K steps, then a resumed run to N, equal the
uninterrupted N steps bitwise.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from helpers_training import free_port, join_gloo_group, recorded_pading_steps
from safetensors.torch import load_file
from test_training_ddp_pading import tiny_bank, tiny_config

from zsp_ros.training import checkpoint, distributed, train_pading
from zsp_ros.training.feature_bank import save_feature_bank, sha256_file
from zsp_ros.training.pading_trainer import PadingTrainer

K, N = 2, 4


@pytest.fixture(autouse=True)
def _one_thread(_few_torch_threads):
    torch.set_num_threads(1)


def _inputs(root: Path) -> dict:
    weights = root / "segmenter.safetensors"
    weights.write_bytes(b"frozen segmenter")
    bank = root / "bank.safetensors"
    save_feature_bank(bank, tiny_bank(segmenter_hash=sha256_file(weights)))
    return dict(bank_path=bank, segmenter=weights, text_encoder="attributes", progress=False,
                tensorboard=False, seed=5, variant="pading", config=tiny_config(steps=N))


def _interrupted_and_straight(root: Path, kw: dict) -> None:
    """root/a: K steps (its checkpoint kept as root/k.pt), scrambled ambient RNGs, resumed to
    N; root/b: N steps at once.

    A seeded run that ignored checkpoint.pt and redid steps 0..N-1 would end bitwise equal to
    root/b as well, so the equality alone does not show a resume: the second call on root/a
    must run steps K..N-1 only (on every rank)."""
    train_pading.train_pading(out_dir=root / "a", steps=K, **kw)
    if distributed.rank() == 0:
        (root / "k.pt").write_bytes((root / "a" / "checkpoint.pt").read_bytes())
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    with recorded_pading_steps() as resumed:
        train_pading.train_pading(out_dir=root / "a", **kw)
    assert resumed == list(range(K, N)), f"the resumed run ran steps {resumed}"
    train_pading.train_pading(out_dir=root / "b", **kw)


def _flat(state, prefix=""):
    """Every tensor / number of a nested checkpoint, by dotted path."""
    if isinstance(state, dict):
        out = {}
        for k, v in state.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(state, (list, tuple)):
        out = {}
        for i, v in enumerate(state):
            out.update(_flat(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: state}


def _assert_runs_equal(a: Path, b: Path) -> None:
    sa = _flat(torch.load(a / "checkpoint.pt", weights_only=True))
    sb = _flat(torch.load(b / "checkpoint.pt", weights_only=True))
    assert sa.keys() == sb.keys()
    for key in sa:
        va, vb = sa[key], sb[key]
        same = torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb
        assert same, key
    for name in ("generator.safetensors", "head_online.safetensors", "head.safetensors"):
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name


def test_pading_resume_equals_uninterrupted_one_process(tmp_path, capsys):
    kw = _inputs(tmp_path)
    _interrupted_and_straight(tmp_path, kw)        # asserts the resumed call ran steps K..N-1
    assert f"resuming {tmp_path / 'a'} at step {K}\n" in capsys.readouterr().out
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert state["format"] == 2 and state["step"] == N and state["world_size"] == 1
    assert {"generator", "disentangler", "head", "opt_generator", "opt_head", "scheduler",
            "rng"} <= set(state)
    assert state["scheduler"]["last_epoch"] == N and state["opt_generator"]["state"]
    _assert_runs_equal(tmp_path / "a", tmp_path / "b")


def test_pading_load_restores_the_rng_states_and_refuses_other_runs(tmp_path):
    kw = _inputs(tmp_path)
    train_pading.train_pading(out_dir=tmp_path / "a", steps=K, **kw)
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    text = load_file(str(tmp_path / "a" / "text_embeddings.safetensors"))["embeddings"]
    trainer = PadingTrainer(bank=tiny_bank(), semantic=text,
                            cfg=kw["config"], variant="pading", seed=5)
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    trainer.load_state_dict(state)
    assert trainer.step == K
    assert torch.equal(torch.get_rng_state(), state["rng"][0]["torch"])
    assert random.getstate()[1] == tuple(state["rng"][0]["python"][1])
    assert np.array_equal(np.random.get_state()[1], state["rng"][0]["numpy"]["keys"].numpy())
    other = PadingTrainer(bank=tiny_bank(), semantic=text,
                          cfg=kw["config"], variant="pading", seed=6)
    with pytest.raises(ValueError, match="seed 5, not 'pading' seed 6"):
        other.load_state_dict(state)


def _worker(rank: int, world_size: int, port: int, root: str) -> None:
    join_gloo_group(rank, world_size, port)
    try:
        root_path = Path(root)
        kw = dict(bank_path=root_path / "bank.safetensors",
                  segmenter=root_path / "segmenter.safetensors", text_encoder="attributes",
                  progress=False, tensorboard=False, seed=5, variant="pading",
                  config=tiny_config(steps=N, generator_dropout=0.0))
        _interrupted_and_straight(root_path / "ddp", kw)
        distributed.barrier()          # leave together (see test_training_ddp._worker)
    finally:
        distributed.shutdown()


@pytest.mark.timeout(120)
def test_pading_resume_equals_uninterrupted_two_processes(tmp_path):
    kw = _inputs(tmp_path)
    kw["config"] = tiny_config(steps=N, generator_dropout=0.0)   # as the workers: the generator's
    # dropout is drawn per rank, so only without it does one process follow two exactly
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    ddp = tmp_path / "ddp"
    state = torch.load(ddp / "a" / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["step"] == N
    _assert_runs_equal(ddp / "a", ddp / "b")
    # a two-process checkpoint resumes in one process on the same trajectory (the image stream
    # and noise do not depend on the world size; the RNG states are then left alone)
    train_pading.train_pading(out_dir=tmp_path / "one", **kw)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "checkpoint.pt").write_bytes((ddp / "k.pt").read_bytes())
    with recorded_pading_steps() as mixed_steps:
        train_pading.train_pading(out_dir=tmp_path / "mixed", **kw)
    assert mixed_steps == list(range(K, N)), mixed_steps   # it did resume from k.pt
    one = load_file(str(tmp_path / "one" / "head_online.safetensors"))
    mixed = load_file(str(tmp_path / "mixed" / "head_online.safetensors"))
    assert all(torch.allclose(one[k], mixed[k], rtol=1e-5, atol=1e-6) for k in one)


def test_segmenter_checkpoint_saves_and_restores_the_grad_scaler(tmp_path):
    from helpers_training import TinySegmenter

    from zsp_ros.training.optim import build_optimizer, build_scheduler

    def parts():
        torch.manual_seed(0)
        model = TinySegmenter(num_classes=3, num_queries=4, dim=8)
        opt = build_optimizer(model, lr=1e-3, weight_decay=0.05, backbone_multiplier=0.1)
        return model, opt, build_scheduler(opt, max_iters=10, power=0.9, warmup_iters=0,
                                           warmup_factor=1.0)

    model, opt, sched = parts()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12, growth_interval=7)
    scaler.scale(torch.tensor(1.0))                  # the scale tensor is made lazily
    scaler.update(new_scale=96.0)
    checkpoint.save_checkpoint(tmp_path / "fp16", model=model, optimizer=opt, scheduler=sched,
                               iteration=4, scaler=scaler)
    checkpoint.save_checkpoint(tmp_path / "fp32", model=model, optimizer=opt, scheduler=sched,
                               iteration=4)
    model, opt, sched = parts()
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12, growth_interval=7)
    assert checkpoint.load_checkpoint(tmp_path / "fp16", model=model, optimizer=opt,
                                      scheduler=sched, scaler=fresh) == 4
    assert fresh.get_scale() == 96.0 and fresh.state_dict() == scaler.state_dict()
    untouched = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    checkpoint.load_checkpoint(tmp_path / "fp32", model=model, optimizer=opt, scheduler=sched,
                               scaler=untouched)
    assert untouched.get_scale() == 2.0 ** 12
