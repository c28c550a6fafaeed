"""`zsp train oracle`: the segmenter trained on every category (seen and unseen) — the upper
bound a zero-shot method is compared with.

Same options, loop and outputs as `zsp train segmenter` (zsp_ros/training/train_segmenter.py), but on
DIR/annotations/panoptic_train.json (every training image) with all categories of
DIR/split.json as classes.
"""
from __future__ import annotations

import argparse
import sys

from zsp_ros.training.train_segmenter import add_arguments, train_from_args

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    return train_from_args(args, view="all")


def main(argv: list[str] | None = None) -> int:
    """``python -m zsp_ros.training.train_oracle ...`` (what torchrun starts)."""
    parser = argparse.ArgumentParser(prog="zsp train oracle", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
