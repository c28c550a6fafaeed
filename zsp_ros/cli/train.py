"""`zsp train {segmenter,pading,oracle}`: thin front over the offline training loops in training/."""
from __future__ import annotations

import argparse

from zsp_ros.cli.dispatch import run_choice

STAGES: dict[str, tuple[str, str]] = {
    "segmenter": ("training.train_segmenter", "PADing stage 1: Mask2Former on the seen categories"),
    "pading": ("training.train_pading", "PADing stages 2-3: generator, alignment, classifier retraining"),
    "oracle": ("training.train_oracle", "the segmenter trained on all categories (upper bound)"),
    "bank": ("training.extract_bank", "feature bank of a trained segmenter (cached by its hash)"),
    "kit": ("training.build_kit", "the model kit (segmenter, generator, head, compact bank) for the runtime"),
    "import": ("training.import_checkpoint", "a released detectron2 Mask2Former / PADing checkpoint -> segmenter run directory"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="STAGE [options]; STAGE in " + ", ".join(STAGES))


def run(args: argparse.Namespace) -> int:
    return run_choice("zsp train", STAGES, args.argv)
