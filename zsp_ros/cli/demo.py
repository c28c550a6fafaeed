"""`zsp demo`: the whole system, offline on the CPU, in about a minute (at most 3).

The node, a synthetic camera and a recording client talk over ROS 2 (localhost); the client adds
the kit's unseen categories part way through the stream. Writes ``demo_out/`` (or ``--out``):
report.json (unseen PQ before/after the add, seen PQ, latency, counts, provenance),
overlay_before.png, overlay_after.png, scene_<k>_{before,after}.png, contact_sheet.png, node.log
and camera.log, and prints a short table. Exit code 0 on success; 1 with
``zsp demo: FAILED: <reason>`` when any part failed. The demo itself is zsp_ros.demo (see
zsp_ros.demo.run for the outputs' contents).
"""
from __future__ import annotations

import argparse
import sys

from zsp_ros.demo import run as demo_run
from zsp_ros.utils.cpu_threads import add_threads_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kit", default="", help="model kit directory (default: the embedded kit)")
    parser.add_argument("--out", default="demo_out", help="output directory (replaced; default demo_out)")
    parser.add_argument("--scenes", type=int, default=24,
                        help="distinct scenes the camera cycles through (PQ over fewer is too noisy)")
    parser.add_argument("--size", type=int, default=0, help="scene size in pixels (default: the kit's input size)")
    parser.add_argument("--rate", type=float, default=4.0, help="camera frames per second (default 4)")
    parser.add_argument("--before-s", type=float, default=12.0, help="streaming time before the add (s)")
    parser.add_argument("--after-s", type=float, default=12.0, help="streaming time after the add (s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes")
    parser.add_argument("--deadline-s", type=float, default=170.0, help="give up after this long (s)")
    add_threads_argument(parser)          # the node's `threads` parameter (zsp_ros.demo.run passes args.threads)


def run(args: argparse.Namespace) -> int:
    return demo_run.run(args, command=["zsp", "demo", *sys.argv[2:]])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="zsp demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
