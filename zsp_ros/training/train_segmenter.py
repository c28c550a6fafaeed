# Just over 400 lines: the config schema, dataset choice and training loop of one stage, read top to bottom.
"""`zsp train segmenter`: PADing stage 1 — Mask2Former on the seen categories (ZSP protocol).

    zsp train segmenter --config config/synth_small.yaml --data DIR --out RUN_DIR
                        [--iters N] [--batch-size B] [--seed K] [--resume] [--device auto|cpu|cuda]
                        [--init-from KIT [--start-iteration N]]
                        [--num-workers W] [--eval] [--eval-only] [--eval-limit N] [--no-progress]
    zsp train segmenter --config config/r50_coco_panoptic.yaml --coco COCO --protocol zsp
                        --out RUN_DIR [--split-file SPLIT.json] [--crop-size S] [same options]

Several processes: ``torchrun --nproc_per_node N -m zsp_ros.training.train_segmenter ...`` (the global
batch ``train.batch_size`` is split over them; NCCL on GPUs, gloo on CPUs).

RUN_DIR afterwards:

    config.yaml            the resolved config (model + train, command-line overrides applied)
    provenance.json        command, git revision, machine, library versions, arguments
    categories.json        the training categories: list index = class index, {index,id,name,isthing}
    checkpoints/           periodic checkpoints (zsp_ros/training/checkpoint.py), for --resume
    tensorboard/           scalars train/* ; metrics.jsonl: the same, one JSON line per log step
    segmenter.safetensors  final weights (all of the model, class head included)
    train_summary.json     iterations, wall time, s/iteration, last losses, machine
    eval/                  with --eval: panoptic_val.json + panoptic_val/ (COCO panoptic
                           predictions) and metrics_panoptic.json (`zsp eval panoptic` numbers)

--init-from KIT starts a new run from a model kit's network and seen head (fresh optimizer;
zsp_ros/training/init_from_kit.py); --start-iteration N places the poly schedule at N, so a kit's
network can be trained further when the run that made it is gone.

Training data: DIR/annotations/panoptic_train_zsp.json (images with an unseen pixel dropped),
classes = the seen categories of DIR/split.json in split order. `zsp_ros/training/train_oracle.py`
runs the same code on DIR/annotations/panoptic_train.json with every category.

COCO (``--coco COCO --protocol P``, instead of ``--data``): the training split of protocol P
through zsp_ros.data.coco_real (zsp: panoptic 2017 ZSP view, made by `zsp data prepare`; zss:
COCO-Stuff 171 with unseen pixels ignored; zsi-48-17 / zsi-65-15: instances 2014 without
unseen annotations); classes = the seen categories of config/coco_splits/<P's split> in split
order (``--split-file``: a split.json of one's own COCO-format data instead). Each image is
flipped (``train.hflip``) and then large-scale jittered as Mask2Former's COCO mappers
(zsp_ros.data.large_scale_jitter, ``train.large_scale_jitter`` {crop_size, min_scale,
max_scale}, required with --coco; ``--crop-size`` overrides the crop). Missing inputs stop the
run with the missing paths and a pointer to `zsp data check --coco COCO`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from zsp_ros.data.coco_datasets import RandomResizeCrop, world_dataset
from zsp_ros.data.coco_real import COCO_PROTOCOLS, coco_training_dataset
from zsp_ros.data.large_scale_jitter import LargeScaleJitter
from zsp_ros.model.build import build_mask2former, load_config
from zsp_ros.training import checkpoint, distributed, loop
from zsp_ros.training.criterion import build_criterion
from zsp_ros.training.init_from_kit import load_kit_weights, place_schedule
from zsp_ros.training.loop import LoopSettings, run_training
from zsp_ros.training.optim import build_optimizer, build_scheduler
from zsp_ros.training.segmenter_eval import evaluate_run
from zsp_ros.utils.provenance import atomic_write_bytes, provenance, seed_everything, write_json

# view name -> what it trains on (zsp_ros.data.coco_datasets.world_dataset does the reading)
VIEWS: dict[str, str] = {
    "zsp": "annotations/panoptic_train_zsp.json, seen categories (PADing stage 1)",
    "all": "annotations/panoptic_train.json, all categories (the oracle)",
}

# The config's `train:` section. Required keys (config/*.yaml holds their values):
TRAIN_REQUIRED = ("seed", "batch_size", "iterations", "optimizer", "lr", "backbone_multiplier",
                  "weight_decay", "weight_decay_norm", "weight_decay_embed", "poly_power",
                  "warmup_iterations", "clip_grad_norm", "amp", "loss_weights",
                  "no_object_weight", "num_points", "oversample_ratio", "importance_sample_ratio",
                  "deep_supervision", "checkpoint_period")
# Loop mechanics a config may leave out; the resolved config in RUN_DIR records the values used.
TRAIN_OPTIONAL = {
    "warmup_factor": 0.001,     # LR factor at iteration 0, linear to 1 at warmup_iterations (detectron2)
    "hflip": True,              # random horizontal flips (per-image RNG)
    "size_divisibility": 32,    # pad batches to multiples of this (the model's input contract)
    "log_period": 20,           # iterations between TensorBoard / metrics.jsonl points
    "keep_last": 3,             # periodic checkpoints kept
    "num_workers": 0,           # DataLoader worker processes
    "scale_range": None,        # [lo, hi]: random rescale + crop/pad back to the image size
}
# With --coco only: the config's train.large_scale_jitter must hold these keys.
LSJ_KEYS = ("crop_size", "min_scale", "max_scale")


@dataclasses.dataclass(frozen=True)
class CocoSource:
    """Where a COCO run reads its data: ``root`` (COCO layout), ``protocol`` (a COCO_PROTOCOLS
    name) and an optional ``split_file`` replacing the protocol's split."""

    root: Path
    protocol: str
    split_file: Path | None = None

    def describe(self) -> dict[str, Any]:
        return {"coco": str(self.root), "protocol": self.protocol,
                "split_file": None if self.split_file is None else str(self.split_file)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML with `model:` and `train:` sections "
                        "(optional with --resume / --eval-only: RUN_DIR/config.yaml is used)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="COCO-format world directory (split.json, ...)")
    source.add_argument("--coco", type=Path,
                        help="COCO root folder (layout: `zsp data check --coco DIR`)")
    parser.add_argument("--protocol", choices=tuple(COCO_PROTOCOLS),
                        help="with --coco: zero-shot protocol / split (default zsp)")
    parser.add_argument("--split-file", type=Path,
                        help="with --coco: split.json replacing the protocol's (own COCO-format data)")
    parser.add_argument("--crop-size", type=int,
                        help="with --coco: override train.large_scale_jitter.crop_size (pixels)")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--iters", type=int, help="override train.iterations (optimizer steps)")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size (global batch)")
    parser.add_argument("--seed", type=int, help="override train.seed (init, data order, points)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from RUN_DIR/checkpoints (same config, same seed)")
    parser.add_argument("--init-from", type=Path, metavar="KIT",
                        help="start from a model kit's network and seen head (a new run; fresh optimizer)")
    parser.add_argument("--start-iteration", type=int, default=0,
                        help="with --init-from: the iteration the schedule starts at (default 0)")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    parser.add_argument("--num-workers", type=int, help="override train.num_workers")
    parser.add_argument("--eval", action="store_true",
                        help="after training, predict the val split and score it (PQ)")
    parser.add_argument("--eval-only", action="store_true",
                        help="skip training; evaluate RUN_DIR/segmenter.safetensors")
    parser.add_argument("--eval-limit", type=int, help="evaluate only the first N val images")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def run(args: argparse.Namespace) -> int:
    return train_from_args(args, view="zsp")


