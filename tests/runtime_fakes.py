"""Small stand-ins for the runtime tests: a text encoder, a network, a head fitter, and a tiny kit.

Helpers only (no tests here). The kit uses a real, tiny PrimitiveGenerator so the registry's
generate step is the real one; the network is a stand-in with ``forward_network`` whose masks
are image quadrants and whose query embeddings are whatever the test sets.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zsp_ros.kit.checks import STAND_IN_NETWORKS
from zsp_ros.kit.model_kit import load_kit, save_kit

DIM_TEXT = 16
DIM_EMBED = 16
SEEN = [{"id": 1, "name": "red circle", "isthing": True},
        {"id": 2, "name": "green square", "isthing": True},
        {"id": 4, "name": "blue star", "isthing": True},
        {"id": 7, "name": "grass", "isthing": False}]
GENERATOR_CONFIG = {"semantic_dim": DIM_TEXT, "embed_dim": DIM_EMBED, "num_primitives": 8, "num_layers": 1,
                    "num_heads": 2, "ffn_dim": 32, "dropout": 0.0, "noise_std": 0.05}


class FakeTextEncoder:
    """Deterministic 16-d unit vectors from a hash of each word (names sharing a word are close)."""

    identifier = "fake-words-16"
    dim = DIM_TEXT

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, names):
        self.calls += 1
        out = np.zeros((len(names), self.dim), dtype=np.float32)
        for i, name in enumerate(names):
            for word in name.lower().split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                out[i] += np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class QuadrantNetwork(nn.Module):
    """forward_network: Q=4 queries, query q's mask = image quadrant q (TL, TR, BL, BR); embeds settable."""

    def __init__(self, embed_dim: int = DIM_EMBED) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(8.0))
        self.register_buffer("embeds", torch.zeros(4, embed_dim))

    def forward_network(self, images: torch.Tensor):
        b, _, h, w = images.shape
        hh, ww = h // 4, w // 4
        ys = torch.arange(hh, device=images.device)[:, None] < hh / 2
        xs = torch.arange(ww, device=images.device)[None, :] < ww / 2
        quads = torch.stack([ys & xs, ys & ~xs, ~ys & xs, ~ys & ~xs]).float()      # [4,hh,ww]
        masks = (quads * 2 - 1) * self.scale
        return masks[None].expand(b, -1, -1, -1).contiguous(), self.embeds[None].expand(b, -1, -1).contiguous()


# Kits made here name it as model_config {"name": "quadrant-test"}; load_kit checks network.safetensors
# against it (the installed package knows only Mask2Former).
STAND_IN_NETWORKS["quadrant-test"] = lambda manifest: QuadrantNetwork(int(manifest["embed_dim"]))


def prototype_fit(*, embeds, labels, class_weights, init=None, **_):
    """Instant stand-in for fit_head: cosine prototype classifier (row k = scaled mean of class k)."""
    k1 = class_weights.numel()
    weight = torch.zeros(k1, embeds.shape[1])
    for k in range(k1):
        sel = embeds[labels == k]
        if len(sel):
            m = sel.mean(0)
            weight[k] = 10 * m / m.norm().clamp(min=1e-6)
    bias = torch.zeros(k1)
    bias[-1] = -2.0
    return weight, bias


def make_generator(seed: int = 0):
    from zsp_ros.model.primitive_generator import PrimitiveGenerator

    torch.manual_seed(seed)
    return PrimitiveGenerator(**GENERATOR_CONFIG).eval()


