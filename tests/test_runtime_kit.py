"""Model kit: a saved kit loads; every kind of damage gives a one-line KitError naming the file and the field."""
from __future__ import annotations

import hashlib
import inspect
import json
import shutil

import pytest
import torch
from runtime_fakes import SEEN, FakeTextEncoder, make_kit, make_real_kit
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from zsp_ros.kit.checks import FIT_KWARGS, GENERATOR_KEYS, MASK2FORMER_SECTIONS
from zsp_ros.kit.model_kit import KitError, load_kit


@pytest.fixture(scope="module")
def kit_src(tmp_path_factory):
    return make_kit(tmp_path_factory.mktemp("kit") / "kit")


@pytest.fixture
def kit_dir(kit_src, tmp_path):
    return shutil.copytree(kit_src, tmp_path / "kit")


def _rewrite_manifest(kit_dir, change):
    manifest = json.loads((kit_dir / "manifest.json").read_text())
    change(manifest)
    (kit_dir / "manifest.json").write_text(json.dumps(manifest))


def _replace_bytes(kit_dir, name, data):
    """Write ``data`` as ``name`` and record its sha256 and size, so only the content checks can fail."""
    (kit_dir / name).write_bytes(data)
    _rewrite_manifest(kit_dir, lambda m: m["files"][name].update(sha256=hashlib.sha256(data).hexdigest(),
                                                                 bytes=len(data)))


def _replace_tensors(kit_dir, name, tensors):
    _replace_bytes(kit_dir, name, st_save(tensors))


def _edit_tensors(kit_dir, name, change):
    tensors = st_load((kit_dir / name).read_bytes())
    change(tensors)
    _replace_tensors(kit_dir, name, tensors)


def test_saved_kit_loads_with_its_contents(kit_dir):
    kit = load_kit(kit_dir, text_encoder=("fake-words-16", 16))
    assert kit.categories.names == [c["name"] for c in SEEN]
    assert kit.categories.ids == [1, 2, 4, 7]
    assert [c.origin for c in kit.categories] == ["seen"] * 4
    assert kit.head_weight.shape == (5, 16) and kit.bank_embeds.dtype == torch.float16
    assert kit.text_embeds.shape == (4, 16) and kit.embed_dim == 16
    assert kit.input == {"short_side": 64, "max_long_side": 128, "size_divisibility": 32}
    assert "scale" in kit.network_state_dict() and "primitives" in kit.generator_state_dict()
    assert len(kit.sha256) == 64


def test_missing_directory_and_manifest(tmp_path, kit_dir):
    with pytest.raises(KitError, match="not a directory"):
        load_kit(tmp_path / "nope")
    (kit_dir / "manifest.json").unlink()
    with pytest.raises(KitError, match="manifest.json is missing"):
        load_kit(kit_dir)


@pytest.mark.parametrize("change, match", [
    (lambda m: m.update(format="other"), "format is 'other'"),
    (lambda m: m.update(format_version=99), "format_version is 99"),
    (lambda m: m.pop("embed_dim"), "lacks embed_dim"),
    (lambda m: m["files"].pop("bank.safetensors"), r"files lacks \['bank.safetensors'\]"),
    (lambda m: m.update(text_encoder="minilm"), "text_encoder must be a JSON object"),
    (lambda m: m.update(input={"short_side": 0, "max_long_side": 8, "size_divisibility": 32}),
     r"input.short_side must be an integer in \[32, 4096\], got 0"),
    (lambda m: m.update(categories=[]), "lists no categories"),
    (lambda m: m["categories"].append(dict(SEEN[0])), "categories are invalid.*appears twice"),
    (lambda m: m["categories"][0].update(id=0), "categories are invalid.*>= 1"),
    (lambda m: m.update(embed_dim=32), "generator_config.embed_dim 16 differs from embed_dim 32"),
])
def test_manifest_errors(kit_dir, change, match):
    _rewrite_manifest(kit_dir, change)
    with pytest.raises(KitError, match=match):
        load_kit(kit_dir)