def coco_source(args: argparse.Namespace) -> CocoSource | None:
    """The COCO source of the command line (None with --data); COCO-only options with --data exit."""
    coco = getattr(args, "coco", None)
    if coco is None:
        used = [flag for flag, name in (("--protocol", "protocol"), ("--split-file", "split_file"),
                                        ("--crop-size", "crop_size"))
                if getattr(args, name, None) is not None]
        if used:
            raise SystemExit(f"zsp train: {', '.join(used)} only apply with --coco")
        return None
    if args.eval or args.eval_only:
        raise SystemExit("zsp train: --eval / --eval-only read the synthetic-world layout; for COCO "
                         "predict and score with `zsp eval` (see docs/REAL_DATA.md)")
    return CocoSource(root=Path(coco), protocol=args.protocol or "zsp", split_file=args.split_file)


def train_from_args(args: argparse.Namespace, *, view: str) -> int:
    """Shared by `zsp train segmenter` (view "zsp") and `zsp train oracle` (view "all")."""
    coco = coco_source(args)
    cfg = resolve_config(args)
    if args.eval_only:
        evaluate_run(args.out, data_dir=args.data, device=args.device, limit=args.eval_limit)
        return 0
    init_from = getattr(args, "init_from", None)
    start_iteration = int(getattr(args, "start_iteration", 0) or 0)
    if init_from is not None and args.resume:
        raise SystemExit("zsp train: --init-from starts a new run; it cannot be combined with --resume")
    if init_from is None and start_iteration:
        raise SystemExit("zsp train: --start-iteration only applies with --init-from")
    if not 0 <= start_iteration < int(cfg["train"]["iterations"]):
        raise SystemExit(f"zsp train: --start-iteration {start_iteration} must be in [0, "
                         f"train.iterations = {cfg['train']['iterations']})")
    summary = train(cfg, data_dir=args.data, out_dir=args.out, view=view, resume=args.resume,
                    device=args.device, progress=not args.no_progress, argv=sys.argv, coco=coco,
                    init_from=init_from, start_iteration=start_iteration)
    if args.eval and summary["rank"] == 0:
        evaluate_run(args.out, data_dir=args.data, device=args.device, limit=args.eval_limit)
    return 0


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config to run: --config (or RUN_DIR/config.yaml on resume) + command-line overrides."""

    saved = args.out / "config.yaml"
    if args.config is None:
        if not (args.resume or args.eval_only) or not saved.is_file():
            raise SystemExit("zsp train: --config is required (unless --resume / --eval-only "
                             f"with an existing {saved})")
        cfg = load_config(saved)
    else:
        cfg = load_config(args.config)
    for section in ("model", "train"):
        if not isinstance(cfg.get(section), Mapping):
            raise SystemExit(f"zsp train: config has no `{section}:` section")
    train_cfg = {**cfg["train"],
                 **{k: v for k, v in TRAIN_OPTIONAL.items() if k not in cfg["train"]}}
    missing = [k for k in TRAIN_REQUIRED if k not in train_cfg]
    if missing:
        raise SystemExit(f"zsp train: config `train:` lacks {missing}")
    if str(train_cfg["optimizer"]).lower() != "adamw":
        raise SystemExit(f"zsp train: train.optimizer {train_cfg['optimizer']!r} is not "
                         "supported (adamw, as Mask2Former)")
    if train_cfg["amp"] and not _loop_has("amp"):
        raise SystemExit("zsp train: train.amp: true is not supported by this loop (fp32 only)")
    for key, value in (("iterations", args.iters), ("batch_size", args.batch_size),
                       ("num_workers", args.num_workers), ("seed", args.seed)):
        if value is not None:
            train_cfg[key] = value
    if getattr(args, "coco", None) is not None:
        train_cfg["large_scale_jitter"] = _resolve_lsj(train_cfg, getattr(args, "crop_size", None))
    return {**cfg, "train": train_cfg}


def _loop_has(name: str) -> bool:
    """Whether zsp_ros.training.loop.LoopSettings has the field ``name`` (e.g. ``amp``)."""
    return name in {f.name for f in dataclasses.fields(LoopSettings)}


def _amp_and_scaler(value: Any, device: torch.device) -> tuple[str | None, Any]:
    """``train.amp`` -> (the loop's amp mode or None when the loop has no ``amp``, GradScaler of
    an fp16 run or None); a mode the device cannot run exits with the loop's reason."""

    if not _loop_has("amp"):
        return None, None
    try:
        mode = loop.resolve_amp(value, device)
    except ValueError as exc:
        raise SystemExit(f"zsp train: {exc}") from None
    return mode, loop.build_grad_scaler(mode, device)


