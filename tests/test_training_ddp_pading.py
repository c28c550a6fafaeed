"""The PADing generator stage in two CPU processes on gloo follows the same loss trajectory
as one process with the same seed and global batch (``images_per_step``): each slot's image
and generator noise depend only on (seed, step, slot), and every loss is evaluated on the
all-gathered global batch (zsp_ros/training/pading_trainer.py). The generator's dropout is drawn once per
rank, so the comparison runs with generator dropout 0 (the disentangler's dropout stays on: it is
drawn under a seed shared by the ranks). The variant is the full "pading" one (per-class MMD,
fake classification, disentangler, alignment), with the structure and classification weights
raised to 1 so that every gradient path shows in the comparison.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers_training import free_port, join_gloo_group

from zsp_ros.training import distributed
from zsp_ros.training.feature_bank import FeatureBank
from zsp_ros.training.pading_config import load_config
from zsp_ros.training.pading_trainer import PadingTrainer

CONFIG = Path(__file__).resolve().parents[1] / "config" / "pading_synth.yaml"
E, STEPS, SEED = 16, 4, 7


def tiny_bank(*, images: int = 24, seed: int = 0, segmenter_hash: str = "0" * 64) -> FeatureBank:
    """9 categories (3 unseen), 1-3 objects + 4 no-object rows per image: the ranks' slots
    hold different numbers of matched rows."""
    g = torch.Generator().manual_seed(seed)
    cats = [{"id": 1 + i, "name": f"thing {i}", "isthing": True, "seen": i % 3 != 0}
            for i in range(9)]
    seen_ids = [c["id"] for c in cats if c["seen"]]
    centres = torch.randn(10, E, generator=g)
    rows, ids, image_ids = [], [], []
    for image in range(images):
        n = int(torch.randint(1, 4, (), generator=g))
        for _ in range(n):
            cid = seen_ids[int(torch.randint(len(seen_ids), (), generator=g))]
            rows.append(centres[cid] + 0.3 * torch.randn(E, generator=g))
            ids.append(cid)
        for _ in range(4):
            rows.append(centres[0] + torch.randn(E, generator=g))
            ids.append(0)
        image_ids += [image] * (n + 4)
    return FeatureBank(embeds=torch.stack(rows).half(), category_ids=torch.tensor(ids),
                       image_ids=torch.tensor(image_ids),
                       query_index=torch.arange(len(ids)) % 7, categories=cats,
                       segmenter_hash=segmenter_hash)


def tiny_config(*, steps: int = STEPS, generator_dropout: float = 0.1) -> dict:
    cfg = load_config(CONFIG)
    cfg["generator"].update(num_primitives=12, num_layers=2, num_heads=2, ffn_dim=24, dropout=generator_dropout)
    cfg["gmmn_generator"].update(noise_dim=8, hidden_dim=16)
    cfg["losses"].update(structure_weight=1.0, classification_weight=1.0)
    cfg["optim"].update(steps=steps, images_per_step=4, generator_lr=3e-3,
                        generator_lr_steps=[2], num_choose=2)
    cfg["final_head"].update(steps=5, max_rows_per_class=50)
    cfg["logging"].update(log_every=1, checkpoint_every=2, tensorboard=False)
    return cfg


def semantic() -> torch.Tensor:
    return torch.randn(9, 6, generator=torch.Generator().manual_seed(1))


def run_trainer(rank: int, world_size: int) -> tuple[list[dict], dict[str, torch.Tensor]]:
    trainer = PadingTrainer(bank=tiny_bank(), semantic=semantic(),
                            cfg=tiny_config(generator_dropout=0.0),
                            variant="pading", seed=SEED, rank=rank,
                            world_size=world_size)
    logs = [trainer.train_step() for _ in range(STEPS)]
    state = {f"generator.{k}": v.clone() for k, v in trainer.generator.state_dict().items()}
    state.update({f"disentangler.{k}": v.clone() for k, v in trainer.disentangler.state_dict().items()})
    state.update({f"head.{k}": v.clone() for k, v in trainer.head.state_dict().items()})
    return logs, state


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    join_gloo_group(rank, world_size, port)
    try:
        logs, state = run_trainer(rank, world_size)
        Path(out_dir, f"logs_{rank}.json").write_text(json.dumps(logs))
        torch.save(state, Path(out_dir, f"state_{rank}.pt"))
        distributed.barrier()          # leave together (see test_training_ddp._worker)
    finally:
        distributed.shutdown()


@pytest.mark.timeout(120)
def test_two_gloo_processes_follow_the_one_process_trajectory(tmp_path):
    torch.set_num_threads(1)
    single_logs, single_state = run_trainer(0, 1)
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    keys = ("loss/mmd", "loss/fake_classification", "loss/structure", "loss/relation",
            "loss/alignment", "loss/classifier", "loss/generator_total", "matched_per_step",
            "lr/generator")
    for rank in range(2):
        logs = json.loads((tmp_path / f"logs_{rank}.json").read_text())
        assert len(logs) == STEPS
        for step, (a, b) in enumerate(zip(single_logs, logs)):
            for key in keys:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (step, key)
        state = torch.load(tmp_path / f"state_{rank}.pt")
        differ = [name for name, value in single_state.items()
                  if not torch.allclose(value, state[name], rtol=1e-5, atol=1e-6)]
        # The key bias of an attention has an exactly-zero gradient (adding q.b_k to every
        # logit of a query leaves the softmax unchanged); what backward returns for it is
        # rounding noise, which differs with the summation order, and Adam normalises that noise
        # into full-size steps. It changes no output, so only it may differ.
        assert all(name.endswith("cross_attn.k_proj.bias") for name in differ), differ
    # the comparison is not trivial: every part moved, and the losses changed over the steps
    init_state = PadingTrainer(
        bank=tiny_bank(), semantic=semantic(), cfg=tiny_config(generator_dropout=0.0), variant="pading",
        seed=SEED)
    for prefix, module in (("generator.", init_state.generator), ("disentangler.", init_state.disentangler),
                           ("head.", init_state.head)):
        moved = [not torch.allclose(v, single_state[prefix + k], atol=1e-5)
                 for k, v in module.state_dict().items()]
        assert any(moved), prefix
    assert single_logs[-1]["loss/generator_total"] != pytest.approx(single_logs[0]["loss/generator_total"])


def test_global_batch_must_split_over_the_processes():
    with pytest.raises(ValueError, match="images_per_step 4 must be a positive multiple of the 3"):
        PadingTrainer(bank=tiny_bank(), semantic=semantic(), cfg=tiny_config(),
                      variant="pading", seed=0, rank=0, world_size=3)


def test_average_gradients_is_a_no_op_alone_and_all_gather_rows_returns_the_tensor():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    distributed.average_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    x = torch.randn(2, 4, requires_grad=True)
    (out,) = distributed.all_gather_rows(x)
    assert torch.equal(out, x) and not out.requires_grad
