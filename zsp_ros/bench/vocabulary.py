"""`zsp bench vocabulary --data WORLD --out results/vocabulary.json`: what adding by name gives for the
words a user might type.

For each *name set* and registry seed, a FRESH registry is built from the kit, the set's names are
added through `CategoryRegistry.add` (the path the add service takes), and the world's validation
split is segmented with the new head. Name sets come from a data file (default
``config/vocabulary/unseen_paraphrases.json``), every set in a development and a held-out part:

- ``canonical``: the world's unseen categories under their own names (the reference);
- paraphrase sets (``colour_synonyms``, ``shape_synonyms``, ``everyday``, ``spelling``): every unseen
  category under the set's phrase for it; a phrase's segments count as its category's;
- absent sets: the canonical names plus names of things that never occur in the world; segments
  carrying an absent name are counted (share of predicted segments and of predicted pixels) and,
  in PQ, are predictions of no world category (they miss the objects they cover, and count as
  false positives of no world category).

Reported per set and seed: PQ (panopticapi definition, `pq_single_image` + `summarize_panoptic`) for
all / seen / unseen categories and per category, the absent shares, the add time; per set over
seeds: mean ± std, the ratio of unseen PQ to canonical, the paired difference to canonical (same
seed), and the seen drop against the kit's seen-only head (before any add).

The network runs ONCE per image; its raw outputs (mask logits [Q,h,w], query embeddings [Q,E],
geometry) are kept in memory and every (set, seed) re-runs only the head and the post-processing
(`Segmenter.postprocess` with the registry's snapshot), so the add path is what is measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zsp_ros.bench.vocabulary_names import (
    ABSENT_ID,
    FAMILIES,
    NAMES_FILE,
    NameSet,
    absent_shares,
    default_names_file,
    ground_truth_ids,
    load_name_sets,
)
from zsp_ros.bench.vocabulary_report import markdown, summarise
from zsp_ros.data.categories import read_split
from zsp_ros.data.coco_format import load_json, panoptic_folder, read_panoptic_png, read_png
from zsp_ros.evaluation.panoptic_quality import PQStat, pq_single_image, summarize_panoptic
from zsp_ros.inference.preprocess import Geometry, preprocess
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.runtime.category_requests import CategoryError
from zsp_ros.runtime.registry import HeadSnapshot, build_registry, kit_phrasing_settings
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.semantics.build import with_phrasing
from zsp_ros.semantics.phrasing_encoder import PhrasingEncoder
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads
from zsp_ros.utils.provenance import provenance, write_json


@dataclass(frozen=True)
class CachedFrame:
    """The network's raw output for one image: mask logits float32 [Q,h,w], query embeddings float32 [Q,E]."""
    image_id: int
    mask_logits: torch.Tensor
    query_embeds: torch.Tensor
    geometry: Geometry


@dataclass(frozen=True)
class GroundTruth:
    """One image's panoptic ground truth: segment ids int [H,W] (0 void) and its segments_info."""
    image_id: int
    ids: np.ndarray
    segments: list[dict[str, Any]]


def forward_world(segmenter: Segmenter, data: Path, images: Sequence[Mapping[str, Any]]) -> list[CachedFrame]:
    """Run the network once per validation image (batch 1, the runtime's pre-processing)."""
    device = getattr(segmenter.backend, "device", "cpu")
    frames = []
    for im in images:
        image = read_png(data / "images" / "val" / im["file_name"], what="image", image=im["id"], mode="RGB")
        batch, geometry = preprocess(image, short_side=segmenter.short_side, max_long_side=segmenter.max_long_side,
                                     size_divisibility=segmenter.size_divisibility, fixed_hw=segmenter.fixed_hw,
                                     device=device)
        masks, embeds = segmenter.backend.infer(batch)
        frames.append(CachedFrame(image_id=int(im["id"]), mask_logits=torch.as_tensor(masks)[0].float(),
                                  query_embeds=torch.as_tensor(embeds)[0].float(), geometry=geometry))
    return frames