def _resolve_lsj(train_cfg: Mapping[str, Any], crop_size: int | None) -> dict[str, Any]:
    """``train.large_scale_jitter`` checked, with the --crop-size override applied."""
    lsj = train_cfg.get("large_scale_jitter")
    if not isinstance(lsj, Mapping) or any(k not in lsj for k in LSJ_KEYS):
        raise SystemExit(f"zsp train --coco: config `train:` needs large_scale_jitter with "
                         f"{list(LSJ_KEYS)} (see config/r50_coco_panoptic.yaml), got {lsj!r}")
    unknown = sorted(set(lsj) - set(LSJ_KEYS))
    if unknown:
        raise SystemExit(f"zsp train --coco: train.large_scale_jitter has unknown keys {unknown}")
    if train_cfg.get("scale_range") is not None:
        raise SystemExit("zsp train --coco: train.scale_range (the synthetic world's rescale) and "
                         "train.large_scale_jitter exclude each other; set scale_range: null")
    lsj = {k: lsj[k] for k in LSJ_KEYS}
    if crop_size is not None:
        if crop_size < 1:
            raise SystemExit(f"zsp train: --crop-size must be >= 1, got {crop_size}")
        lsj["crop_size"] = int(crop_size)
    return lsj


def build_dataset(data_dir: Path, view: str) -> torch.utils.data.Dataset:
    """The training dataset of ``view``; ``dataset.categories`` is the class list (split order)."""

    protocol = {"zsp": "zero-shot", "all": "supervised"}[view]
    return world_dataset(data_dir, task="panoptic", split="train", protocol=protocol)


