"""`zsp train kit`: package a trained segmenter + PADing run as the runtime's model kit.

    zsp train kit --segmenter RUN --pading RUN2 --bank BANK --out zsp_ros/kits/default
                  [--data WORLD] [--benchmark results/zeroshot.json] [--rows-per-category 100]

Writes a kit directory with `zsp_ros.kit.model_kit.save_kit` (docs/CONTRACTS.md "Model kit"):

- network.safetensors: the segmenter's weights without its class head, fp16 by default
  (``--network-dtype``); the torch backend copies them into its fp32 parameters on load;
- generator.safetensors: RUN2's primitive generator, fp16 likewise (a GMMN run is refused: the
  runtime registry builds a PrimitiveGenerator);
- bank.safetensors: a compact bank of real seen query embeddings (fp16): at most
  ``--rows-per-category`` rows per seen category (seeded) and no-object rows in the bank's own
  proportion, capped at ``--max-no-object-rows``; when the cap bites, the runtime no-object
  class weight is multiplied by (proportional count / kept count) so the retraining objective
  keeps its expected no-object term; plus the text embeddings of the seen categories;
- head.safetensors: the default head over the SEEN categories only (+ no object), fitted on the
  compact bank exactly as the runtime retrains (``fit_head`` with the manifest's runtime
  settings): the unseen categories are what a user adds at runtime, by name;
- manifest ``runtime``: ``synthetic_per_category`` = the median real rows per seen category of
  the compact bank (as the offline final head uses the median real count; ``--synthetic-per-category``
  overrides it), ``class_weights``
  {seen, added, no_object} = the PADing config's {seen, unseen, no_object}, the seen and no-object
  ones multiplied by ``seen_weight_factor`` = (real seen rows the offline final head fits on:
  ``min(count, final_head.max_rows_per_class)`` summed over seen categories) / (seen rows of the
  compact bank), so an added name's fakes weigh against the seen categories as the unseen ones do
  offline (without it the 100-row bank let added names take seen objects); ``fit_kwargs`` = its
  ``final_head`` optimizer, steps, lr and weight decay;
- manifest ``provenance``: the command, machine, segmenter / PADing / bank hashes and, with
  ``--data``, ``metrics`` on WORLD's validation split: ``PQ``/``SQ``/``RQ`` (seen / unseen / hm)
  of RUN2's offline head over all categories (``metrics.PQ.unseen`` is the offline unseen PQ),
  ``kit_default_head`` (seen categories only) and ``runtime_after_adding_unseen`` (the kit's own
  registry after adding the world's unseen names: what a user gets); ``--benchmark`` adds the
  zero-shot benchmark's means.

KIT/README.md records the command, sizes and metrics.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from zsp_ros.inference.postprocess import DEFAULT_OBJECT_MASK_THRESHOLD, DEFAULT_OVERLAP_THRESHOLD
from zsp_ros.kit.model_kit import load_kit, save_kit
from zsp_ros.pading.artifacts import load_generator
from zsp_ros.pading.head_fit import fit_head
from zsp_ros.runtime.backends.torch_backend import TorchBackend
from zsp_ros.runtime.registry import build_registry
from zsp_ros.semantics.build import build_text_encoder
from zsp_ros.training.evaluate_head import HeadEvaluator, headline, load_head
from zsp_ros.training.feature_bank import load_feature_bank, sha256_file
from zsp_ros.training.real_head import bank_labels, subsample_rows
from zsp_ros.training.segmenter_run import SegmenterRun, load_segmenter, resolve_segmenter
from zsp_ros.training.val_cache import ensure_val_cache
from zsp_ros.utils.provenance import atomic_write_bytes, provenance

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


def compact_bank(category_ids: torch.Tensor, seen: list[dict[str, Any]], *, rows_per_category: int,
                 max_no_object_rows: int | None, seed: int) -> tuple[torch.Tensor, float]:
    """Rows of the kit's bank -> (sorted row indices, no-object weight multiplier >= 1).

    ``category_ids`` [M] (0 = no object) must hold seen categories only.
    """
    labels = bank_labels(category_ids, seen)
    rows = subsample_rows(labels, num_classes=len(seen), max_per_class=rows_per_category, seed=seed)
    no_object = rows[labels[rows] == len(seen)]
    proportional = no_object.numel()
    if max_no_object_rows is not None and proportional > max_no_object_rows:
        gen = torch.Generator().manual_seed(seed + 7)
        dropped = no_object[torch.randperm(proportional, generator=gen)[max_no_object_rows:]]
        rows = rows[~torch.isin(rows, dropped)]
        return rows, proportional / max_no_object_rows
    return rows, 1.0


def seen_weight_factor(category_ids: torch.Tensor, seen: list[dict[str, Any]], kept_counts: torch.Tensor,
                       max_rows_per_class: int | None) -> float:
    """(seen rows the offline final head fits on) / (seen rows kept in the compact bank), >= 1.

    category_ids: [M] the full bank's categories (0 = no object); kept_counts: [K] compact rows per
    seen category; max_rows_per_class: the offline cap per category (None: no cap).
    """
    full = torch.bincount(bank_labels(category_ids, seen), minlength=len(seen) + 1)[:-1]
    offline = full.clamp(max=max_rows_per_class) if max_rows_per_class is not None else full
    kept = int(kept_counts.sum())
    return float(offline.sum()) / kept if kept else 1.0


def _text_encoder_kwargs(identifier: str, names: list[str]) -> dict[str, Any]:
    """Constructor kwargs the runtime needs to rebuild the encoder (the attribute vocabularies)."""
    if not identifier.startswith("attributes"):
        return {}

    encoder = build_text_encoder("attributes", names=names)
    if encoder.identifier != identifier:
        raise ValueError(f"rebuilding the attribute encoder from the bank's names gives {encoder.identifier}, "
                         f"the PADing run used {identifier}")
    return {"vocabularies": encoder.vocabularies}


def _half(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def _world_ids(categories: list[Any], split: dict[str, Any]) -> list[dict[str, Any]]:
    """Registry categories (ids of the kit / runtime) -> the world's categories, matched by name."""
    world = {c["name"].casefold(): c for c in split["categories"]}
    missing = [c.name for c in categories if c.name.casefold() not in world]
    if missing:
        raise ValueError(f"categories {missing} are not in the world's split.json")
    return [world[c.name.casefold()] for c in categories]


