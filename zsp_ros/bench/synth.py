"""`zsp bench synth --out results/synth.json`: synthetic world generation speed.

Generates a world (default 2,000 training + 500 validation images at 128x128) into a
temporary folder, times it end to end (rendering, PNG/JSON writing, protocol views), and
writes images/s with the machine and library versions. The machine is shared: ``load_1min``
(the 1-minute load average at the start and end) says how busy it was.
"""
from __future__ import annotations

import argparse
import os
import tempfile

from zsp_ros.data.synth_writer import default_workers, generate_world
from zsp_ros.utils.provenance import provenance, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="results/synth.json", help="JSON file to write")
    parser.add_argument("--images", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--val-images", type=int, default=500, help="validation images (default 500)")
    parser.add_argument("--size", type=int, default=128, help="square image size (default 128)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts to time (default: min(2, CPUs))")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:

    runs = []
    for workers in args.workers or [default_workers()]:
        load_start = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="zsp_bench_synth_") as tmp:
            summary = generate_world(tmp, images=args.images, val_images=args.val_images, size=args.size,
                                     seed=args.seed, workers=workers)
        total = args.images + args.val_images
        runs.append({"workers": workers, "train_images": args.images, "val_images": args.val_images,
                     "size": args.size, "seconds": summary["seconds"],
                     "images_per_s": round(total / summary["seconds"], 1),
                     "train_2000_estimate_s": round(2000 * summary["seconds"] / total, 1),
                     "zsp_train_images": summary["zsp_train_images"],
                     "load_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)]})
        print(f"workers {workers}: {total} images in {summary['seconds']:.1f} s = "
              f"{runs[-1]['images_per_s']:.0f} images/s")
    write_json(args.out, {"benchmark": "synth", "runs": runs, "provenance": provenance()})
    print(f"wrote {args.out}")
    return 0