def test_not_json(kit_dir):
    (kit_dir / "manifest.json").write_text("{not json")
    with pytest.raises(KitError, match="manifest.json is not valid JSON"):
        load_kit(kit_dir)


@pytest.mark.parametrize("name", ["network.safetensors", "head.safetensors", "generator.safetensors",
                                  "bank.safetensors"])
def test_missing_or_corrupt_file_is_named(kit_dir, name):
    data = bytearray((kit_dir / name).read_bytes())
    data[-1] ^= 0xFF
    (kit_dir / name).write_bytes(bytes(data))
    with pytest.raises(KitError, match=f"{name} is corrupt or was changed"):
        load_kit(kit_dir)
    (kit_dir / name).unlink()
    with pytest.raises(KitError, match=f"{name} is missing"):
        load_kit(kit_dir)


def test_shape_and_dtype_errors(kit_dir):
    _replace_tensors(kit_dir, "head.safetensors", {"weight": torch.zeros(4, 16), "bias": torch.zeros(5)})
    with pytest.raises(KitError, match=r"head.safetensors:weight has shape \[4, 16\], expected \[5,16\]"):
        load_kit(kit_dir)
    _replace_tensors(kit_dir, "head.safetensors", {"weight": torch.zeros(5, 16, dtype=torch.float64),
                                                   "bias": torch.zeros(5)})
    with pytest.raises(KitError, match="head.safetensors:weight has dtype torch.float64"):
        load_kit(kit_dir)
    _replace_tensors(kit_dir, "head.safetensors", {"weight": torch.zeros(5, 16)})
    with pytest.raises(KitError, match="head.safetensors has no tensor 'bias'"):
        load_kit(kit_dir)


def test_bank_errors(kit_dir):
    good = {"embeds": torch.zeros(3, 16, dtype=torch.float16), "category_ids": torch.tensor([0, 1, 2]),
            "text_embeds": torch.zeros(4, 16)}
    _replace_tensors(kit_dir, "bank.safetensors", {**good, "category_ids": torch.tensor([0, 1])})
    with pytest.raises(KitError, match=r"bank.safetensors:category_ids has shape \[2\], expected \[3\]"):
        load_kit(kit_dir)
    _replace_tensors(kit_dir, "bank.safetensors", {**good, "category_ids": torch.tensor([0, 1, 99])})
    with pytest.raises(KitError, match=r"category_ids holds ids \[99\]"):
        load_kit(kit_dir)
    _replace_tensors(kit_dir, "bank.safetensors", {**good, "text_embeds": torch.zeros(4, 8)})
    with pytest.raises(KitError, match=r"text_embeds has shape \[4, 8\], expected \[4,16\]"):
        load_kit(kit_dir)
    _replace_tensors(kit_dir, "bank.safetensors", good)
    load_kit(kit_dir)


def test_not_safetensors(kit_dir):
    _replace_bytes(kit_dir, "head.safetensors", b"garbage")
    with pytest.raises(KitError, match="head.safetensors is not a valid safetensors file"):
        load_kit(kit_dir)


def test_text_encoder_mismatch(kit_dir):
    with pytest.raises(KitError, match="text encoder is 'fake-words-16' \\(dim 16\\) but the encoder in use is "
                                       "'minilm-l6-v2' \\(dim 384\\)"):
        load_kit(kit_dir, text_encoder=("minilm-l6-v2", 384))


def test_same_identifier_other_weights_is_caught(kit_dir):
    from runtime_fakes import make_registry

    class Impostor(FakeTextEncoder):
        def encode(self, names):
            return super().encode([n[::-1] for n in names])

    with pytest.raises(KitError, match="in use embeds '.*' differently from bank.safetensors:text_embeds"):
        make_registry(kit_dir, encoder=Impostor())


