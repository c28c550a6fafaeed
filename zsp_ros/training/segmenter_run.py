"""A trained segmenter as stages 2-3 see it: weights file, model config, categories, hash.

``RUN`` may be a run directory written by `zsp train segmenter` / `zsp train oracle`
(``config.yaml``, ``categories.json``, ``segmenter.safetensors``) or one weights file of such a
run, e.g. ``RUN/checkpoints/model_0000500.safetensors`` (``config.yaml`` and
``categories.json`` are then looked up in the file's folder and the folder above it). The
hash is the sha256 of the weights file (`segmenter_hash`), the key every
cached artifact of stages 2-3 (feature bank, validation cache) is stored under.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zsp_ros.model.build import build_mask2former, load_config
from zsp_ros.training.checkpoint import load_weights
from zsp_ros.training.feature_bank import sha256_file

# zsp_ros/training/train_segmenter.py writes RUN/segmenter.safetensors; a kit holds network.safetensors.
SEGMENTER_WEIGHT_FILES = ("segmenter.safetensors", "network.safetensors", "model.safetensors")


@dataclass(frozen=True)
class SegmenterRun:
    """Paths and metadata of a trained segmenter.

    Attributes:
        weights: the safetensors weights file (whole model, class head included).
        run_dir: the folder holding config.yaml and categories.json.
        config: the resolved run config (``model`` and ``train`` sections).
        categories: the training categories, list index = class index:
            ``[{"index", "id", "name", "isthing"}]``.
        sha256: hex sha256 of ``weights``.
    """

    weights: Path
    run_dir: Path
    config: dict[str, Any]
    categories: list[dict[str, Any]]
    sha256: str

    @property
    def short_hash(self) -> str:
        """First 12 hex digits of the weights' sha256 (used in cache file names)."""
        return self.sha256[:12]


def segmenter_hash(run: str | Path) -> str:
    """sha256 of the segmenter weights: RUN itself if a file, else the first of
    SEGMENTER_WEIGHT_FILES inside the RUN directory."""
    run = Path(run)
    if run.is_file():
        return sha256_file(run)
    for name in SEGMENTER_WEIGHT_FILES:
        if (run / name).is_file():
            return sha256_file(run / name)
    raise FileNotFoundError(f"no segmenter weights in {run} (looked for {', '.join(SEGMENTER_WEIGHT_FILES)})")


def resolve_segmenter(run: str | Path) -> SegmenterRun:
    """Find the weights, config and categories of ``run`` (a run directory or a weights file)."""

    run = Path(run)
    if run.is_file():
        weights = run
        candidates = [run.parent, run.parent.parent]
    elif run.is_dir():
        found = [run / name for name in SEGMENTER_WEIGHT_FILES if (run / name).is_file()]
        if not found:
            raise FileNotFoundError(f"no segmenter weights in {run} (looked for "
                                    f"{', '.join(SEGMENTER_WEIGHT_FILES)}); has training finished? "
                                    f"A checkpoint file (RUN/checkpoints/model_*.safetensors) also works")
        weights = found[0]
        candidates = [run]
    else:
        raise FileNotFoundError(f"segmenter {run} does not exist")
    run_dir = next((d for d in candidates if (d / "config.yaml").is_file()
                    and (d / "categories.json").is_file()), None)
    if run_dir is None:
        raise FileNotFoundError(f"no config.yaml + categories.json beside the segmenter weights {weights} "
                                f"(looked in {', '.join(str(d) for d in candidates)})")
    categories = json.loads((run_dir / "categories.json").read_text())
    if [c.get("index", i) for i, c in enumerate(categories)] != list(range(len(categories))):
        raise ValueError(f"{run_dir / 'categories.json'}: 'index' must count 0, 1, 2, ...")
    return SegmenterRun(weights=weights, run_dir=run_dir, config=load_config(run_dir / "config.yaml"),
                        categories=categories, sha256=sha256_file(weights))


def load_segmenter(run: str | Path | SegmenterRun, *, device: str | torch.device = "cpu"
                   ) -> tuple[torch.nn.Module, SegmenterRun]:
    """Build the run's Mask2Former, load its weights (strict) -> (model in eval mode, run)."""

    info = run if isinstance(run, SegmenterRun) else resolve_segmenter(run)
    model = build_mask2former(info.config["model"], num_classes=len(info.categories))
    load_weights(info.weights, model)
    return model.to(device).eval(), info
