"""`zsp train bank`: the feature bank of a trained segmenter, cached by the segmenter's hash.

    zsp train bank --segmenter RUN --data WORLD --out BANK.safetensors
                   [--protocol zero-shot|supervised] [--batch-size 16] [--force]
    zsp train bank --segmenter RUN --coco COCO --protocol zsp|zss|zsi-48-17|zsi-65-15
                   --out BANK.safetensors [--split-file SPLIT.json] [...]

Runs the frozen segmenter over the training split of WORLD and stores every query embedding
with the category of the ground-truth segment it is matched to (no-object otherwise), in the
format of zsp_ros/training/feature_bank.py.

- ``--protocol zero-shot`` (default, PADing stage 2 input): the ZSP view
  (``panoptic_train_zsp.json``, images with an unseen pixel dropped), seen categories only,
  matched with the segmenter's own training matcher (Hungarian, cost weights and point count
  from the run's ``train:`` section).
- ``--protocol supervised`` (input of the ``oracle_head`` upper bound): every training image
  with every category. The segmenter has no class score for an unseen category, so an unseen
  target's class cost is the query's objectness ``1 - p(no object)`` (seen targets keep
  ``p(class)``); the mask costs are unchanged.

With ``--coco`` the images are the training split of the COCO protocol (the same dataset
`zsp train segmenter --coco` trained on, zsp_ros.data.coco_real.coco_training_dataset, without
augmentation): the seen categories, matched with the training matcher; the bank records all
categories of the protocol's split (or ``--split-file``), seen and unseen, without
``excluded_ids``. The segmenter's categories.json must list the split's seen categories in order.

If BANK already exists and was extracted from the same segmenter weights (sha256), the same
data folder and protocol, it is reused and nothing runs (``--force`` re-extracts).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from scipy.optimize import linear_sum_assignment

from zsp_ros.data import coco_real
from zsp_ros.data.categories import read_split
from zsp_ros.data.coco_datasets import world_dataset
from zsp_ros.data.coco_real import coco_split_categories, coco_training_dataset
from zsp_ros.training.feature_bank import extract_feature_bank, save_feature_bank
from zsp_ros.training.matcher import HungarianMatcher
from zsp_ros.training.segmenter_run import SegmenterRun, load_segmenter, resolve_segmenter
from zsp_ros.utils.provenance import provenance

PROTOCOLS = ("zero-shot", "supervised")
COCO_PROTOCOLS = tuple(coco_real.COCO_PROTOCOLS)     # with --coco: the split short names


class ObjectnessMatcher:
    """Hungarian matching of a seen-category segmenter against targets of any category.

    Cost per (query q, target t): ``cost_class * (-s_qt) + mask and dice costs`` where ``s_qt`` is
    ``p_q(class of t)`` for a target of a segmenter class and ``1 - p_q(no object)`` otherwise.

    Args:
        matcher: supplies the mask costs, point count and weights (its class weight is used here).
        target_to_class: int64 [T] over the dataset's label indices: the segmenter class index of
            each label, or -1 for a category the segmenter was not trained on.
    """

    def __init__(self, *, matcher: HungarianMatcher, target_to_class: torch.Tensor) -> None:
        self.cost_class = matcher.cost_class
        self.mask_costs = HungarianMatcher(cost_class=0.0, cost_mask=matcher.cost_mask,
                                           cost_dice=matcher.cost_dice, num_points=matcher.num_points)
        self.target_to_class = target_to_class.long()

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: Sequence[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """outputs: ``pred_logits`` [B, Q, K+1], ``pred_masks`` [B, Q, h, w]; targets: ``labels``
        [N] (dataset label indices), ``masks`` [N, H, W] -> B pairs (query index, target index)."""
        indices = []
        for b, target in enumerate(targets):
            labels = target["labels"].cpu()
            if labels.numel() == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            cost = self.mask_costs.cost_matrix(outputs["pred_logits"][b], outputs["pred_masks"][b],
                                               torch.zeros_like(labels), target["masks"])   # [Q, N]
            probs = outputs["pred_logits"][b].float().softmax(-1).cpu()                     # [Q, K+1]
            cls = self.target_to_class[labels]                                              # [N]
            score = torch.where(cls[None] >= 0, probs[:, cls.clamp(min=0)], 1 - probs[:, -1:])
            cost = cost + self.cost_class * -score
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices


def _train_matcher(run: SegmenterRun) -> HungarianMatcher:
    """The matcher of the run's training (``train.loss_weights`` and ``train.num_points``)."""
    train = run.config.get("train") or {}
    try:
        weights = train["loss_weights"]
        return HungarianMatcher(cost_class=float(weights["class"]), cost_mask=float(weights["mask"]),
                                cost_dice=float(weights["dice"]), num_points=int(train["num_points"]))
    except KeyError as exc:
        raise ValueError(f"{run.run_dir / 'config.yaml'}: train section lacks {exc} (needed for matching)") from None