def _metrics(*, kit_dir: Path, seg: SegmenterRun, pading_dir: Path, pading_categories: list[dict],
             data: Path, device: str, object_mask_threshold: float) -> dict[str, Any]:
    """Validation metrics of the offline head, the kit's default head and the runtime after adding unseen."""

    cache = ensure_val_cache(segmenter=seg, data_dir=data, split="val", device=device,
                             out=seg.run_dir / "zeroshot" / f"valcache_val_{seg.short_hash}.safetensors")
    evaluator = HeadEvaluator(cache, object_mask_threshold=object_mask_threshold)
    split = evaluator.split
    weight, bias = load_head(pading_dir / "head.safetensors")
    offline = evaluator.evaluate(weight, bias, pading_categories)["panoptic"]
    kit = load_kit(kit_dir)
    default = evaluator.evaluate(kit.head_weight, kit.head_bias, _world_ids(list(kit.categories), split))
    registry = build_registry(kit, warm_up=False)
    try:
        unseen = [c for c in split["categories"] if not c["seen"]]
        t0 = time.perf_counter()
        registry.add([c["name"] for c in unseen], isthing=[bool(c["isthing"]) for c in unseen])
        add_seconds = time.perf_counter() - t0
        snap = registry.snapshot
        after = evaluator.evaluate(snap.weight, snap.bias, _world_ids(list(snap.categories), split))
    finally:
        registry.close()

    def pick(panoptic: dict[str, Any]) -> dict[str, Any]:
        return {m: panoptic[m] for m in ("PQ", "SQ", "RQ")}

    return {**pick(offline), "source": f"offline PADing head of {pading_dir} on {data}/val ({len(cache)} images)",
            "object_mask_threshold": object_mask_threshold,
            "kit_default_head": {**pick(default["panoptic"]), "note": "seen categories only"},
            "runtime_after_adding_unseen": {**pick(after["panoptic"]), "add_seconds": round(add_seconds, 2),
                                            "added": [c["name"] for c in unseen]},
            "per_category_offline": offline["per_category"],
            "short": {"offline": headline({"panoptic": offline}),
                      "runtime_after_adding_unseen": headline(after)}}


