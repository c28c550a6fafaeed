"""`zsp bench latency --backend B --device D --size HxW --kit KIT --out results/latency.json`: backend latency.

Per backend, at one fixed network input H×W (batch 1):
- ``model_ms``: ``backend.infer`` on a prepared, normalised input (CUDA synchronised before the clock stops);
- ``e2e_ms``: ``Segmenter.segment`` on an H×W uint8 RGB frame — pre-processing, network, head,
  panoptic + semantic post-processing — the number a ROS node sees per frame;
p50 / p90 / p99 / mean of each after ``--warmup`` calls (``e2e_stages_ms_p50``: the Segmenter's own
split of its calls into preprocess / model / postprocess), ``fps`` = 1000 / e2e p50, ``model_fps``
= 1000 / model p50, ``memory`` (CPU: process peak RSS; CUDA: peak allocated by torch — TensorRT's
own allocations are not seen by torch), library ``versions`` and the ``device_name``.

``--compare`` puts torch and onnxruntime side by side on the CPU instead: both backends are built
from the same kit, timed interleaved (so load from other processes hits both alike), and their
outputs on the same input compared (max |difference| of mask logits and embeddings). The JSON
then holds both records under ``backends`` and ``onnxruntime_speedup`` = torch p50 / onnxruntime p50.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from zsp_ros.bench.measure import device_name, memory, percentiles, synthetic_frame, timed_ms, versions
from zsp_ros.export.on_demand import build_backend_with_artifacts
from zsp_ros.export.onnx_export import DEFAULT_CAMERA_HW, kit_network_size
from zsp_ros.inference.preprocess import preprocess
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import load_kit
from zsp_ros.runtime.backends.onnx_contract import parse_size
from zsp_ros.runtime.registry import build_registry
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads
from zsp_ros.utils.provenance import provenance, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--size", default=None,
                        help="network input HxW, multiples of 32 (default: the kit's own size for 480x640 frames, "
                             "e.g. 128x192 for the embedded kit; zsp_ros.export.onnx_export.kit_network_size)")
    parser.add_argument("--kit", default=None, help="model kit (default: the embedded kit)")
    parser.add_argument("--out", default="results/latency.json", help="JSON file to write")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"), help="fp16: CUDA backends only")
    parser.add_argument("--compare", action="store_true",
                        help="torch and onnxruntime side by side on the CPU (ignores --backend)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measure (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    add_threads_argument(parser)
    parser.add_argument("--onnx", default=None, help="onnxruntime/tensorrt: use this export instead of exporting now")
    parser.add_argument("--engine", default=None, help="tensorrt: run this engine (its sidecar must match)")
    parser.add_argument("--msda-fp32", action="store_true", help="tensorrt fp16: deformable attention in fp32")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="torch on CUDA: eager instead of CUDA graphs")


def _backend_options(args: argparse.Namespace, name: str, size: tuple[int, int]) -> dict[str, Any]:
    """Keyword options of backend ``name``; ``args.threads`` is the resolved thread count."""
    if name == "torch":
        return {"cuda_graphs": False, "threads": args.threads} if args.no_cuda_graphs else {"threads": args.threads}
    if name == "onnxruntime":
        return {"onnx": args.onnx, "threads": args.threads} if args.onnx else {"size": size, "threads": args.threads}
    options: dict[str, Any] = {"msda_fp32": args.msda_fp32, "threads": args.threads}
    if args.engine:
        options["engine"] = args.engine
    elif args.onnx:
        options["onnx"] = args.onnx
    else:
        options["size"] = size
    return options


def _record(name: str, segmenter: Any, model_ms: list[float], e2e_ms: list[float], stages: dict[str, list[float]],
            device: str, precision: str, size: tuple[int, int]) -> dict[str, Any]:
    model, e2e = percentiles(model_ms), percentiles(e2e_ms)
    return {"backend": name, "device": device, "device_name": device_name(device), "precision": precision,
            "size_hw": list(size), "model_ms_p50": model["p50"], "e2e_ms_p50": e2e["p50"],
            "fps": round(1000.0 / e2e["p50"], 2), "model_fps": round(1000.0 / model["p50"], 2),
            "model_ms": model, "e2e_ms": e2e,
            "e2e_stages_ms_p50": {k: percentiles(v)["p50"] for k, v in stages.items()},
            "backend_info": segmenter.backend.describe()}


def run(args: argparse.Namespace) -> int:
    import torch


    args.threads = apply_threads(args.threads)
    kit = load_kit(resolve_kit(args.kit))
    size = parse_size(args.size) if args.size else kit_network_size(kit.input, DEFAULT_CAMERA_HW)
    names = ["torch", "onnxruntime"] if args.compare else [args.backend]
    device = "cpu" if args.compare else args.device
    if args.compare and args.device != "cpu":
        print("zsp bench latency: --compare runs on the CPU; ignoring --device")
    load_start = os.getloadavg()[0]
    registry = build_registry(kit)
    segmenters: dict[str, Segmenter] = {}
    try:
        for name in names:
            backend = build_backend_with_artifacts(name, kit, device=device, precision=args.precision,
                                                    **_backend_options(args, name, size))
            segmenters[name] = Segmenter(backend=backend, registry=registry, short_side=size[0],
                                         max_long_side=max(size), size_divisibility=32, fixed_hw=size)
        frame = synthetic_frame(size)
        images, _ = preprocess(frame, short_side=size[0], max_long_side=max(size), fixed_hw=size, device=device)
        outputs = {}
        for name, seg in segmenters.items():                      # warm-up (graphs, engines, allocators)
            for _ in range(args.warmup):
                seg.backend.infer(images)
                seg.segment(frame)
            outputs[name] = [torch.as_tensor(np.asarray(t.cpu()) if isinstance(t, torch.Tensor) else t)
                             for t in seg.backend.infer(images)]
        model_ms: dict[str, list[float]] = {n: [] for n in names}
        e2e_ms: dict[str, list[float]] = {n: [] for n in names}
        stages: dict[str, dict[str, list[float]]] = {n: {} for n in names}
        for _ in range(args.repeats):                              # interleaved
            for name, seg in segmenters.items():
                model_ms[name].append(timed_ms(lambda: seg.backend.infer(images), device))
                t0 = time.perf_counter()
                result = seg.segment(frame)
                e2e_ms[name].append((time.perf_counter() - t0) * 1e3)
                for stage in ("preprocess", "model", "postprocess"):
                    stages[name].setdefault(stage, []).append(result.timings_ms[stage])
        records = {n: _record(n, segmenters[n], model_ms[n], e2e_ms[n], stages[n], device, args.precision, size)
                   for n in names}
    finally:
        for seg in segmenters.values():
            seg.backend.close()
        registry.close()
    common = {"memory": memory(device), "versions": versions(), "threads": args.threads,
              "kit": {"path": str(kit.root), "sha256": kit.sha256, "model": kit.model_config.get("backbone", {})},
              "load_1min": {"start": load_start, "end": os.getloadavg()[0]}, "provenance": provenance()}
    if args.compare:
        t, o = outputs["torch"], outputs["onnxruntime"]
        report = {"mode": "compare", "device": device, "device_name": records["torch"]["device_name"],
                  "size_hw": list(size), "backends": records,
                  "onnxruntime_speedup": {"model": round(records["torch"]["model_ms_p50"] /
                                                         records["onnxruntime"]["model_ms_p50"], 3),
                                          "e2e": round(records["torch"]["e2e_ms_p50"] /
                                                       records["onnxruntime"]["e2e_ms_p50"], 3)},
                  "max_abs_diff": {"mask_logits": float((t[0] - o[0]).abs().max()),
                                   "query_embeds": float((t[1] - o[1]).abs().max())}, **common}
        for name, rec in records.items():
            print(f"{name:12s} model p50 {rec['model_ms_p50']:8.2f} ms   e2e p50 {rec['e2e_ms_p50']:8.2f} ms   "
                  f"{rec['fps']:.2f} FPS")
    else:
        report = {**records[names[0]], **common}
        print(f"{names[0]} on {report['device_name']} ({args.precision}, {size[0]}x{size[1]}): model p50 "
              f"{report['model_ms_p50']:.2f} ms, e2e p50 {report['e2e_ms_p50']:.2f} ms, {report['fps']:.2f} FPS")
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0
