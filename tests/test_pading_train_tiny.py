"""End to end: `zsp train pading` on a tiny synthetic feature bank raises unseen accuracy above chance.

The tiny world: 4 colours x 4 shapes = 16 categories, the 4 "diagonal" compositions unseen.
A query embedding of "colour shape" is LayerNorm(colour vector + shape vector + noise) in
32-d; no-object queries come from a separate cluster. The bank holds seen objects and
no-object queries only; the text embeddings are the attribute vectors. A head trained on
the bank alone can never predict an unseen category; the retrained head must.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers_training import recorded_pading_steps
from safetensors.torch import load_file
from torch.nn import functional as F

from zsp_ros.pading.artifacts import load_generator
from zsp_ros.training import train_pading
from zsp_ros.training.feature_bank import FeatureBank, load_feature_bank, save_feature_bank, sha256_file
from zsp_ros.training.pading_config import load_config, validate_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "star", "triangle")
E = 32


class TinyWorld:
    def __init__(self, seed: int = 0) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.colour = torch.randn(len(COLOURS), E, generator=self.g)
        self.shape = torch.randn(len(SHAPES), E, generator=self.g)
        self.no_object = torch.randn(E, generator=self.g)
        self.categories = [{"id": 1 + 4 * i + j, "name": f"{c} {s}", "isthing": True, "seen": i != j}
                           for i, c in enumerate(COLOURS) for j, s in enumerate(SHAPES)]

    def objects(self, index: int, n: int) -> torch.Tensor:
        i, j = divmod(index, len(SHAPES))
        return F.layer_norm(self.colour[i] + self.shape[j] + 0.5 * torch.randn(n, E, generator=self.g), (E,))

    def bank(self, *, images: int, objects: int = 3, queries: int = 10, segmenter_hash: str) -> FeatureBank:
        seen = [k for k, c in enumerate(self.categories) if c["seen"]]
        rows, cats, image_ids = [], [], []
        for image in range(images):
            for k in torch.randint(len(seen), (objects,), generator=self.g).tolist():
                rows.append(self.objects(seen[k], 1))
                cats.append(self.categories[seen[k]]["id"])
            rest = queries - objects
            rows.append(F.layer_norm(self.no_object + torch.randn(rest, E, generator=self.g), (E,)))
            cats += [0] * rest
            image_ids += [image] * queries
        return FeatureBank(embeds=torch.cat(rows).half(), category_ids=torch.tensor(cats),
                           image_ids=torch.tensor(image_ids), query_index=torch.arange(len(cats)) % queries,
                           categories=self.categories, segmenter_hash=segmenter_hash)


def _tiny_config(path, *, steps: int) -> None:
    cfg = load_config(CONFIG_DIR / "pading_synth.yaml")
    cfg["generator"].update(num_primitives=32, num_layers=2, num_heads=4, ffn_dim=64)
    cfg["gmmn_generator"].update(noise_dim=16, hidden_dim=64)
    cfg["optim"].update(steps=steps, generator_lr_steps=[10 * steps])
    cfg["logging"].update(log_every=10, checkpoint_every=50)
    path.write_text(yaml.safe_dump(cfg))


def _accuracy(head: dict, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(((x @ head["weight"].T + head["bias"]).argmax(1) == y).float().mean())


def test_pading_training_retrains_a_head_that_recognises_unseen_categories(tmp_path, capsys):
    torch.set_num_threads(1)   # tiny matrices: one thread is fastest on the shared 2-core machine
    world = TinyWorld(seed=0)
    segmenter = tmp_path / "seg_run"
    segmenter.mkdir()
    weights = segmenter / "segmenter.safetensors"
    weights.write_bytes(b"frozen segmenter weights")
    bank_path = tmp_path / "bank.safetensors"
    save_feature_bank(bank_path, world.bank(images=200, segmenter_hash=sha256_file(weights)))
    config = tmp_path / "tiny.yaml"
    _tiny_config(config, steps=120)
    out = tmp_path / "run"
    parser = argparse.ArgumentParser()
    train_pading.add_arguments(parser)
    argv = ["--bank", str(bank_path), "--segmenter", str(segmenter), "--config", str(config),
            "--out", str(out), "--variant", "pading", "--seed", "0", "--text-encoder", "attributes",
            "--quiet"]
    assert train_pading.run(parser.parse_args(argv + ["--steps", "60"])) == 0
    assert train_pading.run(parser.parse_args(argv)) == 0            # resumes at step 60 -> 120
    assert "resuming" in capsys.readouterr().out

    summary = json.loads((out / "config.json").read_text())
    assert summary["metrics"]["steps"] == 120 and summary["variant"] == "pading"
    assert summary["text_encoder"]["id"].startswith("attributes:") and summary["text_encoder"]["dim"] == 8
    assert summary["head_rows"] == [c["id"] for c in world.categories] + [0]
    assert (out / "tb").is_dir() and (out / "checkpoint.pt").is_file()
    assert "machine" in summary["provenance"] and summary["segmenter_hash"] == sha256_file(weights)

    unseen = [k for k, c in enumerate(world.categories) if not c["seen"]]
    seen = [k for k, c in enumerate(world.categories) if c["seen"]]
    x_unseen = torch.cat([world.objects(k, 40) for k in unseen])
    y_unseen = torch.tensor(unseen).repeat_interleave(40)
    x_seen = torch.cat([world.objects(k, 10) for k in seen])
    y_seen = torch.tensor(seen).repeat_interleave(10)
    head = load_file(str(out / "head.safetensors"))
    assert head["weight"].shape == (17, E) and head["bias"].shape == (17,)
    chance = 1 / 17
    unseen_acc = _accuracy(head, x_unseen, y_unseen)
    assert unseen_acc > 0.5 > 5 * chance, unseen_acc
    assert _accuracy(head, x_seen, y_seen) > 0.9

    # the baseline PADing improves on: a head fitted on the real bank alone never says "unseen"
    from zsp_ros.pading.head_fit import fit_head
    bank = load_feature_bank(bank_path)
    lookup = {c["id"]: i for i, c in enumerate(world.categories)} | {0: 16}
    seen_only = fit_head(bank.embeds.float(), torch.tensor([lookup[int(c)] for c in bank.category_ids]),
                         torch.ones(17), num_threads=1)
    assert _accuracy({"weight": seen_only.weight, "bias": seen_only.bias}, x_unseen, y_unseen) < chance

    generator, meta = load_generator(out / "generator.safetensors")
    assert meta["kind"] == "primitive" and meta["config"]["embed_dim"] == E
    text = load_file(str(out / "text_embeddings.safetensors"))["embeddings"]
    assert generator(text[:3]).shape == (3, E)


@pytest.mark.parametrize("variant", ["gmmn", "primitives_alignment"])
def test_other_variants_run(tmp_path, variant):
    torch.set_num_threads(1)
    world = TinyWorld(seed=1)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"w")
    bank_path = tmp_path / "bank.safetensors"
    save_feature_bank(bank_path, world.bank(images=40, segmenter_hash=sha256_file(weights)))
    config = tmp_path / "tiny.yaml"
    _tiny_config(config, steps=5)
    summary = train_pading.train_pading(bank_path=bank_path, segmenter=weights,
                                        config=load_config(config), out_dir=tmp_path / "run",
                                        variant=variant, text_encoder="attributes", progress=False,
                                        tensorboard=False)
    assert summary["metrics"]["steps"] == 5 and (tmp_path / "run" / "head.safetensors").is_file()
    _, meta = load_generator(tmp_path / "run" / "generator.safetensors")
    assert meta["kind"] == ("gmmn" if variant == "gmmn" else "primitive")
    if variant == "primitives_alignment":
        assert "loss/alignment" in summary["metrics"] and "loss/relation" not in summary["metrics"]


def test_resumed_training_equals_uninterrupted_training(tmp_path, capsys):
    torch.set_num_threads(1)
    world = TinyWorld(seed=2)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"w")
    bank_path = tmp_path / "bank.safetensors"
    save_feature_bank(bank_path, world.bank(images=40, segmenter_hash=sha256_file(weights)))
    config = tmp_path / "tiny.yaml"
    _tiny_config(config, steps=8)
    cfg = load_config(config)
    cfg["logging"]["checkpoint_every"] = 2
    kw = dict(bank_path=bank_path, segmenter=weights, text_encoder="attributes", progress=False,
              tensorboard=False, seed=3)
    train_pading.train_pading(config=cfg, out_dir=tmp_path / "a", steps=3, **kw)
    with recorded_pading_steps() as resumed:
        summary = train_pading.train_pading(config=cfg, out_dir=tmp_path / "a", **kw)
    # a seeded rerun from step 0 would match run b bitwise too: check that this call resumed
    # from checkpoint.pt (step 3) and ran steps 3..7 only
    assert f"resuming {tmp_path / 'a'} at step 3\n" in capsys.readouterr().out
    assert resumed == [3, 4, 5, 6, 7] and summary["metrics"]["steps"] == 8, resumed
    train_pading.train_pading(config=cfg, out_dir=tmp_path / "b", **kw)
    a, b = (load_file(str(tmp_path / r / "head_online.safetensors")) for r in ("a", "b"))
    assert torch.equal(a["weight"], b["weight"]) and torch.equal(a["bias"], b["bias"])
    cfg["losses"]["structure_weight"] = 1.0
    with pytest.raises(ValueError, match="another config"):
        train_pading.train_pading(config=cfg, out_dir=tmp_path / "a", **kw)


def test_config_errors_are_named(tmp_path):
    cfg = load_config(CONFIG_DIR / "pading_coco.yaml")
    del cfg["losses"]["temperature"]
    cfg["optim"]["lr"] = 1
    with pytest.raises(ValueError, match=r"missing losses.temperature; unknown optim.lr"):
        validate_config(cfg)
