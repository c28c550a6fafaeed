"""Mixed precision in the segmenter loop (zsp_ros/training/loop.py): config validation, the CPU
refusal, autocast around the forward only with an fp32 loss path, and GradScaler unscaling
before clipping. The CUDA path itself (bf16/fp16 kernels, the pixel decoder's fp32 island
under CUDA autocast) cannot run on this CPU-only machine; here CPU autocast stands in for it
at the `train_step` level, which does not check the device.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers_training import TinySegmenter, ToyDataset

from zsp_ros.training import distributed
from zsp_ros.training.batching import prepare_batch
from zsp_ros.training.criterion import build_criterion
from zsp_ros.training.loop import LoopSettings, resolve_amp, run_training, train_step
from zsp_ros.training.optim import build_optimizer, build_scheduler
from zsp_ros.training.point_sampling import image_generators

TRAIN_CFG = {"loss_weights": {"class": 2.0, "mask": 5.0, "dice": 5.0},
             "no_object_weight": 0.1, "num_points": 32, "oversample_ratio": 3.0,
             "importance_sample_ratio": 0.75}


@pytest.fixture(autouse=True)
def _one_thread(_few_torch_threads):
    torch.set_num_threads(1)


@pytest.mark.parametrize("value, mode", [(False, "off"), (None, "off"), ("off", "off"),
                                         (True, "fp16"), ("bf16", "bf16"), ("FP16", "fp16")])
def test_resolve_amp_values(value, mode):
    assert resolve_amp(value, "cuda:0") == mode


def test_resolve_amp_refuses_bad_values_and_cpu():
    with pytest.raises(ValueError, match=r"train.amp must be .* got 'fp8'"):
        resolve_amp("fp8", "cuda")
    with pytest.raises(ValueError, match=r"train.amp 'bf16' needs a CUDA device.* on cpu"):
        resolve_amp("bf16", "cpu")
    assert resolve_amp(False, "cpu") == "off"


def _parts():
    torch.manual_seed(0)
    model = TinySegmenter(num_classes=3, num_queries=4, dim=8)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.05, backbone_multiplier=0.1)
    scheduler = build_scheduler(optimizer, max_iters=4, power=0.9, warmup_iters=0,
                                warmup_factor=1.0)
    return model, build_criterion(TRAIN_CFG, num_classes=3, num_aux=1), optimizer, scheduler


def test_run_training_refuses_amp_on_cpu():
    model, criterion, optimizer, scheduler = _parts()
    info = distributed.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    settings = LoopSettings(max_iters=1, global_batch=2, seed=0, progress=False, amp="fp16")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        run_training(model=model, criterion=criterion, optimizer=optimizer, scheduler=scheduler,
                     dataset=ToyDataset(3), info=info, settings=settings)


class _Spy(torch.nn.Module):
    """Records the autocast state and output dtype of the wrapped forward."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, images):
        out = self.inner(images)
        self.seen.append((torch.is_autocast_enabled("cpu"), out["pred_logits"].dtype))
        return out


def _float_dtypes(obj):
    if isinstance(obj, torch.Tensor):
        return {obj.dtype} if obj.is_floating_point() else set()
    if isinstance(obj, dict):
        return set().union(*(_float_dtypes(v) for v in obj.values()))
    if isinstance(obj, (list, tuple)):
        return set().union(set(), *(_float_dtypes(v) for v in obj))
    return set()


def _step(amp: str, scaler=None):
    model, criterion, optimizer, scheduler = _parts()
    spy = _Spy(model)
    received = []
    real_forward = criterion.forward

    def checking_forward(outputs, targets, **kw):
        received.append((_float_dtypes(outputs), torch.is_autocast_enabled("cpu")))
        return real_forward(outputs, targets, **kw)

    criterion.forward = checking_forward
    items = [ToyDataset(3)[i] for i in range(2)]
    gens = image_generators([11, 12])
    images, targets = prepare_batch(items, generators=gens, size_divisibility=32)
    stats = train_step(spy, criterion, images, targets, generators=gens, optimizer=optimizer,
                       scheduler=scheduler, clip_grad_norm=0.0, amp=amp, scaler=scaler)
    return spy.seen, received, stats


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_forward_is_autocast_and_the_loss_path_gets_float32(amp, dtype):
    seen, received, stats = _step(amp)
    assert seen == [(True, dtype)]                        # the network ran in low precision
    assert received == [({torch.float32}, False)]         # matcher + criterion: fp32, no autocast
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    seen, received, _ = _step("off")
    assert seen == [(False, torch.float32)] and received == [({torch.float32}, False)]


def test_grad_scaler_unscales_before_clipping():
    scaled = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    _, _, with_scaler = _step("fp16", scaler=scaled)
    _, _, without = _step("fp16")
    # the reported (and clipped) norm is of the true gradients, not 256 times them
    assert with_scaler["grad_norm"] == pytest.approx(without["grad_norm"], rel=1e-3)
    assert with_scaler["total"] == pytest.approx(without["total"], rel=1e-6)
    assert scaled.get_scale() == 2.0 ** 8


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
def test_grad_scaler_skips_an_overflowing_step_and_backs_off():
    huge = torch.amp.GradScaler("cpu", init_scale=2.0 ** 24)
    _, _, stats = _step("fp16", scaler=huge)     # fp16 gradients overflow at this scale
    assert not math.isfinite(stats["grad_norm"]) and huge.get_scale() == 2.0 ** 23
    with pytest.raises(ValueError, match="amp must be one of"):
        _step("half")
