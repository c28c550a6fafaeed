"""`python -m experiments zeroshot`: PADing against its baselines on one frozen segmenter, over seeds.

    python -m experiments zeroshot --data WORLD --segmenter RUN --seeds 3 --out results/
        [--config config/pading_synth.yaml] [--set losses.structure_weight=1e-3 ...]
        [--variants seen_only gmmn primitives primitives_alignment pading oracle]
        [--oracle ORACLE_RUN] [--text-encoder attributes] [--tune [--tune-data DIR]]

Every variant shares the segmenter (stage 1, frozen), its feature bank and the evaluation
images; only the classifier head differs:

- ``seen_only``: a head fitted on the real seen embeddings (zsp_ros/training/real_head.py);
- ``gmmn``, ``primitives``, ``primitives_alignment``, ``pading``: `zsp train pading --variant ...`
  (stages 2-3) per seed, its final head;
- ``oracle``: with ``--oracle RUN``, the segmenter trained on all categories (`zsp train oracle`)
  with its own head on its own outputs; without it, ``oracle_head``: a head fitted on real
  embeddings of all categories from the same frozen segmenter (zsp_ros/training/real_head.py). The
  JSON and Markdown say which was used.

Work files go to ``--work`` (default RUN_DIR/zeroshot/): the feature banks and the evaluation
cache (keyed by the segmenter's sha256, reused across invocations) and the stage 2-3 runs
(``runs/<text encoder>/<config hash>/<variant>_seed<k>/``; a finished run is reused, an
interrupted one resumes). The segmenter runs once over the evaluation split
(zsp_ros/training/val_cache.py); each head is then scored by zsp_ros/training/evaluate_head.py.

``--tune`` evaluates on a tuning split instead of val: the validation images of a second world
rendered with another seed (``--tune-data``, generated under WORK/tune_world if absent), so
that nothing is chosen on the validation split. Output: OUT/zeroshot.json and OUT/zeroshot.md
(``zeroshot_tune``, ``zeroshot_<encoder>``, ``zeroshot_<tag>`` variants of the name for
``--tune``, a non-default ``--text-encoder`` and ``--tag``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from experiments.zeroshot_report import VARIANT_INFO, aggregate, goals, markdown
from zsp_ros.data.categories import read_split
from zsp_ros.data.coco_format import load_json
from zsp_ros.data.synth_writer import generate_world
from zsp_ros.inference.postprocess import DEFAULT_OBJECT_MASK_THRESHOLD, DEFAULT_OVERLAP_THRESHOLD
from zsp_ros.training.evaluate_head import HeadEvaluator, headline, load_head
from zsp_ros.training.extract_bank import ensure_bank
from zsp_ros.training.feature_bank import load_feature_bank
from zsp_ros.training.pading_config import load_config, validate_config
from zsp_ros.training.real_head import fit_real_head
from zsp_ros.training.segmenter_run import load_segmenter, resolve_segmenter
from zsp_ros.training.train_pading import train_pading
from zsp_ros.training.val_cache import ensure_val_cache
from zsp_ros.utils.provenance import provenance, write_json

VARIANTS = ("seen_only", "gmmn", "primitives", "primitives_alignment", "pading", "oracle")
PADING_VARIANTS = ("gmmn", "primitives", "primitives_alignment", "pading")
EXTRA_VIEW_VARIANTS = ("gmmn", "pading")      # also scored on the semantic and instance views


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="world directory (zsp synth)")
    parser.add_argument("--segmenter", required=True, help="stage-1 run directory (or a weights file of it)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--out", default="results", help="output folder for zeroshot.json / zeroshot.md")
    parser.add_argument("--config", default="config/pading_synth.yaml", help="PADing config (stages 2-3)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (YAML syntax), e.g. losses.structure_weight=1e-3")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--oracle", default=None,
                        help="segmenter run trained on all categories (zsp train oracle); without it the "
                             "oracle_head upper bound is used")
    parser.add_argument("--text-encoder", default=None, help="override text_encoder.name (e.g. attributes)")
    parser.add_argument("--steps", type=int, default=None, help="override optim.steps")
    parser.add_argument("--work", default=None, help="work folder (default RUN_DIR/zeroshot)")
    parser.add_argument("--tune", action="store_true", help="evaluate on the tuning split, not val")
    parser.add_argument("--tune-data", default=None, help="tuning world (default WORK/tune_world, generated)")
    parser.add_argument("--tune-images", type=int, default=300, help="images of a generated tuning split")
    parser.add_argument("--object-mask-threshold", type=float, default=DEFAULT_OBJECT_MASK_THRESHOLD,
                        help="panoptic inference: minimum class probability of a kept query "
                             f"(Mask2Former {DEFAULT_OBJECT_MASK_THRESHOLD})")
    parser.add_argument("--overlap-threshold", type=float, default=DEFAULT_OVERLAP_THRESHOLD,
                        help="panoptic inference: minimum kept fraction of a query's mask "
                             f"(Mask2Former {DEFAULT_OVERLAP_THRESHOLD})")
    parser.add_argument("--no-extra-views", action="store_true", help="panoptic only (skip semantic/instance)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only (smoke runs)")
    parser.add_argument("--tag", default=None, help="suffix of the output file names")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: unchanged)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    import copy

    import yaml

    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, value = item.partition("=")
        path = key.split(".")
        if not sep or len(path) < 2:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE")
        node = cfg
        for part in path[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise SystemExit(f"--set {item!r}: the config has no {'.'.join(path[:-1])!r}")
            node = node[part]
        if path[-1] not in node:
            raise SystemExit(f"--set {item!r}: the config has no key {key!r}")
        node[path[-1]] = yaml.safe_load(value)
    return cfg


def _tuning_world(args: argparse.Namespace, work: Path) -> Path:
    """The tuning world: --tune-data, or a world rendered with another seed under WORK/tune_world."""

    if args.tune_data:
        return Path(args.tune_data)
    root = work / "tune_world"
    split = read_split(Path(args.data) / "split.json")
    if not (root / "split.json").is_file():
        info = load_json(Path(args.data) / "annotations" / "panoptic_val.json", what="panoptic file")
        seed = int(info.get("info", {}).get("seed", 0)) + 1
        size = (int(info["images"][0]["height"]), int(info["images"][0]["width"]))
        unseen = [c["name"] for c in split["categories"] if not c["seen"]]
        print(f"generating the tuning world {root} ({args.tune_images} images, seed {seed})")
        generate_world(root, images=1, val_images=args.tune_images, size=size, seed=seed, unseen=unseen,
                       workers=1, overwrite=True)
    tune = read_split(root / "split.json")
    if [(c["id"], c["seen"]) for c in tune["categories"]] != [(c["id"], c["seen"]) for c in split["categories"]]:
        raise SystemExit(f"{root}/split.json does not have the categories and seen/unseen split of {args.data}")
    return root


def _pading_run(*, variant: str, seed: int, cfg: dict[str, Any], cfg_hash: str, bank: Path, segmenter: Path,
                work: Path, encoder_tag: str, text_encoder: str | None, progress: bool,
                device: str) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse / resume) one stage 2-3 run; returns (run dir, its config.json summary)."""

    out = work / "runs" / encoder_tag / cfg_hash / f"{variant}_seed{seed}"
    summary_file = out / "config.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if (summary.get("metrics", {}).get("steps") == cfg["optim"]["steps"] and summary.get("config") == cfg
                and (out / "head.safetensors").is_file()):
            return out, summary
    summary = train_pading(bank_path=bank, segmenter=segmenter, config=cfg, out_dir=out, variant=variant,
                           seed=seed, device=device, text_encoder=text_encoder, progress=progress,
                           tensorboard=False, command=sys.argv)
    return out, summary


