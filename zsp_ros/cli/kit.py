"""`zsp kit from-release`: build a model kit from released checkpoints (thin front over training/release_kit)."""
from __future__ import annotations

import argparse

from zsp_ros.cli.dispatch import run_choice

ACTIONS: dict[str, tuple[str, str]] = {
    "from-release": ("zsp_ros.training.release_kit",
                     "released Mask2Former + PADing checkpoints and CLIP ViT-B/16 weights -> a model kit"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="ACTION [options]; ACTION in " + ", ".join(ACTIONS))


def run(args: argparse.Namespace) -> int:
    return run_choice("zsp kit", ACTIONS, args.argv)
