"""Text encoders (zsp_ros/semantics): MiniLM, CLIP (missing weights; a small random tower),
precomputed tables, attribute vectors, and the registry."""
from __future__ import annotations

import json

import numpy as np
import pytest

from zsp_ros.semantics.attribute_encoder import AttributeEncoder
from zsp_ros.semantics.build import TEXT_ENCODERS, build_text_encoder
from zsp_ros.semantics.clip_encoder import ClipTextEncoder, default_weights_path
from zsp_ros.semantics.file_encoder import FileEncoder


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder("minilm")


def test_minilm_is_384d_normalised_and_compositional(minilm):
    vectors = minilm.encode(["red circle", "green circle", "blue star"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2])
    assert minilm.identifier == "minilm-l6-v2" and minilm.dim == 384
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(ValueError, match="non-empty string"):
        minilm.encode(["red circle", ""])
    with pytest.raises(TypeError, match="single string"):
        minilm.encode("red circle")


def test_clip_missing_weights_error_says_where_to_put_them(tmp_path, monkeypatch):
    absent = tmp_path / "nowhere" / "ViT-B-16.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        ClipTextEncoder(weights=absent)
    message = str(info.value)
    assert str(absent) in message and "ZSP_CLIP_WEIGHTS" in message and "ViT-B-16" in message
    monkeypatch.setenv("ZSP_CLIP_WEIGHTS", str(absent))
    assert default_weights_path() == absent
    with pytest.raises(FileNotFoundError, match="copy it to"):
        build_text_encoder("clip")                       # default location = the env variable
    monkeypatch.delenv("ZSP_CLIP_WEIGHTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_weights_path() == tmp_path / "cache" / "zsp_ros" / "clip" / "ViT-B-16.safetensors"


def test_clip_loads_a_local_text_tower_file(tmp_path):
    """A small open_clip architecture with random weights saved to a file stands in for the
    real ViT-B-16 checkpoint (which cannot be downloaded here)."""
    open_clip = pytest.importorskip("open_clip")
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-S-32-alt", pretrained=None)
    text_state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("visual.")}
    weights = tmp_path / "clip_text.safetensors"
    save_file(text_state, str(weights))
    encoder = ClipTextEncoder(weights=weights, model_name="ViT-S-32-alt", templates=("a photo of a {}.",))
    vectors = encoder.encode(["red circle", "wall, brick"])
    assert vectors.shape == (2, encoder.dim) and encoder.dim == 256
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.identifier == "clip-vit-s-32-alt"
    with torch.no_grad():   # the file's weights are the ones used
        expected = model.encode_text(open_clip.get_tokenizer("ViT-S-32-alt")(["a photo of a red circle."]))
    assert _cos(vectors[0], expected[0].numpy()) == pytest.approx(1.0, abs=1e-4)
    partial = tmp_path / "partial.safetensors"
    save_file({"token_embedding.weight": text_state["token_embedding.weight"]}, str(partial))
    with pytest.raises(ValueError, match="text parameters missing"):
        ClipTextEncoder(weights=partial, model_name="ViT-S-32-alt")


def test_file_encoder_reads_every_format(tmp_path):
    from safetensors.numpy import save_file

    names = ["person", "Traffic Light", "dog"]
    table = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3]], dtype=np.float32)
    paths = {"npz": tmp_path / "t.npz", "json": tmp_path / "t.json", "st": tmp_path / "t.safetensors",
             "st_keys": tmp_path / "k.safetensors", "json_keys": tmp_path / "k.json"}
    np.savez(paths["npz"], names=np.array(names), embeddings=table)
    paths["json"].write_text(json.dumps({"names": names, "embeddings": table.tolist()}))
    save_file({"embeddings": table}, str(paths["st"]), metadata={"names": json.dumps(names)})
    save_file({n: table[i] for i, n in enumerate(names)}, str(paths["st_keys"]))
    paths["json_keys"].write_text(json.dumps({n: table[i].tolist() for i, n in enumerate(names)}))
    for kind, path in paths.items():
        encoder = build_text_encoder("file", path=path)
        out = encoder.encode(["dog", "traffic  light", "person"])    # loose match: case, spaces
        assert np.allclose(out, np.eye(3)[[2, 1, 0]]), kind
        assert encoder.dim == 3 and encoder.identifier.startswith(f"file:{path.stem}:")
    with pytest.raises(KeyError, match="cat"):
        FileEncoder(path=paths["npz"]).encode(["dog", "cat"])
    with pytest.raises(ValueError, match="unsupported"):
        (tmp_path / "t.txt").write_text("x")
        FileEncoder(path=tmp_path / "t.txt")
    with pytest.raises(FileNotFoundError):
        FileEncoder(path=tmp_path / "absent.npz")


def test_attribute_encoder_is_one_hot_per_group():
    enc = AttributeEncoder(vocabularies={"colour": ["red", "green", "light blue"],
                                         "shape": ["circle", "star"]})
    assert enc.dim == 5 and enc.identifier.startswith("attributes:")
    v = enc.encode(["red circle", "red star", "light blue star", "circle green"])
    assert np.allclose(v[0], np.array([1, 0, 0, 1, 0]) / np.sqrt(2))
    assert _cos(v[0], v[1]) == pytest.approx(0.5) and _cos(v[0], v[2]) == pytest.approx(0.0)
    assert enc.parse("circle green") == ["green", "circle"]      # word order is free
    assert enc.parse("Light Blue star") == ["light blue", "star"]
    with pytest.raises(ValueError, match="'purple' is in no attribute vocabulary"):
        enc.encode(["purple circle"])
    with pytest.raises(ValueError, match="two colour attributes"):
        enc.encode(["red green circle"])
    with pytest.raises(ValueError, match="names no shape"):
        enc.encode(["red"])
    with pytest.raises(ValueError, match="appears twice"):
        AttributeEncoder(vocabularies={"a": ["red"], "b": ["red"]})


def test_attribute_encoder_from_names_and_registry():
    names = ["red circle", "green circle", "red striped square"]
    enc = build_text_encoder("attributes", names=names)
    assert enc.vocabularies == {"colour": ["red", "green"], "shape": ["circle", "striped square"]}
    assert enc.encode(["green striped square"]).shape == (1, 4)
    with pytest.raises(ValueError, match="cannot split"):
        AttributeEncoder.from_names(["red"])
    assert {"minilm", "minilm-l6-v2", "clip", "clip-vit-b-16", "file", "attributes"} <= set(TEXT_ENCODERS)
    with pytest.raises(ValueError, match="unknown text encoder 'word2vec'"):
        build_text_encoder("word2vec")