def test_recorded_inference_thresholds(kit_dir):
    assert load_kit(kit_dir).inference == {"object_mask_threshold": 0.8, "overlap_threshold": 0.8}
    _rewrite_manifest(kit_dir, lambda m: m.update(inference={"object_mask_threshold": 0.3, "note": "tuned"}))
    assert load_kit(kit_dir).inference == {"object_mask_threshold": 0.3, "overlap_threshold": 0.8}
    for bad in ({"object_mask_threshold": 1.5}, {"overlap_threshold": "high"}, {"object_mask_threshold": True},
                "0.3"):
        _rewrite_manifest(kit_dir, lambda m, bad=bad: m.update(inference=bad))
        with pytest.raises(KitError, match=r"manifest.json inference(\.\w+)? must be"):
            load_kit(kit_dir)


def test_seen_weight_factor_restores_the_offline_seen_mass():
    from zsp_ros.training.build_kit import seen_weight_factor

    seen = [{"id": 3}, {"id": 7}]
    ids = torch.tensor([3] * 500 + [7] * 40 + [0] * 900)            # 500 and 40 real rows, no-object rows
    kept = torch.tensor([100, 40])                                   # the compact bank keeps <= 100 each
    assert seen_weight_factor(ids, seen, kept, max_rows_per_class=None) == (500 + 40) / 140
    assert seen_weight_factor(ids, seen, kept, max_rows_per_class=200) == (200 + 40) / 140
    assert seen_weight_factor(ids, seen, torch.tensor([0, 0]), max_rows_per_class=200) == 1.0


# ------------------------------------------------------------------ every corruption: one line, file and field
@pytest.fixture(scope="module")
def real_src(tmp_path_factory):
    return make_real_kit(tmp_path_factory.mktemp("real") / "kit")


@pytest.fixture
def real_dir(real_src, tmp_path):
    return shutil.copytree(real_src, tmp_path / "real")


def _runtime(**entries):
    return lambda m: m.setdefault("runtime", {}).update(entries)


def _nan_first(tensors):
    key = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[key] = torch.full_like(tensors[key], float("nan"))


MANIFEST_CORRUPTIONS = {    # id: (change of manifest.json, the field the message must name)
    "short_side 20000": (lambda m: m["input"].update(short_side=20000), "input.short_side"),
    "size_divisibility 7": (lambda m: m["input"].update(size_divisibility=7), "input.size_divisibility"),
    "size_divisibility 48": (lambda m: m["input"].update(size_divisibility=48), "input.size_divisibility"),
    "long side below short": (lambda m: m["input"].update(max_long_side=32), "input.max_long_side"),
    "input unknown key": (lambda m: m["input"].update(pad=1), "input has unknown keys ['pad']"),
    "fit_kwargs unknown key": (_runtime(fit_kwargs={"stpes": 5}), "runtime.fit_kwargs has unknown keys ['stpes']"),
    "fit_kwargs steps 1e9": (_runtime(fit_kwargs={"steps": 10**9}), "runtime.fit_kwargs.steps"),
    "fit_kwargs optimizer": (_runtime(fit_kwargs={"optimizer": "newton"}), "runtime.fit_kwargs.optimizer"),
    "synthetic 1e7": (_runtime(synthetic_per_category=10**7), "runtime.synthetic_per_category"),
    "class_weights key": (_runtime(class_weights={"sen": 1.0}), "runtime.class_weights has unknown keys"),
    "class_weights nan": (_runtime(class_weights={"added": float("nan")}), "runtime.class_weights.added"),
    "max_added 0": (_runtime(max_added_categories=0), "runtime.max_added_categories"),
    "runtime unknown key": (_runtime(turbo=True), "runtime has unknown keys ['turbo']"),
    "embed_dim huge": (lambda m: m.update(embed_dim=10**6), "manifest.json embed_dim"),
    "text dim string": (lambda m: m["text_encoder"].update(dim="384"), "text_encoder.dim"),
    "threshold 1.5": (lambda m: m.update(inference={"object_mask_threshold": 1.5}), "inference.object_mask_threshold"),
    "generator semantic_dim": (lambda m: m["generator_config"].update(semantic_dim=5), "generator_config.semantic_dim"),
    "generator unknown key": (lambda m: m["generator_config"].update(depth=3), "generator_config has unknown keys"),
    "generator primitives 1e9": (lambda m: m["generator_config"].update(num_primitives=10**9),
                                 "generator_config.num_primitives"),
    "hidden_dim 64": (lambda m: m["model_config"]["decoder"].update(hidden_dim=64), "model_config.decoder.hidden_dim"),
    "num_queries 1e5": (lambda m: m["model_config"]["decoder"].update(num_queries=10**5),
                        "model_config.decoder.num_queries"),
    "nheads 3": (lambda m: m["model_config"]["decoder"].update(nheads=3), "model_config.decoder.nheads"),
    "depth 101": (lambda m: m["model_config"]["backbone"].update(depth=101), "model_config.backbone.depth"),
    "conv_dim 48 (GroupNorm 32)": (lambda m: m["model_config"]["pixel_decoder"].update(conv_dim=48, nheads=2),
                                   "model_config does not build a Mask2Former"),
    "model_config section": (lambda m: m["model_config"].update(neck={}), "model_config has unknown keys ['neck']"),
    "unknown network": (lambda m: m.update(model_config={"name": "evil"}), "model_config names the network 'evil'"),
    "file size": (lambda m: m["files"]["network.safetensors"].update(bytes=10**9),
                  "network.safetensors is corrupt or was changed: it has"),
    "sha256 not hex": (lambda m: m["files"]["head.safetensors"].update(sha256="xyz"),
                       "files.head.safetensors.sha256"),
}
# num_queries 9 (the file holds 8): caught by the network's shapes, which name the file and the tensor
MANIFEST_CORRUPTIONS["num_queries 9"] = (lambda m: m["model_config"]["decoder"].update(num_queries=9),
                                         "network.safetensors:sem_seg_head.predictor.query_feat.weight has shape [8, 32] "
                                         "but manifest.json model_config builds [9, 32]")

