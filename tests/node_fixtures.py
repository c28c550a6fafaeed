"""Helpers for the node tests (no tests here): a tiny kit whose results are known, the node as a
child process (the client is zsp_ros.node.client.ZspClient), and a tiny kit of real parts for the
demo and benchmark runs (`make_attribute_kit`).

The kit ("quadrant kit") uses tests/runtime_fakes.py: a network whose 4 queries are the 4 image
quadrants and whose query embeddings are stored in the kit, a 16-d word-hash text encoder, the
real PrimitiveGenerator and the real `fit_head`. Query embeddings are the generator's mean output
for "red circle", "purple star" and "grass" (and ~0 for the last quadrant), so the top-left quadrant
is "red circle", the bottom-left "grass", and the top-right becomes "purple star" once that name is
added at runtime (before, it is labelled with its closest seen category, "blue star").

The child node process registers the two stand-ins in the runtime's plain-dict registries
(BACKENDS["quadrant-test"], TEXT_ENCODERS["fake-words-16"]) and then runs zsp_ros.node.main.main
(the ``zsp_node`` entry point), or ``zsp node`` when ZSP_TEST_ENTRY=cli.

Poisoning (tests of the node's supervision): when the environment names a file in ZSP_TEST_POISON
and that file exists, every network forward reads it: "raise" raises RuntimeError, "die" raises a
BaseException (`PoisonPill`, which ends the inference thread), "sleep S" sleeps S seconds (a hang).
Remove the file and the network is healthy again.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

TESTS_DIR = Path(__file__).resolve().parent
KIT_BACKEND = "quadrant-test"
# Full-batch Adam for a fixed number of steps: adding a category takes about a second, long enough
# to check that frames keep flowing during it (L-BFGS would converge in a few milliseconds here).
SLOW_FIT = {"optimizer": "adam", "steps": 1000, "lr": 0.02}

NODE_PROGRAM = r'''
import os, sys, time
sys.path.insert(0, os.environ["ZSP_TEST_DIR"])
import torch
torch.set_num_threads(1)
from runtime_fakes import FakeTextEncoder, QuadrantNetwork
from zsp_ros.runtime.backends import BACKENDS
from zsp_ros.runtime.backends.torch_backend import TorchBackend
from zsp_ros.semantics.build import TEXT_ENCODERS


class PoisonPill(BaseException):
    """Not an Exception: nothing but a thread's end catches it."""


class PoisonableNetwork(QuadrantNetwork):
    def forward_network(self, images):
        poison = os.environ.get("ZSP_TEST_POISON")
        if poison and os.path.exists(poison):
            with open(poison) as f:
                kind = f.read().strip()
            if kind == "raise":
                raise RuntimeError("poisoned by the test")
            if kind == "die":
                raise PoisonPill("the test ends the inference thread")
            if kind.startswith("sleep"):
                time.sleep(float(kind.split()[1]))
        return super().forward_network(images)


def quadrant_backend(kit, device="cpu", precision="fp32"):
    network = PoisonableNetwork()
    network.load_state_dict(kit.network_state_dict())
    return TorchBackend(network=network, device=device, precision=precision)


BACKENDS["quadrant-test"] = quadrant_backend
TEXT_ENCODERS["fake-words-16"] = lambda **kw: FakeTextEncoder()
if os.environ.get("ZSP_TEST_ENTRY") == "cli":          # as `zsp node --ros-args ...`
    from zsp_ros.cli.main import main
    sys.exit(main(["node", *sys.argv[1:]]))
