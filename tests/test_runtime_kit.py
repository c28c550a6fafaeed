"""Model kit: a saved kit loads; every kind of damage gives a KitError naming the file and the fault."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from runtime_fakes import SEEN, FakeTextEncoder, make_kit
from safetensors.torch import save as st_save

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


def _replace_tensors(kit_dir, name, tensors):
    """Write new tensors into ``name`` and record their sha256, so only the content check can fail."""
    import hashlib
    data = st_save(tensors)
    (kit_dir / name).write_bytes(data)
    _rewrite_manifest(kit_dir, lambda m: m["files"][name].update(sha256=hashlib.sha256(data).hexdigest()))


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
    (lambda m: m["files"].pop("bank.safetensors"), "no entry for bank.safetensors"),
    (lambda m: m.update(text_encoder="minilm"), "text_encoder must be"),
    (lambda m: m.update(input={"short_side": 0, "max_long_side": 8, "size_divisibility": 32}), "input must"),
    (lambda m: m.update(categories=[]), "lists no categories"),
    (lambda m: m["categories"].append(dict(SEEN[0])), "categories are invalid.*appears twice"),
    (lambda m: m["categories"][0].update(id=0), "categories are invalid.*>= 1"),
    (lambda m: m.update(embed_dim=32), r"head.safetensors:weight has shape \[5, 16\], expected \[5,32\]"),
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
    import hashlib
    (kit_dir / "head.safetensors").write_bytes(b"garbage")
    _rewrite_manifest(kit_dir, lambda m: m["files"]["head.safetensors"].update(
        sha256=hashlib.sha256(b"garbage").hexdigest()))
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
        with pytest.raises(KitError, match="inference thresholds must be numbers in \\[0, 1\\]"):
            load_kit(kit_dir)


def test_seen_weight_factor_restores_the_offline_seen_mass():
    from zsp_ros.training.build_kit import seen_weight_factor

    seen = [{"id": 3}, {"id": 7}]
    ids = torch.tensor([3] * 500 + [7] * 40 + [0] * 900)            # 500 and 40 real rows, no-object rows
    kept = torch.tensor([100, 40])                                   # the compact bank keeps <= 100 each
    assert seen_weight_factor(ids, seen, kept, max_rows_per_class=None) == (500 + 40) / 140
    assert seen_weight_factor(ids, seen, kept, max_rows_per_class=200) == (200 + 40) / 140
    assert seen_weight_factor(ids, seen, torch.tensor([0, 0]), max_rows_per_class=200) == 1.0
