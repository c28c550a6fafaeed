"""`zsp bench runtime --out results/runtime.json`: the Segmenter's speed and runtime zero-shot quality.

Measured, per input size (640x480 and the kit's native size by default):
- ``forward_ms``: the backend's network call alone (median over repeats, after warm-up);
- ``segment_ms``: the whole `Segmenter.segment` call (pre-processing, network, head, post-processing);
- ``post_over_forward``: post-processing time / forward time (goal <= 0.05).
Then, on the kit's registry:
- ``add_category_s``: adding one category by name (encode + generate + fit + save + swap) to the kit,
  median of ``--add-repeats`` adds of distinct names (goal <= 0.3 s on a 2-core EPYC); ``add_category``:
  the same after 10, 99 and 499 names were added (``--add-sizes``; goal: roughly flat), each stage's
  median, and 11 names in one request (goal <= 1 s);
- with ``--data WORLD`` (a `zsp synth` world): unseen-category PQ on its validation images before and
  after adding the world's unseen categories through the registry (``unseen_pq_before`` /
  ``unseen_pq_after``), next to ``unseen_pq_offline`` — the offline PADing stage's figure for the same
  categories, read from ``--offline-metrics`` (a `zsp eval panoptic` JSON) or from the kit manifest's
  ``provenance.metrics``. Top-level figures are those of the first size (640x480 by default).

The machine is shared: ``load_1min`` at start and end says how busy it was. ``postprocess_host`` says
which host path ran the pixel work ("numba" kernels, or "numpy" with ``ZSP_POSTPROCESS=numpy``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from zsp_ros.data.categories import read_split
from zsp_ros.data.coco_format import load_json
from zsp_ros.evaluation.panoptic_quality import evaluate_panoptic
from zsp_ros.evaluation.predict import predict_world_images
from zsp_ros.inference import host_ops
from zsp_ros.inference.preprocess import preprocess
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import load_kit
from zsp_ros.runtime.registry import build_registry
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads
from zsp_ros.utils.provenance import provenance, write_json


def _size(text: str) -> tuple[int, int]:
    """'WxH' -> (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WxH") from None
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kit", default=None, help="model kit (default: the embedded kit)")
    parser.add_argument("--data", default=None, help="synthetic world folder (for the unseen PQ figures)")
    parser.add_argument("--out", default="results/runtime.json", help="JSON file to write")
    parser.add_argument("--sizes", type=_size, nargs="+", default=None,
                        help="input sizes WxH (default: 640x480 and the kit's native size)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per size (default 20)")
    parser.add_argument("--add-repeats", type=int, default=5,
                        help="timed single-name adds per vocabulary size (default 5)")
    parser.add_argument("--add-sizes", type=int, nargs="+", default=[1, 11, 100, 500],
                        help="vocabulary sizes (added names, counting the timed one) to time adds at "
                             "(default 1 11 100 500)")
    parser.add_argument("--val-images", type=int, default=None, help="limit the PQ evaluation to N images")
    parser.add_argument("--offline-metrics", default=None,
                        help="JSON with the offline PADing run's panoptic metrics (PQ.unseen)")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    add_threads_argument(parser)


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _test_image(data: Path | None, hw: tuple[int, int]) -> np.ndarray:
    """A camera-like frame of size ``hw``: a synthetic-world validation image scaled, or smooth noise."""
    from PIL import Image

    if data is not None:
        files = sorted((data / "images" / "val").glob("*.png"))
        if files:
            with Image.open(files[0]) as im:
                return np.asarray(im.convert("RGB").resize((hw[1], hw[0]), Image.BILINEAR))
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (max(1, hw[0] // 16), max(1, hw[1] // 16), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((hw[1], hw[0]), Image.BILINEAR))


def _time_size(segmenter: Any, image: np.ndarray, repeats: int) -> dict[str, Any]:
    import torch


    device = getattr(segmenter.backend, "device", "cpu")
    images, geometry = preprocess(image, short_side=segmenter.short_side, max_long_side=segmenter.max_long_side,
                                  size_divisibility=segmenter.size_divisibility, fixed_hw=segmenter.fixed_hw,
                                  device=device)
    for _ in range(2):                                       # warm-up
        segmenter.backend.infer(images)
        segmenter.segment(image)
    forward, segment, pre, model, post, segs = [], [], [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        segmenter.backend.infer(images)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        forward.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        result = segmenter.segment(image)
        segment.append((time.perf_counter() - t0) * 1e3)
        pre.append(result.timings_ms["preprocess"])
        model.append(result.timings_ms["model"])
        post.append(result.timings_ms["postprocess"])
        segs.append(len(result.segments))
    f, p = _median(forward), _median(post)
    # the node skips the semantic map when nobody subscribes to it
    panoptic_only = [segmenter.segment(image, semantic=False).timings_ms["postprocess"] for _ in range(repeats)]
    return {"input_hw": list(image.shape[:2]), "network_hw": list(geometry.padded_hw),
            "forward_ms": round(f, 2), "segment_ms": round(_median(segment), 2),
            "preprocess_ms": round(_median(pre), 2), "model_ms": round(_median(model), 2),
            "postprocess_ms": round(p, 2),
            "post_over_forward": round(p / f, 4),
            "postprocess_panoptic_only_ms": round(_median(panoptic_only), 2),
            "post_over_forward_panoptic_only": round(_median(panoptic_only) / f, 4),
            "segments_median": _median(segs),
            "forward_ms_all": [round(v, 2) for v in forward]}


def _add_names(data: Path | None, registry: Any, count: int) -> list[str]:
    """``count`` distinct names to add: the world's categories the registry lacks, then generic names
    ("benchmark category N <the last word of a kit category's name>", e.g. "... 7 circle": a kit word,
    which a kit whose phrasing refuses names with no word it knows requires, and no colour, so that the
    phrasing does not read the name as that kit category itself)."""
    names = []
    if data is not None:
        names = [c["name"] for c in read_split(data / "split.json")["categories"]
                 if registry.list().get(c["name"]) is None]
    known = {n.casefold() for n in names} | {c.name.casefold() for c in registry.list()}
    anchor = next(iter(registry.list())).name.split()[-1] if len(registry.list()) else ""
    generic = (f"benchmark category {i} {anchor}".strip() for i in range(10 ** 6))
    while len(names) < count:
        name = next(generic)
        if name not in known:
            names.append(name)
    return names[:count]


def _add_cost(kit_dir: Path, data: Path | None, sizes: list[int], repeats: int, fill_batch: int = 50
              ) -> dict[str, Any]:
    """Time per add at each vocabulary size: a fresh registry of the kit is filled with ``size - 1``
    added names (in batches, untimed), then ``repeats`` single-name adds are timed (each one stays,
    so the n-th is measured at ``size - 1 + n`` added). Also the time to add the world's 11 unseen
    names (or 11 names) in one request on a fresh registry, and each stage's median."""
    kit = load_kit(kit_dir)
    registry = build_registry(kit)                 # warmed up, writer thread at its lower priority, as the node
    rows: list[dict[str, Any]] = []
    try:
        names = _add_names(data, registry, max(max(sizes) - 1 + repeats * len(sizes), 11))
        eleven, pool = names[:11], iter(names)             # the 11 go to a registry of their own
        t0 = time.perf_counter()
        registry.add(eleven)
        eleven_s = time.perf_counter() - t0
        eleven_stages = dict(registry.last_timings_ms)
        registry.close()
        registry = build_registry(kit)
        added = 0
        for size in sorted(sizes):
            while added < size - 1:
                batch = [next(pool) for _ in range(min(fill_batch, size - 1 - added))]
                registry.add(batch)
                added += len(batch)
            wall, cpu, stages = [], [], {}
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                registry.add([next(pool)])
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                added += 1
                for key, value in registry.last_timings_ms.items():
                    stages.setdefault(key, []).append(value)
            rows.append({"added_before": size - 1, "add_s": round(_median(wall), 4),
                         "add_s_all": [round(v, 4) for v in wall], "add_cpu_s": round(_median(cpu), 4),
                         "stages_ms": {k: round(_median(v), 2) for k, v in stages.items()}})
            print(f"add one name with {size - 1} added: {rows[-1]['add_s']:.3f} s "
                  f"(cpu {rows[-1]['add_cpu_s']:.3f} s)", flush=True)
    finally:
        registry.close()
    return {"add_category_s": rows[0]["add_s"], "eleven_names_s": round(eleven_s, 4),
            "eleven_names_stages_ms": {k: round(v, 2) for k, v in eleven_stages.items()},
            "per_size": rows, "repeats": repeats, "synthetic_per_category": registry.synthetic_per_category,
            "refit_mode": registry.refit_mode, "bank_rows": int(kit.bank_embeds.shape[0]),
            "note": "one writer thread at nice +10 as in the node; add_cpu_s is the process's CPU time per add"}


def _unseen_pq(segmenter: Any, data: Path, limit: int | None) -> dict[str, Any]:

    split = read_split(data / "split.json")
    gt_json = data / "annotations" / "panoptic_val.json"
    gt = load_json(gt_json, what="panoptic annotation file")
    images = gt["images"][:limit] if limit else gt["images"]
    png_name = {a["image_id"]: a["file_name"] for a in gt["annotations"]}
    keep = {im["id"] for im in images}
    world = {c["name"].casefold(): c for c in split["categories"]}
    registry = segmenter.registry
    with tempfile.TemporaryDirectory(prefix="zsp_bench_runtime_") as tmp:
        sub_gt = Path(tmp) / "gt.json"              # the evaluated subset, PNGs read from the world
        sub_gt.write_text(json.dumps({**gt, "images": images,
                                      "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}))
        gt_folder = data / "annotations" / "panoptic_val"

        def evaluate(tag: str) -> dict[str, Any]:
            world_id_of = {c.id: world[c.name.casefold()]["id"] for c in registry.list()}
            pred = predict_world_images(segmenter, data, images, png_name, Path(tmp) / tag, world_id_of)
            return evaluate_panoptic(sub_gt, pred, split, gt_folder=gt_folder)

        missing = [c.name for c in registry.list() if c.name.casefold() not in world]
        if missing:
            raise ValueError(f"kit categories {missing} are not categories of the world in {data}")
        before = evaluate("before")
        unseen = [c for c in split["categories"] if not c["seen"] and registry.list().get(c["name"]) is None]
        t0 = time.perf_counter()
        registry.add([c["name"] for c in unseen], isthing=[bool(c["isthing"]) for c in unseen])
        add_all_s = time.perf_counter() - t0
        after = evaluate("after")
    return {"images": len(images), "unseen_added": [c["name"] for c in unseen], "add_all_unseen_s": round(add_all_s, 3),
            "before": {k: before[k] for k in ("PQ", "SQ", "RQ")}, "after": {k: after[k] for k in ("PQ", "SQ", "RQ")}}


def _offline_unseen_pq(args: argparse.Namespace, kit: Any) -> float | None:
    if args.offline_metrics:
        metrics = json.loads(Path(args.offline_metrics).read_text())
    else:
        metrics = (kit.manifest.get("provenance") or {}).get("metrics") or {}
    for path in (("PQ", "unseen"), ("panoptic", "PQ", "unseen"), ("unseen_pq",)):
        node: Any = metrics
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, (int, float)):
            return float(node)
    return None


def run(args: argparse.Namespace) -> int:
    args.threads = apply_threads(args.threads)
    load_start = os.getloadavg()[0]
    kit_dir = resolve_kit(args.kit)
    data = Path(args.data) if args.data else None
    t0 = time.perf_counter()
    segmenter = Segmenter.from_kit(kit_dir, backend=args.backend, device=args.device, precision=args.precision)
    load_s = time.perf_counter() - t0
    kit = segmenter.registry.kit
    native = kit.input["short_side"]
    sizes = args.sizes or [(480, 640), (native, native)]
    with segmenter:
        per_size = {f"{w}x{h}": _time_size(segmenter, _test_image(data, (h, w)), args.repeats) for h, w in sizes}
        adds = _add_cost(kit_dir, data, args.add_sizes, args.add_repeats)
        pq = _unseen_pq(segmenter, data, args.val_images) if data is not None else None
    first = next(iter(per_size.values()))
    report = {
        "add_category_s": adds["add_category_s"],
        "post_over_forward": first["post_over_forward"],
        "forward_ms": first["forward_ms"],
        "segment_ms": first["segment_ms"],
        "unseen_pq_before": pq["before"]["PQ"]["unseen"] if pq else None,
        "unseen_pq_after": pq["after"]["PQ"]["unseen"] if pq else None,
        "unseen_pq_offline": _offline_unseen_pq(args, kit),
        "sizes": per_size, "add_category": adds, "panoptic": pq,
        "kit": {"path": str(kit_dir), "sha256": kit.sha256, "categories": len(kit.categories),
                "text_encoder": kit.text_encoder_id},
        "backend": segmenter.backend.describe(), "postprocess_host": host_ops.path(), "load_s": round(load_s, 3),
        "load_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "provenance": provenance(),
    }
    write_json(args.out, report)
    print(f"forward {report['forward_ms']:.1f} ms, segment {report['segment_ms']:.1f} ms, post/forward "
          f"{report['post_over_forward']:.3f}, add one category {report['add_category_s']:.3f} s, unseen PQ "
          f"{report['unseen_pq_before']} -> {report['unseen_pq_after']} (offline {report['unseen_pq_offline']}); "
          f"wrote {args.out}")
    return 0
