"""`zsp doctor --kit KIT`: one model kit checked end to end, one line per check (zsp_ros/cli/doctor.py runs it).

Checks, in order: files (sizes, sha256, tensor names/shapes/dtypes against the manifest, finiteness), the
network (built from model_config, one forward of a zero image), the head, the text encoder (available, its
dim, its embeddings of the kit's first names against the stored ones, cosine >= 0.99), the generator, the
thresholds, the input size rule, the bank (source and size) and one add of a probe name on an in-memory
registry (timed). A failed load stops there; a missing text encoder skips the add.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import KitError, ModelKit, load_kit
from zsp_ros.model.primitive_generator import PrimitiveGenerator
from zsp_ros.runtime.backends import build_backend
from zsp_ros.runtime.registry import build_registry
from zsp_ros.semantics.build import build_text_encoder

PROBE_NAME = "zsp doctor probe"      # also the default of `zsp doctor --probe`
CheckResult = tuple[str, bool, str]          # (check, passed, one-line detail)


def _network(kit: ModelKit) -> str:
    side = kit.input["size_divisibility"] * 2
    backend = build_backend("torch", kit)
    t0 = time.perf_counter()
    masks, embeds = backend.infer(torch.zeros(1, 3, side, side))
    masks, embeds = torch.as_tensor(masks), torch.as_tensor(embeds)
    if embeds.shape[-1] != kit.embed_dim or not bool(torch.isfinite(masks).all() and torch.isfinite(embeds).all()):
        raise RuntimeError(f"forward gave masks {list(masks.shape)}, embeds {list(embeds.shape)} (finite: "
                           f"{bool(torch.isfinite(embeds).all())}), expected embeds [..., {kit.embed_dim}]")
    return (f"builds and runs: a {side}x{side} input gives masks {list(masks.shape)}, query embeddings "
            f"{list(embeds.shape)} in {time.perf_counter() - t0:.2f} s")


def _text_encoder(kit: ModelKit) -> tuple[Any, str]:
    encoder = build_text_encoder(kit.text_encoder_id, **kit.manifest["text_encoder"].get("kwargs", {}))
    if encoder.dim != kit.text_encoder_dim or encoder.identifier != kit.text_encoder_id:
        raise KitError(f"the encoder built is {encoder.identifier!r} ({encoder.dim}-d); the kit needs "
                       f"{kit.text_encoder_id!r} ({kit.text_encoder_dim}-d)")
    names = kit.categories.names[:4]
    got = torch.from_numpy(np.asarray(encoder.encode(names), dtype=np.float32))
    cos = torch.nn.functional.cosine_similarity(got, kit.text_embeds[:len(names)], dim=1)
    if bool((cos < 0.99).any()):
        i = int(torch.argmin(cos))
        raise KitError(f"{encoder.identifier} embeds {names[i]!r} differently from the kit's stored embedding "
                       f"(cosine {float(cos[i]):.3f} < 0.99): other weights or templates?")
    return encoder, (f"{encoder.identifier}, {encoder.dim}-d, available; embeds {len(names)} kit names as stored "
                     f"(min cosine {float(cos.min()):.4f})")


def _generator(kit: ModelKit) -> str:
    generator = PrimitiveGenerator(**kit.generator_config)
    generator.load_state_dict(kit.generator_state_dict())
    generator.eval()
    with torch.no_grad():
        fake = generator(kit.text_embeds[:1].expand(8, -1), generator.sample_noise(8))
    if fake.shape != (8, kit.embed_dim) or not bool(torch.isfinite(fake).all()):
        raise RuntimeError(f"8 fakes came out as {list(fake.shape)} (finite: {bool(torch.isfinite(fake).all())})")
    return f"PrimitiveGenerator {kit.text_encoder_dim}-d text -> {kit.embed_dim}-d embeddings, finite output"


def _bank(kit: ModelKit) -> str:
    ids = kit.bank_category_ids
    covered = len(set(ids.unique().tolist()) - {0})
    no_object = int((ids == 0).sum())
    entry = kit.manifest.get("bank") or {}
    extra = (f", {entry['rows_per_category']} per category (seed {entry.get('seed', 0)})"
             if "rows_per_category" in entry else "")
    return (f"source {kit.bank_source}: {ids.numel()} rows{extra}, {covered} of {len(kit.categories)} categories, "
            f"{no_object} no-object rows, {kit.bank_embeds.numel() * kit.bank_embeds.element_size() / 2**20:.1f} MiB")


def _add(kit: ModelKit, encoder: Any, probe: str) -> str:
    if probe == PROBE_NAME and len(kit.categories):
        # the default probe carries a kit category's words: a kit whose phrasing refuses names with no word
        # it knows (zsp_ros/semantics/phrasing.py) would refuse the bare probe
        probe = f"{PROBE_NAME} {kit.categories.names[0]}"
    registry = build_registry(kit, text_encoder=encoder, warm_up=True, writer_nice=None)
    try:
        t0 = time.perf_counter()
        added = registry.add([probe])
        seconds = time.perf_counter() - t0
        k = len(registry.snapshot.categories)
    finally:
        registry.close()
    return (f"added {added[0].name!r} as id {added[0].id} on an in-memory registry in {seconds:.2f} s "
            f"(head now {k} + no-object rows)")


def check_kit(kit_arg: str | None, *, probe: str = PROBE_NAME) -> list[CheckResult]:
    """Every check of `zsp doctor --kit` in order (module docstring); stops after a failed load."""
    torch.set_num_threads(1)
    results: list[CheckResult] = []

    def attempt(name: str, probe: Callable[[], str]) -> bool:
        try:
            results.append((name, True, probe()))
            return True
        except Exception as exc:  # a failed check is what we report
            results.append((name, False, f"{type(exc).__name__}: {exc}".splitlines()[0][:400]))
            return False

    box: dict[str, Any] = {}

    def load() -> str:
        path = resolve_kit(kit_arg)
        kit = box["kit"] = load_kit(path)
        total = sum(int(f["bytes"]) for f in kit.manifest["files"].values())
        return (f"{path}: {len(kit.manifest['files'])} files ({total / 2**20:.1f} MiB) match the sha256 and sizes "
                f"of manifest.json; every tensor's name, shape, dtype fits model_config / generator_config; finite")

    if not attempt("kit files", load):
        return results
    kit: ModelKit = box["kit"]
    attempt("network", lambda: _network(kit))
    attempt("head", lambda: (f"{kit.head_weight.shape[0]} rows ({len(kit.categories)} categories + no-object) x "
                             f"{kit.head_weight.shape[1]}; {sum(c.origin == 'seen' for c in kit.categories)} seen"))

    def text() -> str:
        box["encoder"], detail = _text_encoder(kit)
        return detail

    encoder_ok = attempt("text encoder", text)
    attempt("generator", lambda: _generator(kit))
    attempt("thresholds", lambda: (f"object_mask_threshold {kit.inference['object_mask_threshold']}, "
                                   f"overlap_threshold {kit.inference['overlap_threshold']}"
                                   + (f" ({kit.manifest['inference']['note']})"
                                      if (kit.manifest.get("inference") or {}).get("note") else " (defaults)")))
    attempt("input size", lambda: (f"short side {kit.input['short_side']}, long side <= {kit.input['max_long_side']}, "
                                   f"padded to multiples of {kit.input['size_divisibility']} (pixels)"))
    attempt("bank", lambda: _bank(kit))
    if encoder_ok:
        attempt("add a category", lambda: _add(kit, box["encoder"], probe))
    else:
        results.append(("add a category", False, "not tried: the text encoder is not available"))
    return results
