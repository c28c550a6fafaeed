"""`zsp bench gpu --out results/gpu_<card>.json [--dry-run]`: the GPU check, ready for the day a GPU is lent.

For the embedded kit's network and for Mask2Former R50 (config/r50_coco_panoptic.yaml, seeded random
weights: speed and numerics do not depend on training) at one input size (default 480x640, HxW):

- ``eager_fp32``: the torch backend without the fast path (no CUDA graphs, no channels-last);
- ``fast_fp32`` / ``fast_fp16``: the fast path (staged CUDA graphs, channels-last; fp16 autocast);
- ``onnxruntime_cuda``: a portable ONNX export of the kit's network on onnxruntime's CUDA provider,
  when that provider is installed (else recorded as not available, with the providers present).

Each variant: first call (capture / warm-up) in ms, p50 / p90 of ``--repeats`` timed calls
(synchronised), and its outputs on one frame against the CPU fp32 reference: min cosine of query
embeddings and max |mask logit difference| / max |reference logit|. The CUDA graph status of every
stage is recorded, so a stage that fell back to eager is visible.

``--dry-run`` (what CI runs, on a machine without CUDA): the same code on the CPU with eager fp32
only, a small input and few repeats, so the script, the models, the comparison and the JSON are
exercised everywhere; the GPU variants are listed as skipped with the reason.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zsp_ros.bench.measure import device_name, memory, percentiles, synchronize, versions
from zsp_ros.export.onnx_export import export_onnx
from zsp_ros.inference.preprocess import normalise
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import load_kit
from zsp_ros.model.build import build_mask2former, load_config
from zsp_ros.runtime.backends.onnx_contract import parse_size
from zsp_ros.runtime.backends.torch_backend import TorchBackend
from zsp_ros.utils.provenance import provenance, seed_everything, write_json

R50_CONFIG = Path(__file__).resolve().parents[2] / "config" / "r50_coco_panoptic.yaml"
GPU_VARIANTS = {"fast_fp32": {"precision": "fp32"}, "fast_fp16": {"precision": "fp16"}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="JSON file to write (results/gpu_<card>.json)")
    parser.add_argument("--kit", default=None, help="model kit (default: the embedded kit)")
    parser.add_argument("--size", default=None, help="network input HxW, multiples of 32 (default 480x640; "
                                                      "dry run 64x64)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per variant (default 50; dry run 2)")
    parser.add_argument("--r50-config", default=str(R50_CONFIG), help="the R50 model config")
    parser.add_argument("--no-r50", action="store_true", help="only the kit's network")
    parser.add_argument("--dry-run", action="store_true", help="CPU, eager fp32 only, small: checks the plumbing")
    parser.add_argument("--device", default="cuda", help="CUDA device (default cuda)")


def _images(hw: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A normalised float32 [1,3,H,W] input from a seeded random frame (values as a camera's)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (1, 3, max(1, hw[0] // 16), max(1, hw[1] // 16)), generator=g).float()
    return normalise(torch.nn.functional.interpolate(small, size=hw, mode="bilinear", align_corners=False))


def _agreement(got: tuple[torch.Tensor, torch.Tensor], ref: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Outputs of a variant against the CPU fp32 reference (both (masks [1,Q,h,w], embeds [1,Q,E]))."""
    masks, embeds = (t.detach().float().cpu() for t in got)
    ref_masks, ref_embeds = ref
    cos = torch.nn.functional.cosine_similarity(embeds[0], ref_embeds[0], dim=-1)
    scale = float(ref_masks.abs().max()) or 1.0
    return {"embed_cosine_min": round(float(cos.min()), 6),
            "mask_max_abs_diff_rel": round(float((masks - ref_masks).abs().max()) / scale, 6),
            "finite": bool(torch.isfinite(masks).all() and torch.isfinite(embeds).all())}


def _time_backend(backend: Any, images: torch.Tensor, *, device: str, repeats: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    first = backend.infer(images)
    synchronize(device)
    first_ms = (time.perf_counter() - t0) * 1e3
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        backend.infer(images)
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"first_call_ms": round(first_ms, 2), "ms": percentiles(times), "outputs": first}


