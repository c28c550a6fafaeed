"""Aggregation and Markdown for `python -m experiments zeroshot`: mean ± std over seeds, Table 1, ablation, goals.

Input: per variant, the list over seeds of the flat headline dicts of
`zsp_ros.training.evaluate_head.headline` ({"PQ.seen": 12.3, ..., "mIoU.unseen": ..., "hIoU": ...}).
Std is the sample standard deviation (n - 1); 0 for a single value.
"""
from __future__ import annotations

import math
import statistics
from typing import Any

# (name, description) in the order the tables list them
VARIANT_INFO: dict[str, str] = {
    "seen_only": "classifier retrained on real seen embeddings only (unseen PQ 0 by construction)",
    "gmmn": "GMMN baseline: noise + MLP generator with MMD, no primitives",
    "primitives": "primitive generator (MMD + classification), no alignment, no disentanglement",
    "primitives_alignment": "primitive generator + semantic-visual structure alignment",
    "pading": "full PADing: primitives + alignment + semantic-related/unrelated disentanglement",
    "oracle": "segmenter trained on all categories (`zsp train oracle`), its own head",
    "oracle_head": "head fitted on REAL embeddings of all categories (seen + unseen) from the same frozen "
                   "segmenter over every training image; not the paper's oracle",
}
ABLATION = {  # variant -> (primitive generator, alignment, disentanglement)
    "gmmn": (False, False, False),
    "primitives": (True, False, False),
    "primitives_alignment": (True, True, False),
    "pading": (True, True, True),
}


def mean_std(values: list[float | None]) -> dict[str, Any]:
    """{"mean", "std", "n", "values"}; None entries (undefined metrics) are left out of the statistics."""
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not present:
        return {"mean": None, "std": None, "n": 0, "values": values}
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return {"mean": statistics.fmean(present), "std": std, "n": len(present), "values": values}


def aggregate(per_seed: list[dict[str, float | None]]) -> dict[str, Any]:
    """Nest a variant's per-seed headline dicts as {"PQ": {"seen": mean_std, ...}, ..., "hIoU": mean_std}."""
    keys = sorted({k for row in per_seed for k in row})
    out: dict[str, Any] = {}
    for key in keys:
        stats = mean_std([row.get(key) for row in per_seed])
        if "." in key:
            metric, group = key.split(".", 1)
            out.setdefault(metric, {})[group] = stats
        else:
            out[key] = stats
    return out


def _get(variant: dict[str, Any] | None, metric: str, group: str | None = None) -> float | None:
    if variant is None:
        return None
    node = variant.get(metric)
    if group is not None:
        node = node.get(group) if isinstance(node, dict) else None
    return node.get("mean") if isinstance(node, dict) else None


def goals(variants: dict[str, dict[str, Any]], *, oracle_name: str) -> dict[str, Any]:
    """The benchmark's three goals on the means: PADing unseen PQ >= 2x GMMN's and >= 0.5x the oracle's;
    PADing seen PQ within 3 points of seen_only's."""
    pading_u = _get(variants.get("pading"), "PQ", "unseen")
    gmmn_u = _get(variants.get("gmmn"), "PQ", "unseen")
    oracle_u = _get(variants.get(oracle_name), "PQ", "unseen")
    pading_s = _get(variants.get("pading"), "PQ", "seen")
    seen_s = _get(variants.get("seen_only"), "PQ", "seen")

    def ratio(a: float | None, b: float | None) -> float | None:
        if a is None or b is None:
            return None
        return math.inf if b == 0 and a > 0 else (None if b == 0 else a / b)

    r_gmmn, r_oracle = ratio(pading_u, gmmn_u), ratio(pading_u, oracle_u)
    gap = None if pading_s is None or seen_s is None else seen_s - pading_s
    out = {
        "pading_over_gmmn_unseen_pq": {"value": r_gmmn, "goal": ">= 2", "met": None if r_gmmn is None else r_gmmn >= 2},
        "pading_over_oracle_unseen_pq": {"value": r_oracle, "goal": ">= 0.5", "oracle": oracle_name,
                                         "met": None if r_oracle is None else r_oracle >= 0.5},
        "seen_pq_drop_vs_seen_only": {"value": gap, "goal": "<= 3 points",
                                      "met": None if gap is None else gap <= 3.0},
    }
    out["all_met"] = all(g["met"] is True for g in out.values() if isinstance(g, dict))
    return out


def _fmt(stats: dict[str, Any] | None) -> str:
    if not isinstance(stats, dict) or stats.get("mean") is None:
        return "–"
    return f"{stats['mean']:.1f} ± {stats['std']:.1f}"


def _cell(variant: dict[str, Any], metric: str, group: str | None = None) -> str:
    node = variant.get(metric)
    if group is not None:
        node = node.get(group) if isinstance(node, dict) else None
    return _fmt(node)