def make_kit(root: Path, *, encoder: FakeTextEncoder | None = None, per_class: int = 24, seed: int = 0,
             categories=SEEN, runtime: dict | None = None) -> Path:
    """Write a tiny valid kit whose bank is generator output of the seen names (+ random no-object)."""
    encoder = encoder or FakeTextEncoder()
    generator = make_generator(seed)
    text = torch.from_numpy(encoder.encode([c["name"] for c in categories]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        real = [generator(text[i:i + 1].expand(per_class, -1),
                          generator.sample_noise(per_class, generator=g)) for i in range(len(categories))]
    bank = torch.cat(real + [torch.randn(per_class, DIM_EMBED, generator=g)])
    ids = torch.tensor([c["id"] for c in categories for _ in range(per_class)] + [0] * per_class)
    lut = {c["id"]: k for k, c in enumerate(categories)} | {0: len(categories)}
    weight, bias = prototype_fit(embeds=bank, labels=torch.tensor([lut[int(i)] for i in ids]),
                                 class_weights=torch.ones(len(categories) + 1))
    return save_kit(root, model_config={"name": "quadrant-test"}, network_state=QuadrantNetwork().state_dict(),
                    head_weight=weight, head_bias=bias, generator_config=GENERATOR_CONFIG,
                    generator_state=generator.state_dict(), bank_embeds=bank, bank_category_ids=ids,
                    text_embeds=text, categories=categories, text_encoder_id=encoder.identifier,
                    text_encoder_dim=encoder.dim, short_side=64, max_long_side=128,
                    runtime=runtime or {"synthetic_per_category": 16},
                    provenance={"command": ["tests/runtime_fakes.py"]})


def make_registry(kit_dir: Path, *, state_dir: Path | None = None, fit=prototype_fit, **kw):
    from zsp_ros.runtime.registry import CategoryRegistry
    from zsp_ros.runtime.state_store import StateStore

    kit = load_kit(kit_dir)
    encoder = kw.pop("encoder", None) or FakeTextEncoder()
    store = None if state_dir is None else StateStore(state_dir, kit_sha256=kit.sha256,
                                                      text_encoder=encoder.identifier)
    generator = make_generator(0)
    generator.load_state_dict(kit.generator_state_dict())
    # The fakes' fit_head is only called by full refits: tests of the new-rows fit pass refit_mode="new_rows".
    return CategoryRegistry(kit=kit, text_encoder=encoder, generator=generator, fit_head=fit, store=store,
                            synthetic_per_category=kw.pop("synthetic_per_category", 16),
                            refit_mode=kw.pop("refit_mode", "full"), **kw)


TINY_MASK2FORMER = {
    "backbone": {"depth": 18, "width": 0.5, "norm": "GN"},
    "pixel_decoder": {"conv_dim": 32, "mask_dim": 32, "norm": "GN", "transformer_in_features": ["res3", "res4", "res5"],
                      "common_stride": 4, "enc_layers": 1, "nheads": 2, "n_points": 2, "dim_feedforward": 64},
    "decoder": {"hidden_dim": 32, "num_queries": 8, "nheads": 2, "dim_feedforward": 64, "dec_layers": 2,
                "pre_norm": False, "enforce_input_project": False},
}
VOCABULARIES = {"colour": ["red", "green", "blue", "purple"], "shape": ["circle", "square", "star"]}


def make_real_kit(root: Path, *, per_class: int = 4, seed: int = 0, categories=None, vocabularies=None,
                  phrasing=None) -> Path:
    """A kit built only from the project's real parts: a tiny random Mask2Former, the attribute text
    encoder (rebuildable from the manifest), a tiny PrimitiveGenerator; fit_head trains the head.
    ``phrasing``: the manifest's phrasing settings (text_encoder.kwargs.phrasing), if any."""
    from zsp_ros.model.build import build_mask2former
    from zsp_ros.model.primitive_generator import PrimitiveGenerator
    from zsp_ros.pading.head_fit import fit_head
    from zsp_ros.semantics.build import build_text_encoder

    vocabularies = vocabularies or VOCABULARIES
    encoder = build_text_encoder("attributes", vocabularies=vocabularies)
    torch.manual_seed(seed)
    net = build_mask2former(TINY_MASK2FORMER, len(SEEN))
    gen_cfg = {**GENERATOR_CONFIG, "semantic_dim": encoder.dim, "embed_dim": 32}
    generator = PrimitiveGenerator(**gen_cfg).eval()
    seen = list(categories or SEEN[:3])
    text = torch.from_numpy(encoder.encode([c["name"] for c in seen]))
    # The bank holds the random network's own query embeddings on a few random images, query q
    # labelled as seen category q % K (q < 6) or no-object, so the head finds segments in real output.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        _, embeds = net.eval().forward_network(torch.randn(per_class, 3, 64, 64, generator=g))   # [n,8,32]
    q = torch.arange(embeds.shape[1]).repeat(embeds.shape[0])
    bank = embeds.reshape(-1, 32)
    labels = torch.where(q < 6, q % len(seen), len(seen))
    ids = torch.tensor([c["id"] for c in seen] + [0])[labels]
    head = fit_head(bank, labels, torch.ones(len(seen) + 1), steps=30, optimizer="lbfgs", lr=1.0)
    return save_kit(root, model_config=TINY_MASK2FORMER, network_state=net.state_dict(),
                    head_weight=head.weight, head_bias=head.bias, generator_config=gen_cfg,
                    generator_state=generator.state_dict(), bank_embeds=bank, bank_category_ids=ids,
                    text_embeds=text, categories=seen, text_encoder_id=encoder.identifier,
                    text_encoder_dim=encoder.dim,
                    text_encoder_kwargs={"vocabularies": vocabularies, **({"phrasing": phrasing} if phrasing else {})},
                    short_side=64, max_long_side=96,
                    runtime={"synthetic_per_category": 16,
                             "fit_kwargs": {"optimizer": "lbfgs", "steps": 30, "lr": 1.0}})
