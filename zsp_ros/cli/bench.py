"""`zsp bench NAME --out FILE.json`: every benchmark writes JSON with its machine and versions."""
from __future__ import annotations

import argparse
import sys

from zsp_ros.cli.dispatch import run_choice

BENCHMARKS: dict[str, tuple[str, str]] = {
    "synth": ("zsp_ros.bench.synth", "synthetic world generation speed (images/s)"),
    "msda": ("zsp_ros.bench.msda", "deformable-attention core vs the grid_sample reference"),
    "runtime": ("zsp_ros.bench.runtime", "Segmenter forward, end-to-end, add-category latency"),
    "node": ("zsp_ros.bench.node", "ROS 2 node end-to-end latency over DDS"),
    "latency": ("zsp_ros.bench.latency", "backend latency percentiles (torch, onnxruntime, tensorrt)"),
    "gpu": ("zsp_ros.bench.gpu", "GPU check: eager fp32 vs fast path (fp16, CUDA graphs) vs CPU, kit and R50"),
    "vocabulary": ("zsp_ros.bench.vocabulary", "add-by-name quality for paraphrased and absent names"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="NAME [options]; NAME in " + ", ".join(BENCHMARKS))


def run(args: argparse.Namespace) -> int:
    return run_choice("zsp bench", BENCHMARKS, args.argv)


if __name__ == "__main__":
    sys.exit(run_choice("zsp bench", BENCHMARKS, sys.argv[1:]))