def build_coco_dataset(source: CocoSource, view: str) -> torch.utils.data.Dataset:
    """The COCO training dataset of ``view`` (zsp: seen classes; all: every class of the split).

    Missing files exit naming them and `zsp data check --coco ROOT`.
    """

    try:
        return coco_training_dataset(source.root, protocol=source.protocol, supervised=view == "all",
                                     split_file=source.split_file)
    except FileNotFoundError as exc:
        raise SystemExit(f"zsp train --coco: {exc}") from None


def build_lsj(lsj: Mapping[str, Any]) -> Any:
    """``train.large_scale_jitter`` -> the per-image LSJ augment (the loop flips before it)."""

    return LargeScaleJitter(crop_size=int(lsj["crop_size"]), min_scale=float(lsj["min_scale"]),
                            max_scale=float(lsj["max_scale"]), flip_prob=0.0)


def build_augment(scale_range: Any) -> Any:
    """``train.scale_range`` -> a per-image rescale-and-crop (same output size), or None."""
    if scale_range is None:
        return None

    lo, hi = (float(v) for v in scale_range)

    def augment(image: torch.Tensor, target: dict, generator: torch.Generator):
        crop = RandomResizeCrop(output_size=tuple(image.shape[1:]), scale_range=(lo, hi))
        return crop(image, target, generator=generator)
    return augment


def category_list(dataset: torch.utils.data.Dataset) -> list[dict[str, Any]]:
    """categories.json rows: list index = class index."""
    return [{"index": i, "id": int(c["id"]), "name": c["name"], "isthing": bool(c["isthing"])}
            for i, c in enumerate(dataset.categories)]


def _count_aux(model: torch.nn.Module, device: torch.device, size: int) -> int:
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size, size, device=device))
    return len(out.get("aux_outputs", ()))