def evaluate_snapshot(segmenter: Segmenter, snapshot: HeadSnapshot, frames: Sequence[CachedFrame],
                      truths: Sequence[GroundTruth], id_map: Mapping[int, int], split: Mapping[str, Any],
                      gt_categories: dict[int, dict], absent_set: bool = False) -> dict[str, Any]:
    """Head + post-processing of every cached frame with ``snapshot``; PQ against the world's ids
    (``id_map``: registry id -> world id or ABSENT_ID) and the absent shares (also for an ``absent_set``
    whose absent names were all refused: then they claim nothing, shares 0; else None without absent ids)."""
    stat = PQStat()
    known = set(gt_categories) | {ABSENT_ID}
    records: list[tuple[int, int]] = []
    for frame, gt in zip(frames, truths):
        panoptic, segments, _ = segmenter.postprocess(
            frame.mask_logits, frame.query_embeds, frame.geometry, snapshot,
            object_mask_threshold=segmenter.object_mask_threshold, overlap_threshold=segmenter.overlap_threshold,
            semantic=False)
        pred = [{"id": s.id, "category_id": id_map[s.category_id]} for s in segments]
        stat += pq_single_image(gt.ids, panoptic, gt.segments, pred, known, image_id=gt.image_id)
        records += [(s.category_id, s.area) for s in segments]
    summary = summarize_panoptic(stat, gt_categories, dict(split))
    absent = [cid for cid, wid in id_map.items() if wid == ABSENT_ID]
    names = {c.id: c.name for c in snapshot.categories}
    shares = absent_shares(records, absent)
    shares["per_name"] = {names[cid]: v for cid, v in shares.pop("per_category").items()}
    return {"PQ": {k: summary["PQ"][k] for k in ("all", "seen", "unseen", "things", "stuff")},
            "SQ_unseen": summary["SQ"]["unseen"], "RQ_unseen": summary["RQ"]["unseen"],
            "per_category": {r["name"]: {"PQ": r["PQ"], "TP": r["TP"], "FP": r["FP"], "FN": r["FN"]}
                             for r in summary["per_category"]},
            "absent": shares if absent or absent_set else None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="synthetic world folder (`zsp synth`); its val split is used")
    parser.add_argument("--out", default="results/vocabulary.json", help="JSON to write (and a .md next to it)")
    parser.add_argument("--kit", default=None, help="model kit (default: the embedded kit)")
    parser.add_argument("--names", default=None, help=f"name-sets file (default: config/vocabulary/{NAMES_FILE})")
    parser.add_argument("--seeds", type=int, default=3, help="registry seeds 0..N-1 (default 3)")
    parser.add_argument("--val-images", type=int, default=None, help="use the first N validation images")
    parser.add_argument("--sets", nargs="+", default=None,
                        help=f"families ({', '.join(FAMILIES)}) or keys like colour_synonyms/dev (default: all)")
    parser.add_argument("--phrasing", choices=("kit", "off"), default="kit",
                        help="rewrite names toward the kit's words before encoding (zsp_ros/semantics/phrasing.py): "
                             "'kit' = the manifest's text_encoder.kwargs.phrasing, else the kit's category names with "
                             "config/phrasing.yaml (default); 'off' = the plain text encoder")
    parser.add_argument("--device", default="cpu")
    add_threads_argument(parser)


def _selected(sets: list[NameSet], wanted: Sequence[str] | None) -> list[NameSet]:
    if not wanted:
        return sets
    known = {s.key for s in sets} | {s.family for s in sets}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"unknown name sets {unknown}; choose from {sorted(known)}")
    return [s for s in sets if s.key == "canonical" or s.key in wanted or s.family in wanted]


def _ground_truth(data: Path, images: Sequence[Mapping[str, Any]], gt: Mapping[str, Any]) -> list[GroundTruth]:
    folder = panoptic_folder(data / "annotations" / "panoptic_val.json", dict(gt))
    by_image = {a["image_id"]: a for a in gt["annotations"]}
    out = []
    for im in images:
        ann = by_image[im["id"]]
        out.append(GroundTruth(image_id=int(im["id"]), ids=read_panoptic_png(folder / ann["file_name"], image=im["id"]),
                               segments=ann["segments_info"]))
    return out


def _phrasing_encoder(encoder: Any, kit: Any, mode: str) -> Any:
    """The text encoder the add path uses: with mode "kit", the kit's encoder wrapped by the phrasing
    rewrite (the manifest's ``text_encoder.kwargs.phrasing`` when it has a vocabulary, else the kit's
    category names as the vocabulary); with "off", the plain encoder."""
    base = getattr(encoder, "base", encoder)
    if mode == "off":
        return base
    return with_phrasing(base, kit_phrasing_settings(kit))


def add_as_a_user(registry: Any, names: Sequence[str], isthing: Sequence[bool]) -> dict[str, str]:
    """Add ``names`` as a user would: when the registry refuses particular names (`CategoryError.refused`:
    read as a known category, no word the kit knows), add the others in a second request. Returns the
    refused names with the reasons; a refusal not tied to names is raised."""
    try:
        registry.add(list(names), isthing=list(isthing))
        return {}
    except CategoryError as exc:
        if not exc.refused:
            raise
        refused = exc.refused
    rest = [(n, t) for n, t in zip(names, isthing) if n not in refused]
    if rest:
        registry.add([n for n, _ in rest], isthing=[t for _, t in rest])
    return refused


def _interpreted(encoder: Any, names: Sequence[str]) -> dict[str, str] | None:
    """Name -> the text the encoder embeds, for the names it rewrites (None without a phrasing encoder)."""
    if not isinstance(encoder, PhrasingEncoder):
        return None
    return {i.name: i.text for i in encoder.interpret(list(names)) if i.changed}