TENSOR_CORRUPTIONS = {      # id: (file, change of its tensors, what the message must name)
    "network NaN": ("network.safetensors", _nan_first, "network.safetensors:"),
    "network wrong shape": ("network.safetensors", lambda t: t.update({
        "sem_seg_head.predictor.query_embed.weight": torch.zeros(8, 31)}),
        "network.safetensors:sem_seg_head.predictor.query_embed.weight has shape [8, 31]"),
    "network missing tensor": ("network.safetensors", lambda t: t.pop("backbone.stem.conv1.weight"),
                               "network.safetensors does not fit the network manifest.json model_config builds"),
    "network extra tensor": ("network.safetensors", lambda t: t.update(extra=torch.zeros(1)),
                             "1 unexpected ['extra']"),
    "network dtype": ("network.safetensors", lambda t: t.update({
        "backbone.stem.conv1.weight": t["backbone.stem.conv1.weight"].to(torch.int32)}),
        "network.safetensors:backbone.stem.conv1.weight has dtype torch.int32"),
    "generator NaN": ("generator.safetensors", _nan_first, "generator.safetensors:"),
    "generator inf": ("generator.safetensors", lambda t: t["primitives"].__setitem__((0, 0), float("inf")),
                      "generator.safetensors:primitives holds 1 non-finite"),
    "generator shape": ("generator.safetensors", lambda t: t.update(primitives=torch.zeros(9, 32)),
                        "generator.safetensors:primitives has shape [9, 32] but manifest.json generator_config"),
    "head all NaN": ("head.safetensors", lambda t: t["weight"].fill_(float("nan")), "head.safetensors:weight holds"),
    "head extra": ("head.safetensors", lambda t: t.update(scale=torch.ones(1)), "head.safetensors holds unexpected"),
    "bank inf": ("bank.safetensors", lambda t: t["embeds"].__setitem__((0, 0), float("inf")),
                 "bank.safetensors:embeds holds 1 non-finite"),
    "text NaN": ("bank.safetensors", lambda t: t["text_embeds"].__setitem__((1, 2), float("nan")),
                 "bank.safetensors:text_embeds"),
}