def train(cfg: Mapping[str, Any], *, data_dir: Path | None, out_dir: Path, view: str,
          resume: bool = False, device: str = "auto", progress: bool = True,
          argv: list[str] | None = None, coco: CocoSource | None = None,
          init_from: Path | None = None, start_iteration: int = 0) -> dict[str, Any]:
    """Train a segmenter per ``cfg`` on ``view`` of ``data_dir`` (or of ``coco``, then with
    ``cfg["train"]["large_scale_jitter"]``) into ``out_dir``; returns the summary (also
    written to ``train_summary.json`` by rank 0). ``init_from``: a model kit whose weights start
    the run, its schedule placed at ``start_iteration`` (zsp_ros/training/init_from_kit.py)."""

    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {sorted(VIEWS)}")
    info = distributed.init_distributed(device)
    tc = cfg["train"]
    seed = int(tc["seed"])
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if not resume and checkpoint.latest_checkpoint(ckpt_dir) is not None:
        raise SystemExit(f"{out_dir} already holds a training run; pass --resume to continue it "
                         "or choose another --out")
    if resume and checkpoint.latest_checkpoint(ckpt_dir) is None:
        raise SystemExit(f"--resume: no checkpoint in {ckpt_dir}")
    if int(tc["batch_size"]) % info.world_size:
        raise SystemExit(f"train.batch_size {tc['batch_size']} is not divisible by the "
                         f"{info.world_size} processes")

    if coco is None:
        dataset = build_dataset(data_dir, view)
        augment = build_augment(tc["scale_range"])
    else:
        dataset = build_coco_dataset(coco, view)
        augment = build_lsj(tc["large_scale_jitter"])
    categories = category_list(dataset)
    if coco is not None and resume and (out_dir / "categories.json").is_file():
        previous = json.loads((out_dir / "categories.json").read_text())
        if [c["id"] for c in previous] != [c["id"] for c in categories]:
            raise SystemExit(f"--resume: {out_dir / 'categories.json'} lists other classes than "
                             f"protocol {coco.protocol} gives; resume with the run's --protocol / --split-file")
    seed_everything(seed)
    model = build_mask2former(cfg["model"], num_classes=len(categories)).to(info.device)
    num_aux = (_count_aux(model, info.device, 2 * int(tc["size_divisibility"]))
               if tc["deep_supervision"] else 0)
    criterion = build_criterion(tc, num_classes=len(categories), num_aux=num_aux)
    optimizer = build_optimizer(model, lr=float(tc["lr"]), weight_decay=float(tc["weight_decay"]),
                                backbone_multiplier=float(tc["backbone_multiplier"]),
                                weight_decay_norm=float(tc["weight_decay_norm"]),
                                weight_decay_embed=float(tc["weight_decay_embed"]))
    scheduler = build_scheduler(optimizer, max_iters=int(tc["iterations"]),
                                power=float(tc["poly_power"]),
                                warmup_iters=int(tc["warmup_iterations"]),
                                warmup_factor=float(tc["warmup_factor"]))
    amp, scaler = _amp_and_scaler(tc["amp"], info.device)
    start_iter = 0
    if resume:
        start_iter = checkpoint.load_checkpoint(ckpt_dir, model=model, optimizer=optimizer,
                                                scheduler=scheduler,
                                                **({} if scaler is None else {"scaler": scaler}))
        for schedule in scheduler.lr_lambdas:                  # --iters may extend a run
            schedule.max_iters = int(tc["iterations"])
    initialised = None
    if init_from is not None:
        initialised = load_kit_weights(model, init_from, categories=categories,
                                       model_config=cfg["model"])
        initialised["start_iteration"] = start_iter = int(start_iteration)
        place_schedule(scheduler, start_iter)
    if info.is_main:
        _write_run_files(out_dir, cfg, categories, seed=seed, view=view, argv=argv,
                         world_size=info.world_size, dataset_size=len(dataset),
                         extra={**({} if coco is None else {"data": coco.describe()}),
                                **({} if initialised is None else {"init_from": initialised})})
    settings = LoopSettings(max_iters=int(tc["iterations"]), global_batch=int(tc["batch_size"]),
                            seed=seed, clip_grad_norm=float(tc["clip_grad_norm"]),
                            flip=bool(tc["hflip"]), size_divisibility=int(tc["size_divisibility"]),
                            log_period=int(tc["log_period"]),
                            checkpoint_period=int(tc["checkpoint_period"]),
                            keep_last=int(tc["keep_last"]), num_workers=int(tc["num_workers"]),
                            progress=progress, augment=augment,
                            **({} if amp is None else {"amp": amp}))
    t0 = time.perf_counter()
    history = run_training(model=model, criterion=criterion, optimizer=optimizer,
                           scheduler=scheduler, dataset=dataset, info=info, settings=settings,
                           start_iter=start_iter, out_dir=out_dir,
                           **({} if scaler is None else {"scaler": scaler}))
    seconds = time.perf_counter() - t0
    summary = {"rank": info.rank, "view": view, "iterations": int(tc["iterations"]),
               "start_iteration": start_iter, "seconds": round(seconds, 2),
               "seconds_per_iteration": round(seconds / max(1, len(history)), 4),
               "global_batch": int(tc["batch_size"]), "world_size": info.world_size,
               "device": str(info.device), "train_images": len(dataset),
               "num_classes": len(categories), "last": history[-1] if history else None}
    if coco is not None:
        summary["data"] = coco.describe()
    if info.is_main:
        checkpoint.save_weights(out_dir / "segmenter.safetensors", model,
                                metadata={"iterations": str(tc["iterations"]), "view": view})
        write_json(out_dir / "train_summary.json", {**summary, "provenance": provenance(argv)})
    distributed.barrier()
    distributed.shutdown()
    return summary


def _write_run_files(out_dir: Path, cfg: Mapping[str, Any], categories: list[dict], *, seed: int,
                     view: str, argv: list[str] | None, world_size: int, dataset_size: int,
                     extra: Mapping[str, Any] | None = None) -> None:
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "config.yaml",
                       yaml.safe_dump(json.loads(json.dumps(dict(cfg))), sort_keys=False).encode())
    write_json(out_dir / "categories.json", categories)
    write_json(out_dir / "provenance.json",
               {**provenance(argv), "seed": seed, "view": view, "world_size": world_size,
                "train_images": dataset_size, **(extra or {})})


def main(argv: list[str] | None = None) -> int:
    """``python -m zsp_ros.training.train_segmenter ...`` (what torchrun starts)."""
    parser = argparse.ArgumentParser(prog="zsp train segmenter", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
