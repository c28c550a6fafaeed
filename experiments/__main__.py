"""`python -m experiments NAME [options]`: the experiments that keep the ``add_arguments``/``run`` shape.

The studies with a ``main()`` of their own run as ``python -m experiments.<module>``.
"""
from __future__ import annotations

import sys

from zsp_ros.cli.dispatch import run_choice

EXPERIMENTS: dict[str, tuple[str, str]] = {
    "zeroshot": ("experiments.zeroshot", "PADing vs baselines over seeds (Table 1 / ablation)"),
    "mask-bound": ("experiments.mask_bound", "PQ of ground truth passed through the mask stride (upper bound)"),
    "bankfree": ("experiments.bankfree", "adding names to a kit with a generated bank vs its real bank (issue 21)"),
    "unseen-holes": ("experiments.unseen_holes", "why an unseen category scores ~0: mask, embedding or generator"),
}



def main(argv: list[str] | None = None) -> int:
    return run_choice("python -m experiments", EXPERIMENTS, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
