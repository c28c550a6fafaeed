"""Study: adding names to a kit without a bank of real embeddings (issue 21, item 2).

    python -m experiments bankfree --data WORLD --out results/bankfree.json [--kit KIT] [--bank-rows 100]

Builds a kit "as if released" from KIT's own artifacts (default: the embedded kit): the same network,
head, generator, text embeddings, runtime settings and thresholds, with ``bank.safetensors`` replaced by a
GENERATED bank (zsp_ros.training.release_kit.generated_bank: ``--bank-rows`` generator outputs per kit
category, no no-object rows; manifest ``bank.source = "generated"``), exactly what `zsp kit from-release`
writes for a release. Then runs the vocabulary benchmark's canonical set (zsp_ros.bench.vocabulary:
network once per image, a fresh registry per seed adds the world's unseen names) on both kits and
reports, per kit, unseen PQ after adding, seen PQ before and after (the seen drop) and the add time,
mean ± std over registry seeds, and the differences (generated - real).

The figures depend on the registry's refit as it is when this runs (zsp_ros/runtime/registry.py):
`refit` in the JSON records its git revision and whether the registry knows bank sources.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from zsp_ros.bench import vocabulary
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import load_kit, save_kit
from zsp_ros.model.primitive_generator import PrimitiveGenerator
from zsp_ros.runtime.registry import build_registry
from zsp_ros.training.release_kit import generated_bank
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads
from zsp_ros.utils.provenance import provenance, write_json

GOALS = {"unseen_pq_gap_max": 3.0, "seen_drop_max": 3.0, "add_s_max": 1.0}


def as_if_released(kit_dir: Path, out: Path, *, bank_rows: int, seed: int) -> Path:
    """Write KIT with its bank replaced by a generated one (module docstring) to ``out``."""
    kit = load_kit(kit_dir)
    generator = PrimitiveGenerator(**kit.generator_config)
    generator.load_state_dict(kit.generator_state_dict())
    embeds, ids = generated_bank(generator, kit.text_embeds, list(kit.categories.ids), rows_per_category=bank_rows,
                                 seed=seed)
    m = kit.manifest
    skip = {"format", "format_version", "model_config", "generator_config", "input", "embed_dim", "text_encoder",
            "categories", "runtime", "files", "provenance", "bank"}
    return save_kit(out, model_config=m["model_config"], network_state=kit.network_state_dict(),
                    head_weight=kit.head_weight, head_bias=kit.head_bias, generator_config=kit.generator_config,
                    generator_state=kit.generator_state_dict(), bank_embeds=embeds, bank_category_ids=ids,
                    text_embeds=kit.text_embeds, categories=list(kit.categories), text_encoder_id=kit.text_encoder_id,
                    text_encoder_dim=kit.text_encoder_dim, text_encoder_kwargs=m["text_encoder"].get("kwargs"),
                    short_side=kit.input["short_side"], max_long_side=kit.input["max_long_side"],
                    size_divisibility=kit.input["size_divisibility"], runtime=kit.runtime,
                    provenance={"as_if_released_from": str(kit_dir), "kit_sha256": kit.sha256},
                    bank={"source": "generated", "rows_per_category": bank_rows, "seed": seed,
                          "categories": len(kit.categories), "note": "experiments/bankfree.py: the kit's bank "
                          "replaced by generator outputs of its categories"},
                    extra={k: v for k, v in m.items() if k not in skip})


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0}


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Canonical-set figures of one vocabulary report: unseen / seen PQ after adding, seen drop, add time."""
    runs = report["sets"]["canonical"]["runs"]
    seen_before = report["seen_only"]["PQ"]["seen"]
    return {"seen_pq_before": seen_before,
            "unseen_pq": _stats([r["PQ"]["unseen"] for r in runs]),
            "seen_pq_after": _stats([r["PQ"]["seen"] for r in runs]),
            "seen_drop": _stats([seen_before - r["PQ"]["seen"] for r in runs]),
            "add_s": _stats([r["add_s"] for r in runs]),
            "per_seed": [{"seed": r["seed"], "unseen": r["PQ"]["unseen"], "seen": r["PQ"]["seen"], "add_s": r["add_s"]}
                         for r in runs]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="synthetic world (`zsp synth`, a seed not used in training)")
    parser.add_argument("--out", default="results/bankfree.json")
    parser.add_argument("--kit", default=None, help="the kit with a real bank (default: the embedded kit)")
    parser.add_argument("--bank-rows", type=int, default=100, help="generated bank rows per category")
    parser.add_argument("--bank-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3, help="registry seeds")
    parser.add_argument("--val-images", type=int, default=300)
    add_threads_argument(parser)


def _time_one_add(kit_dir: Path, repeats: int = 5) -> dict[str, Any]:
    """Median wall / CPU seconds of adding one name to a fresh registry of the kit (warmed up, writer thread
    at its lower priority, as in the node); ``repeats`` distinct names, each kept."""
    registry = build_registry(load_kit(kit_dir))
    wall, cpu = [], []
    try:
        for i in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            registry.add([f"benchmark category {i}"])
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    finally:
        registry.close()
    return {"median": round(statistics.median(wall), 4), "cpu_median": round(statistics.median(cpu), 4),
            "all": [round(v, 4) for v in wall]}


def run(args: argparse.Namespace) -> int:
    args.threads = apply_threads(args.threads)
    real_kit = resolve_kit(args.kit)
    out = Path(args.out)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bankfree_") as tmp:
        generated_kit = as_if_released(real_kit, Path(tmp) / "kit_generated", bank_rows=args.bank_rows,
                                       seed=args.bank_seed)
        for name, kit in (("real_bank", real_kit), ("generated_bank", generated_kit)):
            bench_out = out.with_name(f"{out.stem}_{name}_vocabulary.json")
            bench = argparse.ArgumentParser()                 # the bench's own defaults for what is not given
            vocabulary.add_arguments(bench)
            vocabulary.run(bench.parse_args(["--data", str(args.data), "--out", str(bench_out), "--kit", str(kit),
                                             "--seeds", str(args.seeds), "--val-images", str(args.val_images),
                                             "--sets", "canonical", "--threads", str(args.threads)]))
            results[name] = {"vocabulary_report": str(bench_out),
                             **summarise(json.loads(bench_out.read_text())), "add_one_s": _time_one_add(kit)}
    real, gen = results["real_bank"], results["generated_bank"]
    gap = real["unseen_pq"]["mean"] - gen["unseen_pq"]["mean"]
    goals = {"unseen_pq_gap": {"value": gap, "goal": f"<= {GOALS['unseen_pq_gap_max']}",
                               "met": gap <= GOALS["unseen_pq_gap_max"]},
             "seen_drop_generated": {"value": gen["seen_drop"]["mean"], "goal": f"<= {GOALS['seen_drop_max']}",
                                     "met": gen["seen_drop"]["mean"] <= GOALS["seen_drop_max"]},
             "add_s_generated": {"value": gen["add_one_s"]["median"], "goal": f"<= {GOALS['add_s_max']} (one name)",
                                 "met": gen["add_one_s"]["median"] <= GOALS["add_s_max"]}}
    report = {"study": "bankfree", "world": args.data, "val_images": args.val_images, "seeds": args.seeds,
              "bank_rows": args.bank_rows, "real_kit": str(real_kit), "results": results, "goals": goals,
              "refit": {"note": "figures taken with zsp_ros/runtime/registry.py as it was at this git revision"},
              "provenance": provenance()}
    write_json(out, report)
    for name, r in results.items():
        print(f"{name:<15} unseen PQ {r['unseen_pq']['mean']:.1f} ± {r['unseen_pq']['std']:.1f}, seen drop "
              f"{r['seen_drop']['mean']:.1f}, add 11 names {r['add_s']['mean']:.2f} s, one name "
              f"{r['add_one_s']['median']:.2f} s")
    print(f"goals: {json.dumps({k: v['met'] for k, v in goals.items()})}; wrote {out}")
    return 0