def _phrasing_settings(encoder: Any) -> dict[str, Any] | None:
    if not isinstance(encoder, PhrasingEncoder):
        return None
    return {**dataclasses.asdict(encoder.config), "vocabulary_words": len(encoder.normaliser.words)}


def run(args: argparse.Namespace) -> int:
    args.threads = apply_threads(args.threads)
    t_start, cpu_start, load_start = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    data = Path(args.data)
    split = read_split(data / "split.json")
    gt = load_json(data / "annotations" / "panoptic_val.json", what="panoptic annotation file")
    images = gt["images"][:args.val_images] if args.val_images else gt["images"]
    names_path = Path(args.names) if args.names else default_names_file()
    sets = _selected(load_name_sets(json.loads(names_path.read_text()), split), args.sets)
    world_ids = {c["name"].casefold(): c["id"] for c in split["categories"]}
    gt_categories = {int(c["id"]): c for c in gt["categories"]}
    kit_dir = resolve_kit(args.kit)
    seeds = list(range(args.seeds))

    with Segmenter.from_kit(kit_dir, device=args.device, semantic=False) as segmenter:
        kit, encoder = segmenter.registry.kit, segmenter.registry.text_encoder
        encoder = _phrasing_encoder(encoder, kit, args.phrasing)
        t0 = time.perf_counter()
        frames = forward_world(segmenter, data, images)
        forward_s = time.perf_counter() - t0
        truths = _ground_truth(data, images, gt)

        def evaluate(snapshot: HeadSnapshot, truth: Mapping[str, int | None], absent_set: bool = False
                     ) -> dict[str, Any]:
            id_map = ground_truth_ids(snapshot.categories, truth, world_ids)
            return evaluate_snapshot(segmenter, snapshot, frames, truths, id_map, split, gt_categories, absent_set)

        seen_only = evaluate(segmenter.registry.snapshot, {})
        results: dict[str, Any] = {}
        for name_set in sets:
            entry: dict[str, Any] = {"family": name_set.family, "part": name_set.part, "kind": name_set.kind,
                                     "names": dict(zip(name_set.names, (name_set.truth[n.casefold()]
                                                                        for n in name_set.names))),
                                     "interpreted": _interpreted(encoder, name_set.names), "runs": []}
            for seed in seeds:
                registry = build_registry(kit, text_encoder=encoder, seed=seed, warm_up=False)
                try:
                    refused = add_as_a_user(registry, name_set.names, name_set.isthing)
                except CategoryError as exc:          # e.g. a word the kit's text encoder cannot embed
                    entry["error"] = str(exc)
                    break
                finally:
                    registry.close()
                entry["refused"] = refused
                run_result = evaluate(registry.snapshot, name_set.truth, absent_set=name_set.kind == "absent")
                add_ms = registry.last_timings_ms.get("total") if refused.keys() != set(name_set.names) else None
                entry["runs"].append({"seed": seed, "add_s": None if add_ms is None else round(add_ms / 1e3, 3),
                                      **run_result})
                print(f"{name_set.key:<24} seed {seed}: unseen PQ {run_result['PQ']['unseen']:.1f}, seen PQ "
                      f"{run_result['PQ']['seen']:.1f}", flush=True)
            results[name_set.key] = entry
        canonical_runs = results["canonical"]["runs"]
        for key, entry in results.items():
            if entry["runs"]:
                entry["summary"] = summarise(entry["runs"], None if key == "canonical" else canonical_runs,
                                             seen_only["PQ"]["seen"])
        unseen_names = {c["name"] for c in split["categories"] if not c["seen"]}
        for entry in results.values():         # per seed: the unseen categories (all of them in the summary)
            for r in entry["runs"]:
                r["per_category"] = {n: v for n, v in r["per_category"].items() if n in unseen_names}
        report = {
            "benchmark": "vocabulary",
            "world": {"path": str(data), "seed": (gt.get("info") or {}).get("seed"), "val_images": len(images),
                      "unseen": [c["name"] for c in split["categories"] if not c["seen"]]},
            "kit": {"path": str(kit_dir), "sha256": kit.sha256, "text_encoder": kit.text_encoder_id,
                    "object_mask_threshold": segmenter.object_mask_threshold,
                    "overlap_threshold": segmenter.overlap_threshold},
            "phrasing": _phrasing_settings(encoder), "names_file": str(names_path), "seeds": seeds, "threads": args.threads, "device": args.device,
            "seen_only": seen_only, "sets": results,
            "timing": {"forward_s": round(forward_s, 2), "total_s": round(time.perf_counter() - t_start, 2),
                       "cpu_s": round(time.process_time() - cpu_start, 2),
                       "load_1min": {"start": load_start, "end": os.getloadavg()[0]}},
            "provenance": provenance(),
        }
    out = Path(args.out)
    write_json(out, report)
    out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')} in {report['timing']['total_s']:.0f} s")
    return 0