def _network_parity(seg: SegmenterRun, kit_dir: Path, *, size: int) -> dict[str, float]:
    """Max |difference| of the kit's (fp16-stored) network vs the fp32 segmenter on two random
    normalised [3, size, size] inputs."""

    model, _ = load_segmenter(seg)
    backend = TorchBackend.from_kit(load_kit(kit_dir))
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, size, size, generator=gen)
    with torch.no_grad():
        masks_ref, embeds_ref = model.forward_network(images)
        masks, embeds = backend.infer(images)
    return {"max_abs_mask_logit_diff": float((masks - masks_ref).abs().max()),
            "max_abs_embed_diff": float((embeds - embeds_ref).abs().max())}


def build_kit(*, segmenter: str | Path, pading: str | Path, bank: str | Path, out: str | Path,
              data: str | Path | None = None, benchmark: str | Path | None = None, rows_per_category: int = 100,
              max_no_object_rows: int | None = 1500, synthetic_per_category: int | None = None,
              network_dtype: str = "fp16", short_side: int = 128, max_long_side: int = 256, seed: int = 0,
              device: str = "cpu", object_mask_threshold: float = DEFAULT_OBJECT_MASK_THRESHOLD,
              command: list[str] | None = None) -> dict[str, Any]:
    """Write the kit (see the module docstring); returns its manifest."""
    from safetensors.torch import load_file


    t_start = time.perf_counter()
    seg = resolve_segmenter(segmenter)
    pading_dir = Path(pading)
    summary = json.loads((pading_dir / "config.json").read_text())
    if summary.get("segmenter_hash") != seg.sha256:
        raise ValueError(f"{pading_dir} was trained on segmenter {str(summary.get('segmenter_hash'))[:12]}..., "
                         f"not on {seg.weights} ({seg.short_hash}...)")
    fb = load_feature_bank(bank, segmenter_hash=seg.sha256)
    generator, gen_meta = load_generator(pading_dir / "generator.safetensors")
    if gen_meta["kind"] != "primitive":
        raise ValueError(f"{pading_dir} holds a {gen_meta['kind']} generator; the runtime needs a primitive "
                         f"generator (train with --variant pading)")
    cfg = summary["config"]
    categories = summary["categories"]
    seen = [c for c in categories if c["seen"]]
    text = load_file(str(pading_dir / "text_embeddings.safetensors"))["embeddings"]
    seen_rows = [i for i, c in enumerate(categories) if c["seen"]]
    encoder = summary["text_encoder"]

    rows, no_object_factor = compact_bank(fb.category_ids, seen, rows_per_category=rows_per_category,
                                          max_no_object_rows=max_no_object_rows, seed=seed)
    embeds, ids = fb.embeds[rows], fb.category_ids[rows]
    labels = bank_labels(ids, seen)
    counts = torch.bincount(labels, minlength=len(seen) + 1)
    per_category = synthetic_per_category or int(statistics.median(counts[:-1][counts[:-1] > 0].tolist()))
    cw, fh = cfg["class_weights"], cfg["final_head"]
    seen_factor = seen_weight_factor(fb.category_ids, seen, counts[:-1], fh.get("max_rows_per_class"))
    runtime = {"synthetic_per_category": per_category,
               "class_weights": {"seen": cw["seen"] * seen_factor, "added": cw["unseen"],
                                 "no_object": cw["no_object"] * no_object_factor * seen_factor},
               "fit_kwargs": {"optimizer": fh["optimizer"], "steps": fh["steps"], "lr": fh["lr"],
                              "weight_decay": fh["weight_decay"]}}
    weights = torch.tensor([runtime["class_weights"]["seen"]] * len(seen) + [runtime["class_weights"]["no_object"]])
    head = fit_head(embeds.float(), labels, weights, seed=seed, **runtime["fit_kwargs"])

    dtype = DTYPES[network_dtype]
    network_state = _half(load_file(str(seg.weights)), dtype)
    generator_state = _half(generator.state_dict(), dtype)
    kit_categories = [{"id": c["id"], "name": c["name"], "isthing": c["isthing"], "origin": "seen"} for c in seen]
    unseen = [{"id": c["id"], "name": c["name"], "isthing": c["isthing"]} for c in categories if not c["seen"]]
    prov: dict[str, Any] = {
        **provenance(command), "segmenter": {"weights": str(seg.weights), "sha256": seg.sha256},
        "pading_run": {"dir": str(pading_dir), "variant": summary["variant"], "seed": summary["seed"],
                       "generator_sha256": sha256_file(pading_dir / "generator.safetensors")},
        "bank": {"path": str(bank), "sha256": sha256_file(bank), "rows": len(fb)},
        "compact_bank": {"rows": int(rows.numel()), "rows_per_category": rows_per_category,
                         "no_object_rows": int(counts[-1]), "no_object_weight_factor": no_object_factor,
                         "seen_weight_factor": seen_factor},
        "network_dtype": network_dtype}
    common = dict(model_config=seg.config["model"], network_state=network_state, head_weight=head.weight,
                  head_bias=head.bias, generator_config=gen_meta["config"], generator_state=generator_state,
                  bank_embeds=embeds, bank_category_ids=ids, text_embeds=text[seen_rows],
                  categories=kit_categories, text_encoder_id=encoder["id"], text_encoder_dim=encoder["dim"],
                  text_encoder_kwargs=_text_encoder_kwargs(encoder["id"], [c["name"] for c in categories]),
                  short_side=short_side, max_long_side=max_long_side, size_divisibility=32, runtime=runtime,
                  extra={"world_unseen_categories": unseen,
                         "inference": {"object_mask_threshold": object_mask_threshold,
                                       "overlap_threshold": DEFAULT_OVERLAP_THRESHOLD,
                                       "note": "panoptic thresholds of provenance.metrics; pass them to "
                                               "Segmenter.from_kit / the node parameters"}})
    out = Path(out)
    save_kit(out, provenance=prov, **common)
    prov["network_parity_fp32"] = _network_parity(seg, out, size=short_side)
    if data is not None:
        prov["metrics"] = _metrics(kit_dir=out, seg=seg, pading_dir=pading_dir, pading_categories=categories,
                                   data=Path(data), device=device, object_mask_threshold=object_mask_threshold)
    if benchmark is not None:
        report = json.loads(Path(benchmark).read_text())
        prov.setdefault("metrics", {})["benchmark"] = {
            "file": str(benchmark), "oracle": report.get("oracle"), "goals": report.get("goals"),
            "PQ": {n: {g: v["PQ"][g]["mean"] for g in ("seen", "unseen", "hm")}
                   for n, v in report["variants"].items()}}
    prov["seconds"] = round(time.perf_counter() - t_start, 1)
    save_kit(out, provenance=prov, **common)
    manifest = json.loads((out / "manifest.json").read_text())
    _write_readme(out, manifest)
    total = sum(f["bytes"] for f in manifest["files"].values()) + (out / "manifest.json").stat().st_size
    print(f"kit {out}: {len(kit_categories)} seen categories, {rows.numel()} bank rows, "
          f"{total / 2**20:.1f} MiB")
    return manifest


