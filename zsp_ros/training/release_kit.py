"""`zsp kit from-release`: the PADing authors' released checkpoints + CLIP ViT-B/16 weights -> a model kit.

    zsp kit from-release --segmenter pretrained_weight_panoptic.pth --pading PADing_panoptic.pth \\
        --clip ViT-B-16.pt --split coco_zsp --out kits/coco_zsp [--short-side 512 --max-long-side 853]

Inputs (formats: docs/REAL_DATA.md "A kit from the released checkpoints"):
- ``--segmenter``: Mask2Former R50 in detectron2 key names (``.pkl`` model zoo or ``.pth`` training
  checkpoint, read by zsp_ros.training.import_checkpoint.read_checkpoint: no code from the file runs).
  Its network tensors (everything but the class head) become ``network.safetensors``; every key the
  ``--config`` network needs must be there with its shape.
- ``--pading``: PADing's final checkpoint (PADing/PADing_model.py): ``new_fc`` (the head PADing retrains
  on real seen + generated unseen embeddings, [K+1, 256], row order = the split's test categories, last
  row no-object) becomes ``head.safetensors`` unchanged; ``fc_projection`` / ``dict_feature`` /
  ``generator`` become the kit's PrimitiveGenerator (import_checkpoint.GENERATOR_MAP). Its network
  tensors, when present (PADing freezes them), are compared with ``--segmenter``'s and the largest
  difference is recorded.
- ``--clip``: OpenAI's ``ViT-B-16.pt`` (TorchScript) or an open_clip ViT-B-16 state dict. The kit records
  the text encoder as ``clip-vit-b-16`` with PADing's prompt templates (zsp_ros.semantics.clip_encoder);
  it must give ``fc_projection``'s input width (512).

The kit's categories are the split's categories in the released head's row order (`head_categories`),
all of origin "seen" (the head covers the unseen ones too: PADing trained their rows on generated
embeddings). A release has no bank of real query embeddings, so ``bank.safetensors`` is GENERATED:
``--bank-rows`` rows per category from the released generator conditioned on the category's text
embedding (seeded with ``--seed`` + category id, stored fp16, no no-object rows), and the manifest
says ``"bank": {"source": "generated", ...}`` (`ModelKit.bank_source`).
Thresholds: PADing's evaluation (object_mask_threshold 0.8, overlap_threshold 0.8). Runtime refit:
PADing's class weights and final-head optimiser from ``--pading-config``.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from zsp_ros.data.coco_real import load_coco_split
from zsp_ros.kit.checks import CLASS_HEAD_PREFIX
from zsp_ros.kit.meta_build import expected_state
from zsp_ros.kit.model_kit import save_kit
from zsp_ros.model.build import build_mask2former, load_config
from zsp_ros.model.primitive_generator import PrimitiveGenerator
from zsp_ros.pading.runtime_refit import synthesize_for_ids
from zsp_ros.semantics.clip_encoder import PADING_TEMPLATES, ClipTextEncoder
from zsp_ros.training.import_checkpoint import (
    DEFAULT_PADING_CONFIG,
    build_generator_for,
    has_generator,
    map_generator,
    read_checkpoint,
)
from zsp_ros.utils.provenance import provenance

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
DEFAULT_MODEL_CONFIG = REPO_CONFIG / "r50_coco_panoptic.yaml"
HEAD_WEIGHT, HEAD_BIAS = "new_fc.weight", "new_fc.bias"
# --split -> zsp_ros.data.coco_real split name
SPLITS = {"coco_zsp": "zsp", "coco_zss": "zss", "coco_zsi": "zsi-48-17", "coco_zsi_65_15": "zsi-65-15"}
# Row order of the released head per split (heshuting555/PADing @ 5d81719, PADing/data/datasets/):
# zsp: COCO_CATEGORIES order (register_coco_panoptic_zsp.py; = the split file's order);
# zss / zsi-65-15: the seen categories then the unseen ones, each in split-file order
# (register_coco_stuff.py COCO_CATEGORIES_ALL, unseen_index = arange(156, 171);
# register_coco_zsi_65_15.py COCO_ZSI_TEST_CATEGORIES, arange(65, 80));
# zsi-48-17: COCO_ZSI_TEST_CATEGORIES of register_coco_zsi_48_17.py, by COCO id (not split-file order).
HEAD_ORDER: dict[str, str | tuple[int, ...]] = {
    "zsp": "split", "zss": "seen_then_unseen", "zsi-65-15": "seen_then_unseen",
    "zsi-48-17": (1, 2, 3, 4, 8, 9, 15, 16, 19, 20, 24, 25, 27, 31, 35, 38, 42, 44, 50, 51, 52, 53, 55, 56, 57, 59,
                  60, 62, 65, 72, 73, 75, 78, 79, 82, 84, 85, 86, 90, 7, 23, 33, 34, 48, 54, 70, 74, 80, 6, 18, 21,
                  22, 28, 32, 41, 47, 49, 61, 63, 76, 81, 87, 5, 17, 36),
}
# PADing's evaluation thresholds (configs/*-segmentation/PADing.yaml, MODEL.MASK_FORMER.TEST)
PADING_THRESHOLDS = {"object_mask_threshold": 0.8, "overlap_threshold": 0.8}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def head_categories(split_name: str) -> list[dict[str, Any]]:
    """The split's categories (id, name, isthing, seen) in the released head's row order (``HEAD_ORDER``),
    without ``excluded_ids``."""
    if split_name not in HEAD_ORDER:
        raise ValueError(f"no released head order is known for split {split_name!r} ({sorted(HEAD_ORDER)})")
    split = load_coco_split(split_name)
    excluded = set(split["excluded_ids"])
    cats = [c for c in split["categories"] if c["id"] not in excluded]
    order = HEAD_ORDER[split_name]
    if order == "split":
        return cats
    if order == "seen_then_unseen":
        return [c for c in cats if c["seen"]] + [c for c in cats if not c["seen"]]
    by_id = {c["id"]: c for c in cats}
    if sorted(order) != sorted(by_id):
        raise ValueError(f"HEAD_ORDER[{split_name!r}] does not list the split's {len(by_id)} categories")
    return [by_id[i] for i in order]


def generated_bank(generator: PrimitiveGenerator, text: torch.Tensor, ids: list[int], *, rows_per_category: int,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A proxy bank: ``rows_per_category`` generator outputs per category (text [N, D] -> embeds
    float16 [N*rows, E], category_ids int64 [N*rows]); category id c is seeded with ``seed + c``, as the
    registry seeds an added name's fakes (zsp_ros.pading.runtime_refit.synthesize_for_ids)."""
    generator.eval()
    with torch.no_grad():
        embeds = synthesize_for_ids(generator, text.float(), ids, per_category=rows_per_category, seed=seed,
                                    embed_dim=int(generator.config["embed_dim"]))
    category_ids = torch.tensor(ids, dtype=torch.int64).repeat_interleave(rows_per_category)
    return embeds.to(torch.float16), category_ids


