"""Studies and experiment orchestration: run from the repository root, never installed.

    python -m experiments zeroshot --data WORLD --segmenter RUN --seeds 3 --out results/
    python -m experiments mask-bound --data WORLD --out results/mask_bound.json

Each module reads the installed ``zsp_ros`` package and writes next to ``results/``.
"""
