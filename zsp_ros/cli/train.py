"""`zsp train {segmenter,pading,oracle}`: thin front over the offline training loops in training/."""
from __future__ import annotations

import argparse

from zsp_ros.cli.dispatch import run_choice

STAGES: dict[str, tuple[str, str]] = {
    "segmenter": ("zsp_ros.training.train_segmenter", "PADing stage 1: Mask2Former on the seen categories"),
    "pading": ("zsp_ros.training.train_pading", "PADing stages 2-3: generator, alignment, classifier retraining"),
    "oracle": ("zsp_ros.training.train_oracle", "the segmenter trained on all categories (upper bound)"),
    "bank": ("zsp_ros.training.extract_bank", "feature bank of a trained segmenter (cached by its hash)"),
    "kit": ("zsp_ros.training.build_kit", "the model kit (segmenter, generator, head, compact bank) for the runtime"),
    "import": ("zsp_ros.training.import_checkpoint", "a released detectron2 Mask2Former / PADing checkpoint -> segmenter run directory"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="STAGE [options]; STAGE in " + ", ".join(STAGES))


def run(args: argparse.Namespace) -> int:
    return run_choice("zsp train", STAGES, args.argv)