def _one_line_naming(exc: KitError, kit_dir, *parts: str) -> None:
    message = str(exc)
    assert "\n" not in message, message
    assert message.startswith(f"kit {kit_dir}: "), message
    for part in parts:
        assert part in message, (part, message)
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)   # no chained traceback


@pytest.mark.parametrize("case", sorted(MANIFEST_CORRUPTIONS))
def test_manifest_corruption_is_one_line_naming_file_and_field(real_dir, case):
    change, field = MANIFEST_CORRUPTIONS[case]
    _rewrite_manifest(real_dir, change)
    with pytest.raises(KitError) as info:
        load_kit(real_dir)
    _one_line_naming(info.value, real_dir, field)
    if "safetensors" not in field:
        assert "manifest.json" in str(info.value)


@pytest.mark.parametrize("case", sorted(TENSOR_CORRUPTIONS))
def test_tensor_corruption_is_one_line_naming_file_and_tensor(real_dir, case):
    name, change, expected = TENSOR_CORRUPTIONS[case]
    _edit_tensors(real_dir, name, change)
    with pytest.raises(KitError) as info:
        load_kit(real_dir)
    _one_line_naming(info.value, real_dir, name, expected)


def test_real_kit_loads_and_kit_error_is_always_one_line(real_dir):
    kit = load_kit(real_dir)
    assert kit.model_config["decoder"]["num_queries"] == 8
    assert str(KitError("a\nb\n\n  c")) == "a b c"


def test_an_oversized_file_is_refused_before_it_is_read(real_dir, monkeypatch):
    from pathlib import Path
    _rewrite_manifest(real_dir, lambda m: m["files"]["network.safetensors"].update(bytes=5))
    reads = []
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or real_read(self))
    with pytest.raises(KitError, match="network.safetensors is corrupt or was changed: it has .* bytes but "
                                       "manifest.json files.network.safetensors.bytes says 5"):
        load_kit(real_dir)
    assert reads == ["manifest.json"]


def test_validation_tables_match_the_code_they_guard():
    from zsp_ros.model.build import _SECTIONS
    from zsp_ros.model.primitive_generator import PrimitiveGenerator
    from zsp_ros.pading.head_fit import OPTIMIZERS, fit_head

    fit_params = set(inspect.signature(fit_head).parameters) - {"embeds", "labels", "class_weights", "init"}
    assert set(FIT_KWARGS) == fit_params
    assert all(FIT_KWARGS["optimizer"](o) is None for o in OPTIMIZERS) and FIT_KWARGS["optimizer"]("x")
    assert {k: set(v) for k, v in MASK2FORMER_SECTIONS.items()} == _SECTIONS
    assert set(GENERATOR_KEYS) == set(inspect.signature(PrimitiveGenerator.__init__).parameters) - {"self"}


def test_meta_layout_equals_the_built_network_and_allocates_nothing_big():
    from runtime_fakes import TINY_MASK2FORMER

    from zsp_ros.kit.meta_build import expected_state
    from zsp_ros.model.build import build_mask2former

    built = build_mask2former(TINY_MASK2FORMER, 3).state_dict()
    layout = expected_state(lambda: build_mask2former(TINY_MASK2FORMER, 3))
    assert layout == {k: (tuple(v.shape), v.dtype) for k, v in built.items()}

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    huge = {**TINY_MASK2FORMER, "backbone": {"depth": 50, "width": 4.0, "norm": "GN"},
            "decoder": {**TINY_MASK2FORMER["decoder"], "hidden_dim": 4096, "num_queries": 1000,
                        "dim_feedforward": 16384, "dec_layers": 32}}
    before = rss_mb()
    layout = expected_state(lambda: build_mask2former(huge, 3))
    params = sum(torch.Size(shape).numel() for shape, _ in layout.values())
    assert params > 5e9 and rss_mb() - before < 300              # 20+ GB of weights described, not allocated