def bank_metadata(path: str | Path) -> dict[str, Any] | None:
    """The metadata of an existing bank file (without reading its tensors), or None."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception:            # not a safetensors file: treat as absent, it will be replaced
        return None
    meta["extra"] = json.loads(meta.get("extra", "{}"))
    return meta


def _dataset(data_dir: Path, protocol: str, *, coco: bool, split_file: str | Path | None
             ) -> tuple[torch.utils.data.Dataset, list[dict[str, Any]], str]:
    """(training dataset, the split's categories recorded in the bank, split source)."""
    if coco:

        if protocol not in COCO_PROTOCOLS:
            raise ValueError(f"with --coco the protocol is one of {', '.join(COCO_PROTOCOLS)}, got {protocol!r}")
        dataset = coco_training_dataset(data_dir, protocol=protocol, split_file=split_file)
        source = protocol if split_file is None else str(Path(split_file).resolve())
        return dataset, coco_split_categories(protocol, split_file), source

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}"
                         + (" (the COCO protocols need --coco)" if protocol in COCO_PROTOCOLS else ""))
    if split_file is not None:
        raise ValueError("--split-file applies to --coco only (a world carries its split.json)")
    split = read_split(data_dir / "split.json")
    dataset = world_dataset(data_dir, task="panoptic", split="train", protocol=protocol)
    return dataset, split["categories"], str(data_dir / "split.json")


def ensure_bank(*, segmenter: str | Path | SegmenterRun, data_dir: str | Path, out: str | Path,
                protocol: str = "zero-shot", batch_size: int = 16, device: str = "cpu",
                force: bool = False, progress: bool = True, command: list[str] | None = None,
                coco: bool = False, split_file: str | Path | None = None) -> Path:
    """Extract the bank into ``out`` unless an identical one (segmenter sha256, data, protocol) is there.

    ``coco``: ``data_dir`` is a COCO root and ``protocol`` one of COCO_PROTOCOLS (``split_file``
    replaces the protocol's split). Returns ``out``.
    """
    if protocol not in (COCO_PROTOCOLS if coco else PROTOCOLS):
        choices = COCO_PROTOCOLS if coco else PROTOCOLS
        raise ValueError(f"unknown protocol {protocol!r}{' with --coco' if coco else ''}; choose from "
                         f"{', '.join(choices)}")
    run = segmenter if isinstance(segmenter, SegmenterRun) else resolve_segmenter(segmenter)
    data_dir, out = Path(data_dir).resolve(), Path(out)
    meta = bank_metadata(out)
    if meta is not None and not force:
        same = (meta.get("segmenter_hash") == run.sha256 and meta["extra"].get("data") == str(data_dir)
                and meta["extra"].get("protocol") == protocol
                and meta["extra"].get("split_file") == (None if split_file is None else str(split_file)))
        if same:
            print(f"feature bank {out} is up to date (segmenter {run.short_hash}, {protocol}); reused")
            return out
        print(f"feature bank {out} is of another segmenter/data/protocol; re-extracting")
    dataset, split_categories, split_source = _dataset(data_dir, protocol, coco=coco, split_file=split_file)
    model, _ = load_segmenter(run, device=device)
    matcher = _train_matcher(run)
    seg_index = {int(c["id"]): i for i, c in enumerate(run.categories)}
    if protocol != "supervised":
        ids = [int(c["id"]) for c in dataset.categories]
        if ids != [int(c["id"]) for c in run.categories]:
            raise ValueError(f"the segmenter's categories ({run.run_dir / 'categories.json'}) are not the "
                             f"seen categories of {split_source} in split order")
        match = matcher
    else:
        lut = torch.tensor([seg_index.get(int(c["id"]), -1) for c in dataset.categories])
        match = ObjectnessMatcher(matcher=matcher, target_to_class=lut)
    t0 = time.perf_counter()
    bank = extract_feature_bank(
        model, dataset, match, categories=split_categories, segmenter_hash=run.sha256,
        batch_size=batch_size, device=device, progress=progress,
        extra={"data": str(data_dir), "protocol": protocol, "segmenter": str(run.weights.resolve()),
               **({"split_file": None if split_file is None else str(split_file)} if coco else {}),
               "provenance": provenance(command)})
    bank.extra["seconds"] = round(time.perf_counter() - t0, 2)
    save_feature_bank(out, bank)
    matched = int((bank.category_ids > 0).sum())
    print(f"feature bank {out}: {len(bank)} rows ({matched} matched) from {bank.extra['num_images']} images "
          f"in {bank.extra['seconds']:.0f} s")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segmenter", required=True,
                        help="segmenter run directory (or one of its weights files, e.g. a checkpoint)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="world directory (split.json, annotations/, images/)")
    source.add_argument("--coco", help="COCO root folder (layout: `zsp data check --coco DIR`)")
    parser.add_argument("--out", required=True, help="bank file to write (.safetensors)")
    parser.add_argument("--protocol", choices=PROTOCOLS + COCO_PROTOCOLS,
                        help="--data: zero-shot (default; ZSP view, seen categories, PADing) or supervised "
                             "(every image and category, the oracle_head upper bound); --coco: zsp "
                             "(default), zss, zsi-48-17 or zsi-65-15")
    parser.add_argument("--split-file", help="with --coco: split.json replacing the protocol's")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: unchanged)")
    parser.add_argument("--force", action="store_true", help="re-extract even if BANK is up to date")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys

    if args.threads:
        torch.set_num_threads(args.threads)
    coco = args.coco is not None
    protocol = args.protocol or ("zsp" if coco else "zero-shot")
    try:
        ensure_bank(segmenter=args.segmenter, data_dir=args.coco if coco else args.data, out=args.out,
                    protocol=protocol, batch_size=args.batch_size, device=args.device, force=args.force,
                    progress=not args.quiet, command=sys.argv, coco=coco, split_file=args.split_file)
    except (FileNotFoundError, ValueError) as exc:
        print(f"zsp train bank: {exc}", file=sys.stderr)
        return 1
    return 0
