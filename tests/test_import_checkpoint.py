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


# ---------------------------------------------------------------- the unpickler's byte budget
# bytearray(1_500_000_000): PROTO 2, GLOBAL builtins.bytearray, BININT 1.5e9, TUPLE1, REDUCE, STOP (30 bytes)
BOMB = b"\x80\x02cbuiltins\nbytearray\nJ\x00\x2f\x68\x59\x85R."


def _peak_mb(fn):
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return peak


def test_bytearray_bomb_is_refused_before_allocating(tmp_path):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(BOMB)
    assert len(BOMB) <= 36

    def load():
        with pytest.raises(pickle.UnpicklingError, match=r"refusing bytearray\(1500000000\): 1500000000 bytes .* "
                                                         r"over its budget of 67108984"):
            read_checkpoint(path)
    assert _peak_mb(load) < 5                                      # nothing near 1.5 GB was allocated


@pytest.mark.parametrize("payload, message", [
    # numpy's _reconstruct(ndarray, (10**10,), dtype('f4')): 40 GB declared
    (b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x05\x00\xe4\x0bT\x02\x85"
     b"cnumpy\ndtype\nX\x02\x00\x00\x00f4\x89\x88\x87R\x87R.", r"an array of shape \[10000000000\]"),
    # numpy.ndarray((10**10,)) called directly
    (b"\x80\x02cnumpy\nndarray\n\x8a\x05\x00\xe4\x0bT\x02\x85\x85R.", r"numpy.ndarray\(\.\.\.\) called directly"),
    # an object dtype (with a short list as raw data, numpy 2.4's __setstate__ crashes the process)
    (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.", r"refusing dtype dtype\('O'\)"),
    # list(bytearray(10**6)): 64 MB of list from 1 MB of bytes, over a 16 MB budget
    (b"\x80\x02cbuiltins\nlist\ncbuiltins\nbytearray\nJ\x40\x42\x0f\x00\x85R\x85R.", r"list\(\) of 1000000 elements"),
], ids=["reconstruct-40GB", "ndarray-direct", "object-dtype", "list-of-bytearray"])
def test_declared_sizes_and_unsafe_numpy_objects_are_refused(payload, message):
    import io
    with pytest.raises(pickle.UnpicklingError, match=message):
        RestrictedUnpickler(io.BytesIO(payload), max_bytes=16 << 20).load()


def test_object_array_state_is_refused_not_crashed():
    import io
    arr = np.zeros(3, dtype=np.float32)
    data = pickle.dumps(arr, protocol=2)
    # the same pickle, its state rewritten to shape 10**9 with a 2-element list as raw data
    bad = pickle.dumps(arr, protocol=2).replace(b"K\x03\x85", b"J\x00\xca\x9a;\x85")
    assert bad != data
    with pytest.raises(pickle.UnpicklingError, match="raw data is not 4000000000 bytes"):
        RestrictedUnpickler(io.BytesIO(bad)).load()
    assert np.array_equal(RestrictedUnpickler(io.BytesIO(data)).load(), arr)


def test_budget_counts_across_the_file_and_legit_arrays_fit():
    import io
    arrays = {f"w{i}": np.ones((256, 256), np.float32) for i in range(8)}          # 2 MB of weights
    data = pickle.dumps({"model": arrays}, protocol=2)
    unpickler = RestrictedUnpickler(io.BytesIO(data))
    loaded = unpickler.load()["model"]
    assert all(np.array_equal(loaded[k], v) for k, v in arrays.items())
    assert 2 * 8 * 256 * 256 * 4 <= unpickler.charged <= 3 * len(data)        # encoded bytes + arrays
    assert unpickler.max_bytes == 4 * len(data) + (64 << 20)
    with pytest.raises(pickle.UnpicklingError, match="over its budget of 3000000"):
        RestrictedUnpickler(io.BytesIO(data), max_bytes=3_000_000).load()     # the total, not one array


def test_torch_checkpoint_naming_bytearray_is_refused(tmp_path):
    class Big:
        def __reduce__(self):
            return (bytearray, (1_500_000_000,))

    path = tmp_path / "bomb.pth"
    torch.save({"model": {"w": torch.ones(2)}, "x": Big()}, path)          # torch.load would allocate 1.5 GB
    with pytest.raises(pickle.UnpicklingError, match="names bytearray"):
        read_checkpoint(path)


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
