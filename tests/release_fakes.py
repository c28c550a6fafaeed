"""Stand-ins for the released files (no tests here): format-exact, downsized, random weights.

- Segmenter: a detectron2 model-zoo ``.pkl`` ({"model": {name: numpy float32}, "__author__", ...}) of a
  Mask2Former R50 whose KEY SET and ranks are those of the official R50 COCO panoptic checkpoint
  (tests/data/mask2former_r50_keys.json: 557 network keys + criterion.empty_weight), downsized widths
  (`TINY_R50`: backbone width 1/8, 32-d queries, 10 queries; same depth, 6 encoder and 9 decoder layers).
- PADing: a ``.pth`` training checkpoint ({"model": ..., "iteration"}) with PADing/PADing_model.py's module
  names: the network, ``new_fc`` [K+1, E], ``fc_projection`` [E, 512], ``dict_feature`` [400, E],
  ``generator.layers.{0,1,2}`` (torch's DETR-style decoder layer, the released parameter names),
  ``projection_related/unrelated``, ``relation``, ``decoder``, ``criterion.empty_weight``; generator sizes of
  config/pading_coco.yaml.
- CLIP: OpenAI's ``ViT-B-16.pt`` format (a TorchScript archive of the whole CLIP in fp16, whose state dict
  also holds ``input_resolution``, ``context_length``, ``vocab_size``) of a tiny open_clip architecture with
  ViT-B/16's tokenizer, context and 512-d output (`TINY_CLIP`). The processes that use it register that
  architecture under open_clip's name "ViT-B-16" (`use_tiny_clip`): the kit then records exactly what a
  real one does (``clip-vit-b-16``).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

TINY_R50 = {
    "backbone": {"depth": 50, "width": 0.125, "norm": "FrozenBN"},
    "pixel_decoder": {"conv_dim": 32, "mask_dim": 32, "norm": "GN", "transformer_in_features": ["res3", "res4", "res5"],
                      "common_stride": 4, "enc_layers": 6, "nheads": 2, "n_points": 4, "dim_feedforward": 32},
    "decoder": {"hidden_dim": 32, "num_queries": 10, "nheads": 2, "dim_feedforward": 32, "dec_layers": 9,
                "pre_norm": False, "enforce_input_project": False},
}
TINY_CLIP = {"embed_dim": 512, "quick_gelu": True,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
REPO = Path(__file__).resolve().parents[1]
PADING_CONFIG = REPO / "config" / "pading_coco.yaml"
# Prepended to a child process's program: the tiny architecture under open_clip's "ViT-B-16".
CLIP_PRELUDE = f"import open_clip.factory as _f; _f._MODEL_CONFIGS['ViT-B-16'] = {TINY_CLIP!r}\n"


def use_tiny_clip(monkeypatch: Any) -> None:
    """Register `TINY_CLIP` as open_clip's "ViT-B-16" for this test (monkeypatch undoes it)."""
    import open_clip.factory

    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "ViT-B-16", TINY_CLIP)


def _network(num_classes: int, seed: int) -> dict[str, torch.Tensor]:
    from zsp_ros.model.build import build_mask2former

    torch.manual_seed(seed)
    state = build_mask2former(TINY_R50, num_classes).state_dict()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():       # non-trivial values everywhere (FrozenBN stats positive)
        if v.is_floating_point():
            noise = 0.05 * torch.randn(v.shape, generator=gen)
            out[k] = (v.abs() + 0.5 + noise.abs()) if k.endswith("running_var") else v + noise
        else:
            out[k] = v
    return out


def _generator_modules(embed_dim: int, text_dim: int, seed: int) -> dict[str, torch.Tensor]:
    cfg = yaml.safe_load(PADING_CONFIG.read_text())["generator"]
    torch.manual_seed(seed)
    fc = torch.nn.Linear(text_dim, embed_dim)
    prims = torch.nn.Embedding(cfg["num_primitives"], embed_dim)
    layer = torch.nn.TransformerDecoderLayer(embed_dim, cfg["num_heads"], cfg["ffn_dim"], dropout=0.0)
    dec = torch.nn.TransformerDecoder(layer, cfg["num_layers"], norm=torch.nn.LayerNorm(embed_dim))
    e = embed_dim
    return {**{f"fc_projection.{k}": v for k, v in fc.state_dict().items()},
            "dict_feature.weight": prims.weight.detach().clone(),
            **{f"generator.{k}": v for k, v in dec.state_dict().items()},
            **{f"projection_{w}.encoder.{i}.{t}": torch.randn(e, e) if t == "weight" else torch.randn(e)
               for w in ("related", "unrelated") for i in (0, 1) for t in ("weight", "bias")},
            "relation.fc1.weight": torch.randn(e, 2 * e), "relation.fc1.bias": torch.randn(e),
            "relation.fc2.weight": torch.randn(1, e), "relation.fc2.bias": torch.randn(1),
            **{f"decoder.decoder.{i}.weight": torch.randn(e, 2 * e if i == 0 else e) for i in (0, 3)},
            **{f"decoder.decoder.{i}.bias": torch.randn(e) for i in (0, 3)}}


def write_tiny_clip(path: Path, monkeypatch: Any, seed: int = 0) -> Path:
    """`TINY_CLIP` with random weights saved as OpenAI's TorchScript ``ViT-B-16.pt`` (fp16)."""
    import open_clip

    use_tiny_clip(monkeypatch)
    torch.manual_seed(seed)
    model = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    for key in ("context_length", "vocab_size"):        # OpenAI's archive keeps them as tensors
        model.__dict__.pop(key, None)
    for key, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 49408)):
        model.register_buffer(key, torch.tensor(value))
    tokens = open_clip.get_tokenizer("ViT-B-16")(["a photo of a cat."])
    traced = torch.jit.trace_module(model.eval().half(), {"encode_text": tokens})
    traced.save(str(path))
    return path


def write_release_files(root: Path, monkeypatch: Any, *, num_classes: int = 133, seed: int = 0) -> dict[str, Path]:
    """The three released files + the downsized model config under ``root``: {segmenter, pading, clip, config}."""
    root.mkdir(parents=True, exist_ok=True)
    net = _network(num_classes, seed)
    e = TINY_R50["decoder"]["hidden_dim"]
    config = root / "r50_tiny.yaml"
    config.write_text(yaml.safe_dump({"model": TINY_R50}))
    seg = root / "model_final_pretrained.pkl"
    model = {k: v.numpy() for k, v in net.items()}
    model["criterion.empty_weight"] = np.ones(num_classes + 1, dtype=np.float32)
    with seg.open("wb") as f:
        pickle.dump({"model": model, "__author__": "zsp test stand-in", "matching_heuristics": True}, f)
    gen = torch.Generator().manual_seed(seed + 1)
    pading_model = {**net, **_generator_modules(e, 512, seed),
                    "new_fc.weight": torch.randn(num_classes + 1, e, generator=gen),
                    "new_fc.bias": torch.randn(num_classes + 1, generator=gen),
                    "criterion.empty_weight": torch.ones(num_classes + 1)}
    pading = root / "PADing_panoptic_final.pth"
    torch.save({"model": pading_model, "iteration": 19999}, pading)
    clip = write_tiny_clip(root / "ViT-B-16.pt", monkeypatch, seed)
    return {"segmenter": seg, "pading": pading, "clip": clip, "config": config}