def _check_network(name: str, network: torch.nn.Module, *, hw: tuple[int, int], device: str, repeats: int,
                   dry_run: bool) -> dict[str, Any]:
    """Every torch variant of one network; the reference is the same network eager fp32 on the CPU."""
    images = _images(hw)
    with torch.inference_mode():
        ref = tuple(t.float() for t in copy.deepcopy(network).eval().forward_network(images))
    out: dict[str, Any] = {"network": name, "input_hw": list(hw), "variants": {}}
    eager = TorchBackend(network=copy.deepcopy(network), device=device, precision="fp32",
                         **({} if dry_run else {"channels_last": False, "cuda_graphs": False}))
    timed = _time_backend(eager, images, device=device, repeats=repeats)
    out["variants"]["eager_fp32"] = {"first_call_ms": timed["first_call_ms"], "ms": timed["ms"],
                                     "vs_cpu_fp32": _agreement(timed["outputs"], ref)}
    eager.close()
    for variant, options in GPU_VARIANTS.items():
        if dry_run:
            out["variants"][variant] = {"skipped": "dry run: CUDA only"}
            continue
        backend = TorchBackend(network=copy.deepcopy(network), device=device, **options)
        timed = _time_backend(backend, images, device=device, repeats=repeats)
        out["variants"][variant] = {"first_call_ms": timed["first_call_ms"], "ms": timed["ms"],
                                    "vs_cpu_fp32": _agreement(timed["outputs"], ref),
                                    "graph_stages": backend.describe().get("graph_stages", {})}
        backend.close()
    base = out["variants"]["eager_fp32"]["ms"]["p50"]
    for record in out["variants"].values():
        if "ms" in record and record["ms"]["p50"]:
            record["speedup_vs_eager_fp32"] = round(base / record["ms"]["p50"], 2)
    return out


def _check_onnxruntime(kit: Any, network: torch.nn.Module, *, hw: tuple[int, int], repeats: int, work: Path,
                       dry_run: bool) -> dict[str, Any]:
    try:
        import onnxruntime as ort  # optional and heavy: only here
    except ImportError as exc:
        return {"skipped": f"onnxruntime not installed ({exc})"}
    providers = ort.get_available_providers()
    provider = "CPUExecutionProvider" if dry_run else "CUDAExecutionProvider"
    if provider not in providers:
        return {"skipped": f"{provider} not available (providers: {', '.join(providers)})"}
    path = export_onnx(copy.deepcopy(network).cpu(), work / "kit_portable.onnx", height=hw[0], width=hw[1],
                       variant="portable", kit_sha256=kit.sha256).path
    session = ort.InferenceSession(str(path), providers=[provider])
    images = _images(hw)
    with torch.inference_mode():
        ref = tuple(t.float() for t in copy.deepcopy(network).cpu().eval().forward_network(images))
    feed = {"images": images.numpy()}
    t0 = time.perf_counter()
    first = session.run(None, feed)
    first_ms = (time.perf_counter() - t0) * 1e3
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    got = (torch.from_numpy(np.asarray(first[0])), torch.from_numpy(np.asarray(first[1])))
    return {"provider": provider, "first_call_ms": round(first_ms, 2), "ms": percentiles(times),
            "vs_cpu_fp32": _agreement(got, ref)}


def run(args: argparse.Namespace) -> int:
    dry = bool(args.dry_run)
    if not dry and not torch.cuda.is_available():
        print("zsp bench gpu: torch sees no CUDA GPU here; run with --dry-run to check the plumbing on the CPU")
        return 2
    device = "cpu" if dry else args.device
    hw = parse_size(args.size or ("64x64" if dry else "480x640"))
    repeats = args.repeats if args.repeats is not None else (2 if dry else 50)
    seed_everything(0)
    kit = load_kit(resolve_kit(args.kit))
    kit_net = TorchBackend.from_kit(kit, device="cpu").network
    networks: list[tuple[str, torch.nn.Module]] = [(f"kit {kit.root.name}", kit_net)]
    if not args.no_r50:
        torch.manual_seed(0)
        cfg = load_config(args.r50_config)
        networks.append(("mask2former_r50 (random weights)", build_mask2former(cfg["model"], 133)))
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results = [_check_network(name, net, hw=hw, device=device, repeats=repeats, dry_run=dry)
               for name, net in networks]
    onnx = _check_onnxruntime(kit, kit_net, hw=hw, repeats=repeats, work=out_path.parent, dry_run=dry)
    report = {"benchmark": "gpu", "dry_run": dry, "device": device, "device_name": device_name(device),
              "input_hw": list(hw), "repeats": repeats, "networks": results, "onnxruntime": onnx,
              "memory": memory(device), "versions": versions(),
              "cuda": {"available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
                       "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None},
              "provenance": provenance(["zsp", "bench", "gpu", *(["--dry-run"] if dry else []),
                                        f"--size={hw[0]}x{hw[1]}", f"--repeats={repeats}"])}
    write_json(out_path, report)
    for record in results:
        cells = ", ".join(f"{k} {v['ms']['p50']:.1f} ms" if "ms" in v else f"{k} skipped"
                          for k, v in record["variants"].items())
        print(f"{record['network']} at {hw[0]}x{hw[1]} on {report['device_name']}: {cells}")
    print(f"onnxruntime: {onnx.get('skipped') or str(onnx['ms']['p50']) + ' ms'}; wrote {out_path}")
    return 0