def network_state(checkpoint: Mapping[str, torch.Tensor], model_config: dict[str, Any], num_classes: int, *,
                  dtype: torch.dtype, source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The network tensors (class head excluded) of ``model_config``'s Mask2Former from ``checkpoint``.

    Returns (state in ``dtype`` for floating tensors, checkpoint keys not used). Raises ValueError naming
    every missing key or shape mismatch.
    """
    layout = expected_state(lambda: build_mask2former(dict(model_config), num_classes))
    layout = {k: v for k, v in layout.items() if not k.startswith(CLASS_HEAD_PREFIX)}
    missing = sorted(set(layout) - set(checkpoint))
    if missing:
        raise ValueError(f"{source}: {len(missing)} network tensors are absent (first: {missing[:5]}); is it a "
                         f"Mask2Former R50 checkpoint of this config?")
    mismatch = [f"{k}: checkpoint {list(checkpoint[k].shape)} vs config {list(shape)}"
                for k, (shape, _) in layout.items() if tuple(checkpoint[k].shape) != shape]
    if mismatch:
        raise ValueError(f"{source}: shapes do not match the model config: {'; '.join(mismatch[:5])}")
    state = {k: checkpoint[k].to(dtype) if want.is_floating_point else checkpoint[k].to(want)
             for k, (_, want) in layout.items()}
    return state, sorted(set(checkpoint) - set(layout))


def _released_generator(ckpt: Mapping[str, torch.Tensor], *, pading_config: Path, embed_dim: int,
                        source: str) -> tuple[PrimitiveGenerator, dict[str, Any]]:
    if not has_generator(ckpt):
        raise ValueError(f"{source}: no PADing generator (fc_projection.weight + generator.layers.*); is it "
                         f"PADing's final checkpoint?")
    generator = build_generator_for(ckpt, pading_config=pading_config, embed_dim=embed_dim)
    state, report = map_generator(ckpt, generator.state_dict())
    if report["shape_mismatch"] or report["missing"]:
        raise ValueError(f"{source}: the PADing generator does not match {pading_config}: "
                         f"mismatch {report['shape_mismatch']}, missing {report['missing']}")
    generator.load_state_dict(state)
    generator.eval()
    return generator, report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _network_difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float | None:
    common = [k for k in a if k in b and a[k].shape == b[k].shape and a[k].is_floating_point()]
    if not common:
        return None
    return max(float((a[k].float() - b[k].float()).abs().max()) if a[k].numel() else 0.0 for k in common)


def build_release_kit(*, segmenter: str | Path, pading: str | Path, clip: str | Path, out: str | Path,
                      split: str = "coco_zsp", config: str | Path = DEFAULT_MODEL_CONFIG,
                      pading_config: str | Path = DEFAULT_PADING_CONFIG, short_side: int = 512,
                      max_long_side: int = 853, bank_rows: int = 100, seed: int = 0, network_dtype: str = "fp32",
                      record_clip_path: bool = True, command: list[str] | None = None) -> dict[str, Any]:
    """Write the kit (module docstring) to ``out``; returns a summary. Raises ValueError / FileNotFoundError
    naming the file and key at fault; nothing is written then."""
    import yaml

    t0 = time.perf_counter()
    if split not in SPLITS:
        raise ValueError(f"unknown --split {split!r}; choose from {', '.join(SPLITS)}")
    if not 1 <= bank_rows <= 100_000:
        raise ValueError(f"--bank-rows must be in [1, 100000], got {bank_rows}")
    paths = {"segmenter": Path(segmenter), "pading": Path(pading), "clip": Path(clip)}
    for what, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"--{what} {path} does not exist")
    cats = head_categories(SPLITS[split])
    k = len(cats)
    model_config = load_config(config)["model"]
    pad = read_checkpoint(paths["pading"])
    for key, shape in ((HEAD_WEIGHT, (k + 1, int(model_config["decoder"]["hidden_dim"]))), (HEAD_BIAS, (k + 1,))):
        if key not in pad:
            raise ValueError(f"{paths['pading']}: no {key} (PADing's retrained head); is it PADing's final checkpoint?")
        if tuple(pad[key].shape) != shape:
            raise ValueError(f"{paths['pading']}: {key} has shape {list(pad[key].shape)} but split {split} "
                             f"({k} categories + no-object) with embed_dim {shape[-1]} needs {list(shape)}")
    head_w, head_b = pad[HEAD_WEIGHT].float(), pad[HEAD_BIAS].float()
    embed_dim = head_w.shape[1]
    generator, gen_report = _released_generator(pad, pading_config=Path(pading_config), embed_dim=embed_dim,
                                                source=str(paths["pading"]))
    seg = pad if paths["segmenter"].resolve() == paths["pading"].resolve() else read_checkpoint(paths["segmenter"])
    net, unused = network_state(seg, model_config, k, dtype=DTYPES[network_dtype], source=str(paths["segmenter"]))
    pading_net_diff = _network_difference(net, pad) if seg is not pad else 0.0

    encoder = ClipTextEncoder(weights=paths["clip"], model_name="ViT-B-16", templates=PADING_TEMPLATES,
                              quick_gelu=True)          # OpenAI's CLIP, as PADing's clip.load("ViT-B/16")
    if encoder.dim != generator.semantic_dim:
        raise ValueError(f"{paths['pading']}: the generator conditions on {generator.semantic_dim}-d text embeddings "
                         f"(fc_projection.weight) but CLIP ViT-B/16 gives {encoder.dim}-d; the released ZSI model "
                         f"uses 300-d word2vec (PADing VEC_PATH), which this command does not build")
    names = [c["name"] for c in cats]
    text = torch.from_numpy(encoder.encode(names))
    ids = [int(c["id"]) for c in cats]
    bank_embeds, bank_ids = generated_bank(generator, text, ids, rows_per_category=bank_rows, seed=seed)

    pcfg = yaml.safe_load(Path(pading_config).read_text()) or {}
    cw, fh = pcfg.get("class_weights") or {}, pcfg.get("final_head") or {}
    runtime = {"synthetic_per_category": bank_rows,
               "class_weights": {"seen": float(cw.get("seen", 1.0)), "added": float(cw.get("unseen", 5.0)),
                                 "no_object": float(cw.get("no_object", 0.1))},
               "fit_kwargs": {key: fh[key] for key in ("optimizer", "steps", "lr", "weight_decay") if key in fh}}
    # The phrasing rewrite's cosine bar (config/phrasing.yaml) was chosen on MiniLM's scale; CLIP's cosines sit
    # higher, so a release kit starts with it off until it is re-chosen on CLIP (README "Adding categories by name").
    te_kwargs: dict[str, Any] = {"templates": list(PADING_TEMPLATES), "quick_gelu": True,
                                 "phrasing": {"enabled": False}}
    if record_clip_path:
        te_kwargs["weights"] = str(paths["clip"].resolve())
    prov = {**provenance(command),
            "release": {"split": split, "protocol": SPLITS[split], "head_order": str(HEAD_ORDER[SPLITS[split]])[:40],
                        "unseen": [c["name"] for c in cats if not c["seen"]],
                        "files": {w: {"path": str(p), "sha256": _sha256(p)} for w, p in paths.items()},
                        "segmenter_keys_not_used": unused[:50], "segmenter_keys_not_used_count": len(unused),
                        "pading_network_max_abs_diff": pading_net_diff,
                        "generator_unused": sorted(gen_report["unused"]), "model_config": str(config),
                        "pading_config": str(pading_config)},
            "network_dtype": network_dtype}
    kit = save_kit(out, model_config=model_config, network_state=net, head_weight=head_w, head_bias=head_b,
                   generator_config=generator.config, generator_state=generator.state_dict(),
                   bank_embeds=bank_embeds, bank_category_ids=bank_ids, text_embeds=text,
                   categories=[{"id": c["id"], "name": c["name"], "isthing": bool(c["isthing"]), "origin": "seen"}
                               for c in cats],
                   text_encoder_id=encoder.identifier, text_encoder_dim=encoder.dim, text_encoder_kwargs=te_kwargs,
                   short_side=short_side, max_long_side=max_long_side, size_divisibility=32, runtime=runtime,
                   provenance=prov,
                   bank={"source": "generated", "rows_per_category": bank_rows, "seed": seed, "categories": k,
                         "note": "generator output per kit category from its text embedding (no no-object rows); "
                                 "a release has no bank of real query embeddings"},
                   extra={"inference": {**PADING_THRESHOLDS,
                                        "note": "PADing configs/*-segmentation/PADing.yaml MODEL.MASK_FORMER.TEST "
                                                "(heshuting555/PADing@5d81719)"}})
    return {"kit": str(kit), "categories": k, "unseen": len(prov["release"]["unseen"]), "bank_rows": len(bank_ids),
            "pading_network_max_abs_diff": pading_net_diff, "seconds": round(time.perf_counter() - t0, 1)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segmenter", required=True, help="released Mask2Former R50 checkpoint (.pkl / .pth)")
    parser.add_argument("--pading", required=True, help="released PADing checkpoint (.pth; may be the same file)")
    parser.add_argument("--clip", required=True, help="CLIP ViT-B/16 weights (OpenAI ViT-B-16.pt or open_clip)")
    parser.add_argument("--split", default="coco_zsp", choices=sorted(SPLITS),
                        help="the release's protocol: category set and head row order (default coco_zsp)")
    parser.add_argument("--out", required=True, help="kit directory to write")
    parser.add_argument("--config", default=str(DEFAULT_MODEL_CONFIG), help="Mask2Former config (R50 COCO)")
    parser.add_argument("--pading-config", default=str(DEFAULT_PADING_CONFIG),
                        help="generator sizes, runtime class weights and refit optimiser")
    parser.add_argument("--short-side", type=int, default=512,
                        help="network input short side in pixels (Mask2Former evaluates at 800; docs/REAL_DATA.md)")
    parser.add_argument("--max-long-side", type=int, default=853, help="long side cap (Mask2Former: 1333)")
    parser.add_argument("--bank-rows", type=int, default=100, help="generated bank rows per category")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated bank")
    parser.add_argument("--network-dtype", choices=sorted(DTYPES), default="fp32",
                        help="storage of the network weights (fp32: the released values unchanged)")
    parser.add_argument("--portable-clip", action="store_true",
                        help="do not record the CLIP path: the runtime looks in $ZSP_CLIP_WEIGHTS / the cache")


def run(args: argparse.Namespace) -> int:
    import pickle

    try:
        summary = build_release_kit(segmenter=args.segmenter, pading=args.pading, clip=args.clip, out=args.out,
                                    split=args.split, config=args.config, pading_config=args.pading_config,
                                    short_side=args.short_side, max_long_side=args.max_long_side,
                                    bank_rows=args.bank_rows, seed=args.seed, network_dtype=args.network_dtype,
                                    record_clip_path=not args.portable_clip, command=sys.argv)
    except (FileNotFoundError, ValueError, pickle.UnpicklingError) as exc:
        print(f"zsp kit from-release: {exc}", file=sys.stderr)
        return 1
    diff = summary["pading_network_max_abs_diff"]
    print(f"kit {summary['kit']}: {summary['categories']} categories ({summary['unseen']} unseen in the split), "
          f"generated bank of {summary['bank_rows']} rows, {summary['seconds']} s")
    if diff:
        print(f"  note: the PADing checkpoint's network differs from --segmenter's by up to {diff:.3g} "
              f"(the kit uses --segmenter's)")
    print(f"  check it: zsp doctor --kit {summary['kit']}")
    return 0
