"""The vocabulary benchmark's aggregation (mean ± std over registry seeds, ratios to canonical) and its Markdown table."""
from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    """{mean, std (sample, 0 for one value), n, values} over the values that are not None."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "n": 0, "values": list(values)}
    return {"mean": statistics.fmean(present), "std": statistics.stdev(present) if len(present) > 1 else 0.0,
            "n": len(present), "values": list(values)}


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summarise(runs: list[dict[str, Any]], canonical: list[dict[str, Any]] | None,
              seen_only_pq: float | None) -> dict[str, Any]:
    """Mean ± std over seeds of one set's runs; paired differences to the canonical runs (same seeds)."""
    unseen = [r["PQ"]["unseen"] for r in runs]
    out: dict[str, Any] = {"unseen_pq": mean_std(unseen), "seen_pq": mean_std([r["PQ"]["seen"] for r in runs]),
                           "all_pq": mean_std([r["PQ"]["all"] for r in runs]),
                           "seen_drop": mean_std([_minus(seen_only_pq, r["PQ"]["seen"]) for r in runs])}
    if canonical:
        by_seed = {r["seed"]: r for r in canonical}
        for group in ("unseen", "seen"):
            out[f"{group}_pq_minus_canonical"] = mean_std([_minus(r["PQ"][group], by_seed[r["seed"]]["PQ"][group])
                                                           for r in runs])
        base = mean_std([r["PQ"]["unseen"] for r in canonical])["mean"]
        mine = out["unseen_pq"]["mean"]
        out["ratio_to_canonical"] = mine / base if base else None
    if runs and runs[0]["absent"] is not None:
        out["absent_segment_share"] = mean_std([r["absent"]["segment_share"] for r in runs])
        out["absent_pixel_share"] = mean_std([r["absent"]["pixel_share"] for r in runs])
        out["absent_names_firing"] = mean_std([sum(v["segments"] > 0 for v in r["absent"]["per_name"].values())
                                               for r in runs])
    names = list(runs[0]["per_category"]) if runs else []
    out["per_category_pq"] = {n: mean_std([r["per_category"][n]["PQ"] for r in runs])["mean"] for n in names}
    return out


def _ms(stats: Mapping[str, Any] | None, scale: float = 1.0, digits: int = 1) -> str:
    if not stats or stats.get("mean") is None:
        return "—"
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"


def markdown(report: Mapping[str, Any]) -> str:
    """The report's tables: one row per name set, then unseen PQ per category (mean over seeds)."""
    world, kit, timing = report["world"], report["kit"], report["timing"]
    machine = report["provenance"]["machine"]
    lines = [
        "# Vocabulary benchmark (`zsp bench vocabulary`)", "",
        f"World `{world['path']}` (seed {world['seed']}, {world['val_images']} val images); kit sha256 "
        f"`{kit['sha256'][:12]}` ({kit['text_encoder']}, object mask threshold {kit['object_mask_threshold']}); "
        f"registry seeds {report['seeds']}; names `{report['names_file']}`. Mean ± std over seeds (PQ in %). "
        f"Seen-only head (before adding): seen PQ {report['seen_only']['PQ']['seen']:.1f}.", "",
        f"CPU {machine.get('cpu')} ({machine.get('cpu_count')} cores, shared), {report['threads']} torch thread(s); "
        f"network once over the images {timing['forward_s']:.0f} s; total wall {timing['total_s']:.0f} s, "
        f"CPU time {timing.get('cpu_s', 0):.0f} s (1-min load {timing['load_1min']['start']:.1f} at start, "
        f"{timing['load_1min']['end']:.1f} at end).", "",
        "The held-out part of every set is never used to choose anything; it is the figure that counts. "
        "A paraphrase's segments are scored as the category it paraphrases. Segments carrying an absent name "
        "are predictions of no world category: the objects under them are missed (FN), but they are no world "
        "category's false positive; their cost is in the absent shares and the seen drop.", "",
        "| set | part | unseen PQ | ratio to canonical | unseen − canonical (paired) | seen PQ | seen drop "
        "| absent segments % | absent pixels % | absent names firing |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for key, entry in report["sets"].items():
        if "summary" not in entry:
            lines.append(f"| {entry['family']} | {entry['part'] or '—'} | not run: {entry.get('error', '')} "
                         "| | | | | | | |")
            continue
        s = entry["summary"]
        ratio = "1.00" if key == "canonical" else (f"{s['ratio_to_canonical']:.2f}"
                                                   if s.get("ratio_to_canonical") is not None else "—")
        lines.append(f"| {entry['family']} | {entry['part'] or '—'} | {_ms(s['unseen_pq'])} | {ratio} "
                     f"| {_ms(s.get('unseen_pq_minus_canonical'))} | {_ms(s['seen_pq'])} | {_ms(s['seen_drop'])} "
                     f"| {_ms(s.get('absent_segment_share'), 100, 2)} | {_ms(s.get('absent_pixel_share'), 100, 2)} "
                     f"| {_ms(s.get('absent_names_firing'), 1, 1)} |")
    done = {k: e for k, e in report["sets"].items() if "summary" in e}
    unseen = world["unseen"]
    lines += ["", "Unseen PQ per category (mean over seeds):", "",
              "| category | " + " | ".join(done) + " |", "|---|" + "---|" * len(done)]
    for name in unseen:
        cells = [done[k]["summary"]["per_category_pq"].get(name) for k in done]
        lines.append(f"| {name} | " + " | ".join("—" if v is None else f"{v:.1f}" for v in cells) + " |")
    absent = {k: e for k, e in done.items() if e["kind"] == "absent"}
    for key, entry in absent.items():
        lines += ["", f"Absent names of `{key}`: predicted segments / pixels per seed:", ""]
        for name in entry["runs"][0]["absent"]["per_name"]:
            cells = [f"{r['absent']['per_name'][name]['segments']} / {r['absent']['per_name'][name]['pixels']}"
                     for r in entry["runs"]]
            lines.append(f"- {name}: " + ", ".join(cells))
    lines += _phrasing_lines(report)
    return "\n".join(lines) + "\n"


def _phrasing_lines(report: Mapping[str, Any]) -> list[str]:
    """What the phrasing rewrite did: its settings and, per set, every name it rewrote."""
    settings = report.get("phrasing")
    if not settings:
        return ["", "Phrasing rewrite: off (names encoded as typed)."]
    shown = ", ".join(f"{k} {v}" for k, v in settings.items())
    lines = ["", f"Phrasing rewrite (zsp_ros/semantics/phrasing.py): {shown}. Names it rewrote (as typed -> "
             "as encoded); every other name was encoded as typed:", ""]
    for key, entry in report["sets"].items():
        rewritten = entry.get("interpreted") or {}
        body = "; ".join(f"{a} -> {b}" for a, b in rewritten.items()) if rewritten else "none"
        lines.append(f"- `{key}`: {body}")
    refusals = {key: entry["refused"] for key, entry in report["sets"].items() if entry.get("refused")}
    if refusals:
        lines += ["", "Names the registry refused (the bench then added the rest, as a user would; a refused "
                  "paraphrase leaves its category out, a refused absent name claims nothing):", ""]
        for key, refused in refusals.items():
            shown = "; ".join(f"{name} ({_short_reason(why)})" for name, why in refused.items())
            lines.append(f"- `{key}`: {shown}")
    return lines


def _short_reason(why: str) -> str:
    """The gist of a refusal: "no kit word" or "read as 'x'"."""
    if "has no word this kit knows" in why:
        return "no kit word"
    match = re.search(r"is read as '([^']*)'", why)
    return f"read as '{match.group(1)}'" if match else why
