"""`zsp doctor`: what is installed here, its version, and what each missing piece disables.

`zsp doctor --kit KIT` checks one model kit end to end instead (zsp_ros/cli/doctor_kit.py, imported only
then, so the plain report needs no torch), one line per check, and exits 1 when any check fails.
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from typing import Callable

from zsp_ros.semantics.lexicon import ENV_DIR, find_wordnet
from zsp_ros.semantics.minilm import find_minilm_dir

PROBE_NAME = "zsp doctor probe"      # the name `--kit` adds (zsp_ros/cli/doctor_kit.py)


def _version(module_name: str) -> str:
    module = importlib.import_module(module_name)
    return str(getattr(module, "__version__", "present"))


def _torch() -> str:
    import torch
    cuda = torch.cuda.is_available()
    dev = f", CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}" if cuda else ", no CUDA device"
    return f"{torch.__version__}{dev}"


def _rclpy() -> str:
    import rclpy  # noqa: F401
    from rclpy.lifecycle import LifecycleNode  # noqa: F401
    return "present (with lifecycle)"


def _zsp_msgs() -> str:
    from zsp_msgs.msg import PanopticSegmentation  # noqa: F401
    from zsp_msgs.srv import AddCategories  # noqa: F401
    return "present"


def _minilm() -> str:
    return f"present ({find_minilm_dir()})"


def _wordnet() -> str:
    root = find_wordnet()
    if root is None:
        raise FileNotFoundError(f"no WordNet database (apt-get install wordnet-base, or set {ENV_DIR})")
    return f"present ({root})"


def _tensorrt() -> str:
    import tensorrt
    return tensorrt.__version__


# (what, probe, what its absence disables)
CHECKS: list[tuple[str, Callable[[], str], str]] = [
    ("torch", _torch, "everything that runs the network (training, torch backend)"),
    ("onnx", lambda: _version("onnx"), "zsp export onnx"),
    ("onnxruntime", lambda: _version("onnxruntime"), "the onnxruntime backend and its parity tests"),
    ("tensorrt", _tensorrt, "the TensorRT backend and `zsp engine build` (export to ONNX still works)"),
    ("open_clip", lambda: _version("open_clip"), "the CLIP text encoder (COCO path)"),
    ("MiniLM text model", _minilm, "the offline default text encoder: adding categories by name"),
    ("WordNet", _wordnet, "the phrasing rewrite's lexicon rule ('orange pentagram' -> 'orange star')"),
    ("pycocotools", lambda: _version("pycocotools"), "zsp synth instance JSON and zsp eval instance"),
    ("rclpy", _rclpy, "the ROS 2 node, zsp demo and the end-to-end tests"),
    ("zsp_msgs", _zsp_msgs, "the ROS 2 node's messages and services (run tools/setup_env.sh)"),
]


def collect() -> dict:
    """Return {"python": ..., "platform": ..., "components": {name: {present, version|error, disables}}}."""
    report: dict = {"python": sys.version.split()[0], "platform": platform.platform(), "components": {}}
    for name, probe, disables in CHECKS:
        try:
            report["components"][name] = {"present": True, "version": probe()}
        except Exception as exc:  # a probe failing is the information we report
            report["components"][name] = {
                "present": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200],
                "disables": disables}
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--kit", default=None, nargs="?", const="",
                        help="check this model kit end to end instead (no value: the embedded kit)")
    parser.add_argument("--probe", default=PROBE_NAME,
                        help="the name --kit adds on an in-memory registry (one the kit's text encoder can embed)")


def run(args: argparse.Namespace) -> int:
    if args.kit is not None:
        results = importlib.import_module("zsp_ros.cli.doctor_kit").check_kit(args.kit or None, probe=args.probe)
        if args.json:
            print(json.dumps([{"check": n, "ok": ok, "detail": d} for n, ok, d in results], indent=2))
        else:
            for name, ok, detail in results:
                print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
        return 0 if all(ok for _, ok, _ in results) else 1
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"Python   {report['python']}  ({report['platform']})")
    for name, item in report["components"].items():
        if item["present"]:
            print(f"  [ok]      {name:<18} {item['version']}")
        else:
            print(f"  [missing] {name:<18} {item['error']}")
            print(f"            {'':<18} disables: {item['disables']}")
    return 0