def markdown(report: dict[str, Any]) -> str:
    """The Markdown summary: Table 1 layout, ablation, semantic/instance views, goals, provenance."""
    variants: dict[str, Any] = report["variants"]
    ev = report["evaluation"]
    lines = [f"# Zero-shot benchmark on the synthetic world ({ev['split_label']})", "",
             f"{ev['images']} {ev['split_label']} images, {len(report['seeds'])} seeds {report['seeds']}, "
             f"mean ± sample std over seeds; all numbers in percent. Segmenter `{report['segmenter']['sha256'][:12]}` "
             f"(frozen in every variant), text encoder `{report['text_encoder']}`, panoptic thresholds "
             f"object {ev.get('object_mask_threshold')} / overlap {ev.get('overlap_threshold')}. "
             f"Oracle used: **{report['oracle']['used']}** — {report['oracle']['description']}", "",
             "## Table 1 layout: zero-shot panoptic segmentation", "",
             "| Method | PQ^s | SQ^s | RQ^s | PQ^u | SQ^u | RQ^u | PQ^hm |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("seen_only", "gmmn", "primitives", "primitives_alignment", "pading", "oracle", "oracle_head"):
        if name in variants:
            v = variants[name]
            lines.append(f"| {name} | " + " | ".join(_cell(v, m, g) for g in ("seen", "unseen")
                                                      for m in ("PQ", "SQ", "RQ")) + f" | {_cell(v, 'PQ', 'hm')} |")
    lines += ["", "## Ablation (paper's ablation layout)", "",
              "| Variant | Primitive generator | Alignment | Disentanglement | PQ^s | PQ^u | PQ^hm |",
              "|---|---|---|---|---|---|---|"]
    for name, flags in ABLATION.items():
        if name in variants:
            v = variants[name]
            marks = " | ".join("✓" if f else "" for f in flags)
            lines.append(f"| {name} | {marks} | {_cell(v, 'PQ', 'seen')} | {_cell(v, 'PQ', 'unseen')} | "
                         f"{_cell(v, 'PQ', 'hm')} |")
    extra = [n for n, v in variants.items() if "mIoU" in v or "mAP50" in v]
    if extra:
        lines += ["", "## Semantic and instance views (same panoptic segmenter, different post-processing)", "",
                  "| Method | mIoU^s | mIoU^u | hIoU | mAP50^s | mAP50^u | mAP50^hm | R@100^s | R@100^u | R@100^hm |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name in extra:
            v = variants[name]
            cells = [_cell(v, "mIoU", "seen"), _cell(v, "mIoU", "unseen"), _fmt(v.get("hIoU"))]
            cells += [_cell(v, m, g) for m in ("mAP50", "recall100") for g in ("seen", "unseen", "hm")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    g = report.get("goals") or {}
    if g:
        def show(item: dict[str, Any]) -> str:
            value = item.get("value")
            text = "n/a" if value is None else ("inf" if value == math.inf else f"{value:.2f}")
            met = {True: "met", False: "NOT met", None: "n/a"}[item.get("met")]
            return f"{text} (goal {item['goal']}: {met})"
        lines += ["", "## Goals", "",
                  f"- PADing unseen PQ / GMMN unseen PQ: {show(g['pading_over_gmmn_unseen_pq'])}",
                  f"- PADing unseen PQ / {g['pading_over_oracle_unseen_pq']['oracle']} unseen PQ: "
                  f"{show(g['pading_over_oracle_unseen_pq'])}",
                  f"- seen PQ drop of PADing vs seen_only (points): {show(g['seen_pq_drop_vs_seen_only'])}"]
    lines += ["", "## Variants", ""] + [f"- `{n}`: {VARIANT_INFO.get(n, '')}" for n in variants]
    prov = report["provenance"]
    machine = prov.get("machine", {})
    timing = report.get("timing", {})
    lines += ["", "## Provenance", "",
              f"- command: `{' '.join(str(c) for c in prov.get('command', []))}`",
              f"- machine: {machine.get('cpu')} × {machine.get('cpu_count')} cores, {machine.get('memory_gb')} GB, "
              f"torch threads {report.get('threads')}; git {prov.get('git')}",
              f"- time: this invocation {report['seconds']:.0f} s; stage 2-3 training summed over the runs "
              f"{timing.get('stage23_training_s_sum')} s; feature bank extraction {timing.get('bank_extraction_s')} s; "
              f"segmenter over the evaluation split {timing.get('segmenter_over_eval_split_s')} s",
              f"- PADing config `{report['config_path']}`, overrides {report['config_overrides'] or 'none'}",
              f"- segmenter `{report['segmenter']['weights']}` (sha256 {report['segmenter']['sha256']})",
              f"- feature bank: {report['bank']['rows']} rows from {report['bank']['images']} ZSP training images"]
    return "\n".join(lines) + "\n"