def run(args: argparse.Namespace) -> int:
    import torch


    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    progress = not args.quiet
    seg = resolve_segmenter(args.segmenter)
    work = Path(args.work) if args.work else seg.run_dir / "zeroshot"
    work.mkdir(parents=True, exist_ok=True)
    cfg = _apply_overrides(load_config(args.config), args.overrides)
    if args.steps is not None:
        cfg["optim"]["steps"] = int(args.steps)
    validate_config(cfg, source=args.config)
    cfg_hash = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    encoder_tag = (args.text_encoder or cfg["text_encoder"]["name"]).replace("/", "_")
    split = read_split(Path(args.data) / "split.json")
    seen_cats = [c for c in split["categories"] if c["seen"]]

    bank_path = ensure_bank(segmenter=seg, data_dir=args.data, out=work / f"bank_zsp_{seg.short_hash}.safetensors",
                            device=args.device, progress=progress)
    bank = load_feature_bank(bank_path, segmenter_hash=seg.sha256)
    eval_data = _tuning_world(args, work) if args.tune else Path(args.data)
    split_name = "tune" if args.tune else "val"
    cache = ensure_val_cache(segmenter=seg, data_dir=eval_data, split="val", device=args.device,
                             out=work / f"valcache_{split_name}_{seg.short_hash}.safetensors",
                             progress=progress)
    thresholds = {"object_mask_threshold": args.object_mask_threshold, "overlap_threshold": args.overlap_threshold}
    evaluator = HeadEvaluator(cache, **thresholds)

    oracle_name = "oracle" if args.oracle else "oracle_head"
    per_seed: dict[str, list[dict[str, Any]]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    oracle_eval = None
    full_bank = None
    for seed in range(args.seeds):
        for variant in args.variants:
            name = oracle_name if variant == "oracle" else variant
            views = ("panoptic",) if args.no_extra_views or variant not in EXTRA_VIEW_VARIANTS \
                else ("panoptic", "semantic", "instance")
            t0 = time.perf_counter()
            record: dict[str, Any] = {"seed": seed}
            if variant == "seen_only":
                head, info = fit_real_head(bank, seen_cats, final_head=cfg["final_head"], seed=seed,
                                           no_object_weight=cfg["class_weights"]["no_object"])
                weight, bias, cats, ev = head.weight, head.bias, seen_cats, evaluator
                record.update(info)
            elif variant in PADING_VARIANTS:
                out, summary = _pading_run(variant=variant, seed=seed, cfg=cfg, cfg_hash=cfg_hash, bank=bank_path,
                                           segmenter=seg.weights, work=work, encoder_tag=encoder_tag,
                                           text_encoder=args.text_encoder, progress=progress, device=args.device)
                weight, bias = load_head(out / "head.safetensors")
                cats, ev = summary["categories"], evaluator
                record.update(run=str(out), text_encoder=summary["text_encoder"],
                              train_metrics={k: v for k, v in summary["metrics"].items()
                                             if k.startswith(("final_head", "steps", "train_seconds"))})
            elif args.oracle:          # the segmenter trained on all categories, with its own head
                if oracle_eval is None:
                    oracle_model, oracle_run = load_segmenter(args.oracle)
                    oracle_cache = ensure_val_cache(segmenter=oracle_run, data_dir=eval_data, split="val",
                                                    out=work / f"valcache_{split_name}_oracle_"
                                                              f"{oracle_run.short_hash}.safetensors",
                                                    device=args.device, progress=progress)
                    oracle_eval = (HeadEvaluator(oracle_cache, **thresholds), oracle_model.class_head.weight.detach(),
                                   oracle_model.class_head.bias.detach(), oracle_run)
                ev, weight, bias, oracle_run = oracle_eval
                cats = oracle_run.categories
                record.update(oracle_run=str(oracle_run.weights), note="one trained oracle: identical for every seed")
            else:                      # oracle_head: real embeddings of every category, same segmenter
                if full_bank is None:
                    full_path = ensure_bank(segmenter=seg, data_dir=args.data, protocol="supervised",
                                            out=work / f"bank_all_{seg.short_hash}.safetensors",
                                            device=args.device, progress=progress)
                    full_bank = load_feature_bank(full_path, segmenter_hash=seg.sha256)
                head, info = fit_real_head(full_bank, split["categories"], final_head=cfg["final_head"], seed=seed,
                                           no_object_weight=cfg["class_weights"]["no_object"])
                weight, bias, cats, ev = head.weight, head.bias, split["categories"], evaluator
                record.update(info)
            metrics = ev.evaluate(weight, bias, cats, views=views, limit=args.limit)
            record.update(seconds=round(time.perf_counter() - t0, 1), eval_seconds=metrics["seconds"],
                          headline=headline(metrics),
                          unseen_per_category={c["name"]: c["PQ"] for c in metrics["panoptic"]["per_category"]
                                               if not c["seen"]})
            per_seed.setdefault(name, []).append(record["headline"])
            runs.setdefault(name, []).append(record)
            pq = metrics["panoptic"]["PQ"]
            print(f"[seed {seed}] {name:<21} PQ seen {pq['seen']:.1f}  unseen {pq['unseen']:.1f}  "
                  f"hm {pq['hm']:.1f}  ({record['seconds']:.0f} s)", flush=True)

    variants = {name: aggregate(rows) for name, rows in per_seed.items()}
    report = {
        "benchmark": "zeroshot",
        "variants": variants,
        "oracle": {"used": oracle_name, "description": VARIANT_INFO[oracle_name]},
        "goals": goals(variants, oracle_name=oracle_name),
        "seeds": list(range(args.seeds)),
        "evaluation": {"data": str(Path(eval_data).resolve()), "split": "val",
                       "split_label": "tuning" if args.tune else "validation",
                       "images": len(cache) if args.limit is None else min(args.limit, len(cache)),
                       "segmenter_cache_seconds": cache.extra.get("seconds"), **thresholds,
                       "views": "semantic and instance views are computed from the same panoptic segmenter "
                                "(the paper trains separate ZSS / ZSI models)"},
        "segmenter": {"weights": str(seg.weights.resolve()), "sha256": seg.sha256},
        "bank": {"path": str(bank_path.resolve()), "rows": len(bank), "images": bank.extra.get("num_images"),
                 "matched_rows": int((bank.category_ids > 0).sum())},
        "text_encoder": next((r["text_encoder"]["id"] for n in PADING_VARIANTS for r in runs.get(n, [])),
                             encoder_tag),
        "config_path": str(args.config), "config_overrides": args.overrides, "config": cfg,
        "runs": runs, "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 1),
        "timing": {
            "note": "seconds = this invocation; runs and caches reused from earlier invocations keep the times "
                    "recorded when they were made (below)",
            "bank_extraction_s": bank.extra.get("seconds"),
            "segmenter_over_eval_split_s": cache.extra.get("seconds"),
            "stage23_training_s_sum": round(sum(
                r.get("train_metrics", {}).get("train_seconds_this_run", 0.0)
                + r.get("train_metrics", {}).get("final_head_seconds", 0.0)
                for rows in runs.values() for r in rows), 1)},
        "provenance": provenance(),
    }
    stem = "zeroshot" + ("_tune" if args.tune else "") + (f"_{encoder_tag}" if args.text_encoder else "") \
        + (f"_{args.tag}" if args.tag else "")
    out_dir = Path(args.out)
    write_json(out_dir / f"{stem}.json", report)
    (out_dir / f"{stem}.md").write_text(markdown(report))
    print(f"wrote {out_dir / (stem + '.json')} and {out_dir / (stem + '.md')} in {report['seconds']:.0f} s")
    return 0
