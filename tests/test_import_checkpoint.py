"""Checkpoint import: an R50 checkpoint with the official detectron2 key names/shapes (.pkl), .pth forms,
unmapped/missing key reports, shape refusals by name, and the restricted unpickler."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

from zsp_ros.cli.main import main
from zsp_ros.training.import_checkpoint import RestrictedUnpickler, import_checkpoint, read_checkpoint

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = {
    "backbone": {"depth": 18, "width": 0.5, "norm": "GN"},
    "pixel_decoder": {"conv_dim": 32, "mask_dim": 8, "norm": "GN", "transformer_in_features": ["res3", "res4", "res5"],
                      "common_stride": 4, "enc_layers": 1, "nheads": 2, "n_points": 2, "dim_feedforward": 16},
    "decoder": {"hidden_dim": 8, "num_queries": 3, "nheads": 2, "dim_feedforward": 16, "dec_layers": 2,
                "pre_norm": False, "enforce_input_project": False},
}


@pytest.fixture()
def tiny(tmp_path):
    from zsp_ros.model.build import build_mask2former
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY}))
    torch.manual_seed(0)
    return cfg, build_mask2former(TINY, num_classes=80).state_dict()


def test_official_r50_pkl_imports_with_every_key(tmp_path):
    table = json.loads((REPO / "tests/data/mask2former_r50_keys.json").read_text())
    rng = np.random.default_rng(0)
    model = {k: (rng.standard_normal(v, dtype=np.float32) * 0.01) for k, v in table["keys"].items()}
    pkl = tmp_path / "model_final.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"model": model, "__author__": "test", "matching_heuristics": True}, f)
    out = tmp_path / "run"
    report = import_checkpoint(checkpoint=pkl, config=REPO / "config/r50_coco_panoptic.yaml",
                               categories="coco_panoptic", out=out)
    assert report["num_classes"] == 133 and report["missing"] == [] and report["shape_mismatch"] == {}
    assert report["unmapped"] == sorted(table["not_in_network"])          # criterion.empty_weight
    with safe_open(str(out / "segmenter.safetensors"), "np") as f:
        for key in ("sem_seg_head.predictor.class_embed.weight", "backbone.res4.5.conv2.weight"):
            assert np.array_equal(f.get_tensor(key), model[key])
    cats = json.loads((out / "categories.json").read_text())
    assert len(cats) == 133 and cats[0] == {"index": 0, "id": 1, "name": "person", "isthing": True}
    from zsp_ros.training.segmenter_run import resolve_segmenter
    assert len(resolve_segmenter(out).categories) == 133


def test_pth_forms_module_prefix_and_reports(tiny, tmp_path, capsys):
    cfg, state = tiny
    pth = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()} | {"module.extra.generator.w": torch.ones(2)},
                "iteration": 7}, pth)
    read = read_checkpoint(pth)
    assert set(read) == set(state) | {"extra.generator.w"}
    assert main(["train", "import", "--checkpoint", str(pth), "--config", str(cfg),
                 "--categories", "coco_instances", "--out", str(tmp_path / "run")]) == 0
    assert "not mapped (ignored): extra.generator.w" in capsys.readouterr().out
    # missing weights are refused unless allowed
    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in state.items() if not k.startswith("backbone.res5")}, partial)
    with pytest.raises(ValueError, match="absent"):
        import_checkpoint(checkpoint=partial, config=cfg, categories="coco_instances", out=tmp_path / "r2")
    rep = import_checkpoint(checkpoint=partial, config=cfg, categories="coco_instances", out=tmp_path / "r2",
                            allow_missing=True)
    assert rep["missing"] and all(k.startswith("backbone.res5") for k in rep["missing"])


def test_shape_mismatch_and_class_count_are_refused_by_name(tiny, tmp_path):
    cfg, state = tiny
    bad = dict(state)
    bad["sem_seg_head.predictor.mask_embed.layers.0.weight"] = torch.zeros(3, 3)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"mask_embed\.layers\.0\.weight: checkpoint \[3, 3\]"):
        import_checkpoint(checkpoint=path, config=cfg, categories="coco_instances", out=tmp_path / "r")
    with pytest.raises(ValueError, match="80 classes .* gives 133"):
        import_checkpoint(checkpoint=path, config=cfg, categories="coco_panoptic", out=tmp_path / "r")
    assert not (tmp_path / "r" / "segmenter.safetensors").exists()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"a": _Evil()}}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        read_checkpoint(path)
    torch.save({"model": {"a": _Evil()}}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only"):
        read_checkpoint(tmp_path / "evil.pth")
    import io
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(RestrictedUnpickler(io.BytesIO(pickle.dumps({"x": arr}, protocol=2))).load()["x"], arr)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "absent.pkl")


# ---------------------------------------------------------------- PADing's generator

E, DS, P, FFN, LAYERS, HEADS = 8, 6, 5, 16, 2, 2
GEN_CFG = {"generator": {"num_primitives": P, "num_layers": LAYERS, "num_heads": HEADS, "ffn_dim": FFN,
                         "dropout": 0.1, "noise_std": 1.0}}


def _released_generator(seed: int = 0):
    """The released code's generator modules (PADing/PADing_model.py), built from torch's own DETR-style
    decoder, whose parameter names are the released ones: fc_projection, dict_feature, generator."""
    torch.manual_seed(seed)
    fc = torch.nn.Linear(DS, E)
    prims = torch.nn.Embedding(P, E)
    layer = torch.nn.TransformerDecoderLayer(E, HEADS, FFN, dropout=0.0)
    dec = torch.nn.TransformerDecoder(layer, LAYERS, norm=torch.nn.LayerNorm(E))
    for p in dec.parameters():                      # non-trivial norms and biases
        torch.nn.init.normal_(p, std=0.3)
    state = {**{f"fc_projection.{k}": v for k, v in fc.state_dict().items()},
             "dict_feature.weight": prims.weight.detach().clone(),
             **{f"generator.{k}": v for k, v in dec.state_dict().items()}}
    return (fc, prims, dec), state


def _released_extras(k: int) -> dict[str, torch.Tensor]:
    """The other PADing modules of a released checkpoint (names and shapes of PADing_model.py)."""
    return {"new_fc.weight": torch.zeros(k + 1, E), "new_fc.bias": torch.zeros(k + 1),
            "projection_related.encoder.0.weight": torch.zeros(E, E), "projection_related.encoder.0.bias": torch.zeros(E),
            "projection_related.encoder.1.weight": torch.zeros(E, E), "projection_related.encoder.1.bias": torch.zeros(E),
            "relation.fc1.weight": torch.zeros(E, 2 * E), "relation.fc1.bias": torch.zeros(E),
            "relation.fc2.weight": torch.zeros(1, E), "relation.fc2.bias": torch.zeros(1),
            "decoder.decoder.0.weight": torch.zeros(E, 2 * E), "decoder.decoder.0.bias": torch.zeros(E)}


def test_pading_generator_is_imported_and_computes_as_released(tiny, tmp_path, capsys):
    from zsp_ros.pading.artifacts import load_generator

    cfg, state = tiny
    (fc, prims, dec), gen = _released_generator()
    pading_cfg = tmp_path / "pading.yaml"
    pading_cfg.write_text(yaml.safe_dump(GEN_CFG))
    pth = tmp_path / "pading_final.pth"
    torch.save({"model": {f"module.{k}": v for k, v in {**state, **gen, **_released_extras(80)}.items()}}, pth)
    out = tmp_path / "run"
    assert main(["train", "import", "--checkpoint", str(pth), "--config", str(cfg), "--categories",
                 "coco_instances", "--pading-config", str(pading_cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PADing generator" in printed and "not mapped (ignored): new_fc.weight" in printed
    report = json.loads((out / "import_report.json").read_text())
    assert set(report["unmapped"]) == set(_released_extras(80))         # generator keys are not unmapped
    assert set(report["generator"]["used"]) == set(gen)                  # every generator tensor is read
    assert set(report["generator"]["unused"]) == {f"generator.layers.{i}.self_attn.in_proj_{t}"
                                                  for i in range(LAYERS) for t in ("weight", "bias")}
    generator, meta = load_generator(out / "generator.safetensors")
    assert meta["config"]["semantic_dim"] == DS and meta["config"]["num_primitives"] == P
    # the same computation: released decoder over (projected semantic, primitives repeated per sample)
    semantic = torch.randn(4, DS)
    with torch.no_grad():
        q = fc(semantic)[None]                                              # [1, N, E]
        memory = prims.weight[:, None].repeat(1, 4, 1)                      # [P, N, E]
        expected = dec.eval()(q, memory)[0]
        ours = generator(semantic, noise=torch.zeros(generator.noise_shape(4)))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_pading_generator_mismatch_is_refused_by_name(tiny, tmp_path):
    cfg, state = tiny
    _, gen = _released_generator()
    path = tmp_path / "pading.pth"
    torch.save({**state, **gen}, path)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"generator": {**GEN_CFG["generator"], "num_primitives": P + 1,
                                                   "num_layers": LAYERS + 1}}))
    with pytest.raises(ValueError, match=r"generator\.layers: checkpoint 2 vs generator 3; "
                                         r"dict_feature\.weight: checkpoint \[5, 8\] vs generator \[6, 8\]"):
        import_checkpoint(checkpoint=path, config=cfg, categories="coco_instances", out=tmp_path / "r",
                          pading_config=wrong)
    assert not (tmp_path / "r").exists()
    bad = {**gen, "generator.layers.0.linear1.weight": torch.zeros(FFN + 1, E)}
    torch.save({**state, **bad}, path)
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(GEN_CFG))
    with pytest.raises(ValueError, match=r"generator\.layers\.0\.linear1\.weight: checkpoint \[17, 8\]"):
        import_checkpoint(checkpoint=path, config=cfg, categories="coco_instances", out=tmp_path / "r",
                          pading_config=ok)