from zsp_ros.node.main import main                        # as the `zsp_node` console script
sys.exit(main(sys.argv[1:]))
'''


def make_quadrant_kit(root: Path, *, fit_kwargs: dict[str, Any] | None = None) -> Path:
    """Write the quadrant kit (module docstring) to ``root``/kit and return its path.

    ``fit_kwargs``: the kit's runtime refit settings. Default SLOW_FIT with whole-head refits: an add of
    about a second, so that frames flow during it (an add of new rows only takes ~0.05 s)."""
    from runtime_fakes import GENERATOR_CONFIG, SEEN, FakeTextEncoder, QuadrantNetwork, make_generator, make_kit

    from zsp_ros.kit.model_kit import MANIFEST, load_kit, save_kit

    base = load_kit(make_kit(root / "base"))
    encoder, generator = FakeTextEncoder(), make_generator(0)
    generator.load_state_dict(base.generator_state_dict())
    text = torch.from_numpy(encoder.encode(["red circle", "purple star", "grass"]))
    network = QuadrantNetwork()
    with torch.no_grad():
        for q in range(3):
            noise = generator.sample_noise(64, generator=torch.Generator().manual_seed(q))
            network.embeds[q] = generator(text[q:q + 1].expand(64, -1), noise).mean(0)
        network.embeds[3] = 0.01 * torch.randn(network.embeds.shape[1], generator=torch.Generator().manual_seed(9))
    kit = save_kit(root / "kit", model_config={"name": "quadrant-test"}, network_state=network.state_dict(),
                   head_weight=base.head_weight, head_bias=base.head_bias, generator_config=GENERATOR_CONFIG,
                   generator_state=base.generator_state_dict(), bank_embeds=base.bank_embeds,
                   bank_category_ids=base.bank_category_ids, text_embeds=base.text_embeds, categories=SEEN,
                   text_encoder_id=encoder.identifier, text_encoder_dim=encoder.dim, short_side=64,
                   max_long_side=128, runtime={"synthetic_per_category": 16,
                                               "fit_kwargs": SLOW_FIT if fit_kwargs is None else fit_kwargs,
                                               **({"refit": "full"} if fit_kwargs is None else {})})
    # the fake encoder embeds any string, and these tests add arbitrary names ("burst a", "grüner stern"):
    # the kit accepts names with no word of its three names (the refusal is tested in test_runtime_new_rows)
    manifest = json.loads((kit / MANIFEST).read_text())
    manifest["text_encoder"].setdefault("kwargs", {})["phrasing"] = {"refuse_unknown_names": False}
    (kit / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return kit


def node_args(namespace: str, **overrides: Any) -> list[str]:
    """``--ros-args`` for the node: namespace plus ``-p name:=value`` per override (YAML values)."""
    args = ["--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in overrides.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        args += ["-p", f"{name}:={text}"]
    return args


TINY_MODEL = {
    "backbone": {"depth": 18, "width": 0.5, "norm": "GN"},
    "pixel_decoder": {"conv_dim": 32, "mask_dim": 32, "norm": "GN", "transformer_in_features": ["res3", "res4", "res5"],
                      "common_stride": 4, "enc_layers": 1, "nheads": 2, "n_points": 2, "dim_feedforward": 64},
    "decoder": {"hidden_dim": 32, "num_queries": 8, "nheads": 2, "dim_feedforward": 64, "dec_layers": 1,
                "pre_norm": False, "enforce_input_project": False},
}


def make_attribute_kit(root: Path) -> Path:
    """A valid kit of real parts: a tiny random Mask2Former (TINY_MODEL), a random PrimitiveGenerator,
    the synthetic world's seen categories, and the attribute text encoder built from the manifest's
    ``text_encoder.kwargs`` (so a plain `python -m zsp_ros.node.main` child can load it)."""
    from zsp_ros.data.synth_world import DEFAULT_UNSEEN, world_categories
    from zsp_ros.kit.model_kit import MANIFEST, save_kit
    from zsp_ros.model.build import build_mask2former
    from zsp_ros.model.primitive_generator import PrimitiveGenerator
    from zsp_ros.semantics.build import build_text_encoder

    torch.manual_seed(0)
    world = world_categories()
    names = [c["name"] for c in world]
    encoder = build_text_encoder("attributes", names=names)
    seen = [c for c in world if c["name"] not in DEFAULT_UNSEEN]
    k, e = len(seen), TINY_MODEL["decoder"]["hidden_dim"]
    generator_config = {"semantic_dim": encoder.dim, "embed_dim": e, "num_primitives": 8, "num_layers": 1,
                        "num_heads": 2, "ffn_dim": 32, "dropout": 0.0, "noise_std": 0.1}
    ids = torch.tensor([c["id"] for c in seen for _ in range(4)] + [0] * 16)
    kit = save_kit(root, model_config=TINY_MODEL, network_state=build_mask2former(TINY_MODEL, k).state_dict(),
                   head_weight=0.1 * torch.randn(k + 1, e), head_bias=torch.zeros(k + 1),
                   generator_config=generator_config, generator_state=PrimitiveGenerator(**generator_config).state_dict(),
                   bank_embeds=torch.randn(len(ids), e), bank_category_ids=ids,
                   text_embeds=torch.from_numpy(encoder.encode([c["name"] for c in seen])),
                   categories=[{"id": c["id"], "name": c["name"], "isthing": c["isthing"]} for c in seen],
                   text_encoder_id=encoder.identifier, text_encoder_dim=encoder.dim, short_side=64, max_long_side=64,
                   runtime={"synthetic_per_category": 4, "fit_kwargs": {"steps": 5}})
    manifest = json.loads((kit / MANIFEST).read_text())          # save_kit has no text_encoder kwargs yet
    manifest["text_encoder"]["kwargs"] = {"names": names}
    (kit / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return kit
