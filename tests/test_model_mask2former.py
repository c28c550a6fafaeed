"""Mask2Former assembly: output layout, classifier swap, masked attention, detectron2 key names."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from zsp_ros.model.backbone import FrozenBatchNorm2d, ResNet
from zsp_ros.model.build import build_mask2former, load_config
from zsp_ros.model.classifier import ClassifierHead
from zsp_ros.model.position_encoding import PositionEmbeddingSine

TINY = {
    "backbone": {"depth": 18, "width": 0.5, "norm": "GN"},
    "pixel_decoder": {"conv_dim": 32, "mask_dim": 16, "norm": "GN", "transformer_in_features": ["res3", "res4", "res5"],
                      "common_stride": 4, "enc_layers": 1, "nheads": 2, "n_points": 2, "dim_feedforward": 48},
    "decoder": {"hidden_dim": 24, "num_queries": 5, "nheads": 2, "dim_feedforward": 40, "dec_layers": 4,
                "pre_norm": False, "enforce_input_project": False},
}
K = 7
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_mask2former(TINY, num_classes=K).eval()


def images(b=2, h=64, w=96, seed=0):
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_forward_layout(tiny):
    x = images()
    with torch.no_grad():
        out = tiny(x)
    assert set(out) == {"pred_masks", "pred_embeds", "pred_logits", "aux_outputs"}
    assert out["pred_masks"].shape == (2, 5, 16, 24)
    assert out["pred_embeds"].shape == (2, 5, 24)
    assert out["pred_logits"].shape == (2, 5, K + 1)
    assert len(out["aux_outputs"]) == TINY["decoder"]["dec_layers"]          # L + 1 predictions in all
    for aux in out["aux_outputs"]:
        assert set(aux) == {"pred_masks", "pred_embeds", "pred_logits"}
        assert aux["pred_masks"].shape == (2, 5, 16, 24) and aux["pred_logits"].shape == (2, 5, K + 1)
    assert torch.allclose(out["pred_logits"], tiny.class_head(out["pred_embeds"]))
    # embeddings are LayerNorm outputs
    assert torch.allclose(out["pred_embeds"].mean(-1), torch.zeros(2, 5), atol=1e-5)


def test_forward_network_is_last_prediction(tiny):
    x = images(seed=1)
    with torch.no_grad():
        out = tiny(x)
        masks, embeds = tiny.forward_network(x)
    assert torch.equal(masks, out["pred_masks"]) and torch.equal(embeds, out["pred_embeds"])


def test_batch_elements_are_independent(tiny):
    x = images(b=3, seed=2)
    with torch.no_grad():
        masks, embeds = tiny.forward_network(x)
        masks_1, embeds_1 = tiny.forward_network(x[1:2])
    assert torch.allclose(masks[1:2], masks_1, atol=1e-4) and torch.allclose(embeds[1:2], embeds_1, atol=1e-5)


def test_input_must_be_padded(tiny):
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny.forward_network(images(h=64, w=80))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny.forward_network(torch.zeros(1, 1, 64, 64))


def test_set_class_head(tiny):
    model = copy.deepcopy(tiny)
    head = ClassifierHead(embed_dim=24, num_classes=3)
    model.set_class_head(head)
    assert model.class_head is head
    assert "sem_seg_head.predictor.class_embed.weight" in model.state_dict()
    with torch.no_grad():
        assert model(images(b=1))["pred_logits"].shape == (1, 5, 4)
    with pytest.raises(ValueError, match="24-d"):
        model.set_class_head(ClassifierHead(embed_dim=16, num_classes=3))
    with pytest.raises(TypeError):
        model.set_class_head(torch.nn.Linear(24, 4))


def test_attention_mask_is_boolean_and_never_blocks_everything(tiny):
    predictor = tiny.sem_seg_head.predictor
    logits = torch.full((2, 5, 8, 8), -3.0)
    logits[0, 1, :2, :2] = 3.0                                  # query 1 of image 0 sees a corner only
    mask = predictor.attention_mask(logits, (4, 4))
    assert mask.dtype == torch.bool and mask.shape == (2 * predictor.num_heads, 5, 16)
    per_image = mask.view(2, predictor.num_heads, 5, 16)
    assert not per_image.all(-1).any()                          # all-blocked rows were cleared
    assert per_image[0, :, 1, 0].all() == False                 # noqa: E712  corner visible
    assert per_image[0, :, 1, 15].all()                         # far side blocked
    assert not per_image[0, :, 0].any()                         # empty mask -> attends everywhere


def test_training_step_reaches_every_parameter():
    torch.manual_seed(1)
    model = build_mask2former(TINY, num_classes=K).train()
    out = model(images(b=2, h=64, w=64))
    loss = sum(o["pred_masks"].sigmoid().mean() + o["pred_logits"].logsumexp(-1).mean()
               for o in [out] + out["aux_outputs"])
    loss.backward()
    # Zero gradient by construction in this tiny configuration at init (not a broken graph):
    zero_by_construction = {
        # input_proj.i = Conv1x1 + GroupNorm(32, conv_dim) with conv_dim 32: one channel per
        # group, so the norm subtracts each channel's mean and removes the conv bias exactly
        # (with R50's conv_dim 256 a group has 8 channels and the bias does matter)
        *(f"sem_seg_head.pixel_decoder.input_proj.{i}.0.bias" for i in range(3)),
        # the encoder's level embedding only enters MSDeformAttn's queries, which feed
        # sampling_offsets and attention_weights - both with zero weights at init (Deformable
        # DETR), so the queries do not reach the output until the first step moves them
        "sem_seg_head.pixel_decoder.transformer.level_embed",
    }
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert zero_by_construction <= set(trainable)
    missing = [n for n, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    # rounding noise is ~1e-8 here; every real gradient's largest entry is > 1e-3
    zero = [n for n, p in trainable.items()
            if n not in zero_by_construction and p.grad.abs().max() <= 1e-5]
    assert zero == []
    # if one of these starts receiving gradient, the reason above no longer holds: update the list
    assert all(trainable[n].grad.abs().max() < 1e-6 for n in zero_by_construction)


def test_r50_names_and_shapes_match_detectron2():
    table = json.loads((REPO_ROOT / "tests/data/mask2former_r50_keys.json").read_text())
    cfg = load_config(REPO_ROOT / "config/r50_coco_panoptic.yaml")
    model = build_mask2former(cfg["model"], num_classes=table["num_classes"])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    expected = {k: v for k, v in table["keys"].items() if k not in table["not_in_network"]}
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    wrong = {k: (ours[k], v) for k, v in expected.items() if ours[k] != v}
    assert wrong == {}
    assert ours["sem_seg_head.predictor.class_embed.weight"] == [134, 256]
    # FrozenBN statistics are buffers, not trainable parameters
    assert not any(".norm." in n for n, _ in model.backbone.named_parameters())


def test_configs_build_and_carry_training_numbers():
    for name in ("synth_small", "r50_coco_panoptic"):
        cfg = load_config(REPO_ROOT / f"config/{name}.yaml")
        train = cfg["train"]
        # Mask2Former's lr for R50; the synthetic model starts from random init on a short schedule
        assert train["lr"] == {"synth_small": 3e-4, "r50_coco_panoptic": 1e-4}[name]
        assert train["weight_decay"] == 0.05
        assert train["loss_weights"] == {"class": 2.0, "mask": 5.0, "dice": 5.0}
        assert train["no_object_weight"] == 0.1
        for key in ("batch_size", "iterations", "num_points", "clip_grad_norm", "backbone_multiplier"):
            assert key in train, (name, key)
    small = build_mask2former(load_config(REPO_ROOT / "config/synth_small.yaml")["model"], num_classes=K)
    assert small.embed_dim == 128 and small.class_head.num_classes == K


def test_builder_rejects_unknown_and_missing_keys():
    bad = copy.deepcopy(TINY)
    bad["decoder"]["num_querys"] = 5
    with pytest.raises(ValueError, match="num_querys"):
        build_mask2former(bad, num_classes=K)
    bad = copy.deepcopy(TINY)
    del bad["pixel_decoder"]["n_points"]
    with pytest.raises(ValueError, match="n_points"):
        build_mask2former(bad, num_classes=K)


def test_backbone_strides_channels_and_frozen_bn():
    r18 = ResNet(depth=18, width=0.5, norm="FrozenBN")
    feats = r18(torch.zeros(1, 3, 64, 64))
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == {
        "res2": (32, 16, 16), "res3": (64, 8, 8), "res4": (128, 4, 4), "res5": (256, 2, 2)}
    assert r18.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    bn = FrozenBatchNorm2d(3)
    x = torch.randn(2, 3, 4, 4)
    assert torch.allclose(bn(x), x, atol=1e-6)                   # identity at init
    state = {"weight": torch.tensor([2.0, 1.0, 1.0]), "bias": torch.zeros(3), "running_mean": torch.ones(3),
             "running_var": torch.ones(3), "num_batches_tracked": torch.tensor(5)}
    bn.load_state_dict(state)                                    # torchvision-style keys load
    expected = (x[:, 0] - 1) / math.sqrt(1 + 1e-5) * 2
    assert torch.allclose(bn(x)[:, 0], expected, atol=1e-5)


def test_position_encoding_matches_cumsum_definition():
    pe = PositionEmbeddingSine(num_pos_feats=8)
    x = torch.zeros(2, 5, 3, 4)
    got = pe(x)
    # Mask2Former's definition: cumulative sums of a not-mask, normalised by the last value
    ones = torch.ones(2, 3, 4)
    y_embed = ones.cumsum(1) / (ones.cumsum(1)[:, -1:, :] + 1e-6) * 2 * math.pi
    x_embed = ones.cumsum(2) / (ones.cumsum(2)[:, :, -1:] + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(8) // 2) / 8)
    px, py = x_embed[..., None] / dim_t, y_embed[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), 4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), 4).flatten(3)
    expected = torch.cat((py, px), 3).permute(0, 3, 1, 2)
    assert got.shape == (2, 16, 3, 4) and torch.allclose(got, expected, atol=1e-6)


@pytest.mark.filterwarnings("ignore")          # tracer/exporter chatter from torch internals
def test_forward_network_exports_to_onnx_with_grid_sample_core(tiny, tmp_path):
    """The masked attention is a boolean expression, so tracing and ONNX export work (Mask2Former#65)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from zsp_ros.model.msda import set_msda_core

    model = copy.deepcopy(tiny)
    set_msda_core(model, "grid_sample")

    class Network(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.forward_network(x)

    x = images(b=1, h=64, w=64, seed=3)
    path = tmp_path / "m2f.onnx"
    with torch.no_grad():
        expected = model.forward_network(x)
        torch.onnx.export(Network(model), (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["mask_logits", "query_embeds"])
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    masks, embeds = session.run(None, {"images": x.numpy()})
    assert abs(masks - expected[0].numpy()).max() < 1e-4
    assert abs(embeds - expected[1].numpy()).max() < 1e-4