def _write_readme(out: Path, manifest: dict[str, Any]) -> None:

    prov = manifest["provenance"]
    files = manifest["files"]
    total = sum(f["bytes"] for f in files.values()) + (out / "manifest.json").stat().st_size
    m = prov.get("metrics", {})
    lines = ["# Default model kit (synthetic world)", "",
             "Loaded by `zsp_ros.runtime.segmenter.Segmenter.from_kit` and the ROS 2 node when no kit is given. "
             "Its default category set is the world's SEEN categories; add the unseen ones (or any name) at "
             "runtime.", "", "Produced by:", "", "```", " ".join(str(c) for c in prov.get("command", [])), "```", "",
             f"- segmenter sha256 `{prov['segmenter']['sha256']}`; PADing run `{prov['pading_run']['dir']}` "
             f"(variant {prov['pading_run']['variant']}, seed {prov['pading_run']['seed']})",
             f"- text encoder `{manifest['text_encoder']['id']}` ({manifest['text_encoder']['dim']}-d); "
             f"{len(manifest['categories'])} categories; runtime {json.dumps(manifest['runtime'])}",
             f"- compact bank: {prov['compact_bank']}",
             f"- inference thresholds of the metrics below: {manifest.get('inference')}",
             f"- network stored as {prov['network_dtype']}; parity with the fp32 segmenter: "
             f"{prov.get('network_parity_fp32')}",
             f"- machine: {prov['machine'].get('cpu')} × {prov['machine'].get('cpu_count')}; git {prov.get('git')}",
             "", "| file | bytes |", "|---|---|"]
    lines += [f"| {name} | {f['bytes']:,} |" for name, f in files.items()]
    lines += [f"| total (with manifest) | {total:,} ({total / 2**20:.2f} MiB) |", ""]
    if "PQ" in m:
        def row(name: str, node: dict[str, Any]) -> str:
            return (f"| {name} | " + " | ".join(f"{node[k][g]:.1f}" if node[k][g] is not None else "–"
                                                 for k in ("PQ", "SQ", "RQ") for g in ("seen", "unseen", "hm")) + " |")
        lines += ["Validation metrics (percent):", "",
                  "| head | PQ^s | PQ^u | PQ^hm | SQ^s | SQ^u | SQ^hm | RQ^s | RQ^u | RQ^hm |",
                  "|---|---|---|---|---|---|---|---|---|---|",
                  row("offline PADing head (all categories)", m),
                  row("kit default head (seen only)", m["kit_default_head"]),
                  row("runtime after adding the unseen names", m["runtime_after_adding_unseen"]), ""]
    if "benchmark" in m:
        lines += [f"Zero-shot benchmark means (`{m['benchmark']['file']}`): "
                  f"{json.dumps(m['benchmark']['PQ'])}", ""]
    atomic_write_bytes(out / "README.md", "\n".join(lines).encode())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segmenter", required=True, help="stage-1 run directory (or its weights file)")
    parser.add_argument("--pading", required=True, help="a `zsp train pading --variant pading` output directory")
    parser.add_argument("--bank", required=True, help="the feature bank that run was trained on")
    parser.add_argument("--out", required=True, help="kit directory to write (e.g. zsp_ros/kits/default)")
    parser.add_argument("--data", default=None, help="world directory: record validation metrics in the kit")
    parser.add_argument("--benchmark", default=None, help="zeroshot.json to summarise in the kit's provenance")
    parser.add_argument("--rows-per-category", type=int, default=100)
    parser.add_argument("--max-no-object-rows", type=int, default=1500,
                        help="cap on no-object rows (the runtime no-object weight compensates)")
    parser.add_argument("--synthetic-per-category", type=int, default=None,
                        help="runtime fakes per added name (default: median real rows per seen category)")
    parser.add_argument("--network-dtype", choices=sorted(DTYPES), default="fp16")
    parser.add_argument("--short-side", type=int, default=128, help="network input short side (pixels)")
    parser.add_argument("--max-long-side", type=int, default=256, help="network input long side cap (pixels)")
    parser.add_argument("--object-mask-threshold", type=float, default=DEFAULT_OBJECT_MASK_THRESHOLD,
                        help="panoptic threshold for the recorded metrics (recorded in the manifest too)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    build_kit(segmenter=args.segmenter, pading=args.pading, bank=args.bank, out=args.out, data=args.data,
              benchmark=args.benchmark, rows_per_category=args.rows_per_category,
              max_no_object_rows=args.max_no_object_rows,
              synthetic_per_category=args.synthetic_per_category, network_dtype=args.network_dtype,
              short_side=args.short_side, max_long_side=args.max_long_side, seed=args.seed,
              object_mask_threshold=args.object_mask_threshold, command=sys.argv)
    return 0
