"""`zsp train pading`: PADing stages 2-3 on a feature bank (the segmenter itself stays frozen).

    zsp train pading --bank BANK --segmenter RUN --config config/pading_synth.yaml --out RUN2 \
        [--variant pading|gmmn|primitives|primitives_alignment] [--seed 0]

`train_pading` encodes the bank's category names with the configured text encoder, trains
the generator and the classifier alongside it (`zsp_ros.training.pading_trainer`, whose
docstring gives the step), then refits the final head on the whole bank plus generated unseen
embeddings (`zsp_ros.training.pading_final_head`, warm-started from the head trained alongside).

OUT/ receives generator.safetensors, head.safetensors (weight [K+1, E], bias [K+1]; row i =
categories[i] of config.json, the last row no object), head_online.safetensors (the head
trained alongside), text_embeddings.safetensors (formats: zsp_ros/pading/artifacts.py),
config.json (resolved config, categories, text encoder, bank, metrics, provenance),
checkpoint.pt (resumable: models, optimizers, scheduler, per-rank RNG states; format 2) and
tb/ (TensorBoard). Re-running the same command resumes, bitwise equal to an uninterrupted run
(tests/test_training_resume_full.py).

Several processes (the released code runs this stage on one GPU only):

    torchrun --nproc_per_node N -m zsp_ros.training.train_pading --bank ... --device cuda ...

(or ``torchrun --nproc_per_node N --no-python zsp train pading ...``). ``images_per_step`` is
the global batch; it must be divisible by N. The run follows the same loss trajectory as one
process with the same seed (tests/test_training_ddp_pading.py). Only rank 0 writes files; the
final head is fitted on rank 0 only (the others wait at a barrier), as it writes
head.safetensors and needs no collective.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from zsp_ros.pading.artifacts import save_generator, save_head, save_text_embeddings
from zsp_ros.semantics.build import build_text_encoder
from zsp_ros.training import distributed
from zsp_ros.training.feature_bank import load_feature_bank
from zsp_ros.training.pading_config import VARIANTS, load_config, validate_config
from zsp_ros.training.pading_final_head import fit_final_head
from zsp_ros.training.pading_trainer import PadingTrainer
from zsp_ros.training.segmenter_run import segmenter_hash
from zsp_ros.utils.provenance import atomic_write_bytes, provenance, write_json


def encode_categories(cfg: dict[str, Any], names: list[str], *, override: str | None = None,
                      clip_weights: str | None = None) -> tuple[torch.Tensor, str]:
    """Text embeddings [K, Ds] of ``names`` with the configured encoder -> (tensor, identifier)."""
    name = override or cfg["text_encoder"]["name"]
    kwargs = dict(cfg["text_encoder"]["kwargs"] or {}) if override is None else {}
    if name.startswith("attributes") and "vocabularies" not in kwargs:
        kwargs["names"] = names
    if clip_weights:
        kwargs["weights"] = clip_weights
    encoder = build_text_encoder(name, **kwargs)
    return torch.from_numpy(encoder.encode(names)), encoder.identifier


def train_pading(*, bank_path: str | Path, segmenter: str | Path, config: dict[str, Any],
                 out_dir: str | Path, variant: str = "pading", seed: int = 0, steps: int | None = None,
                 device: str = "cpu", text_encoder: str | None = None, clip_weights: str | None = None,
                 restart: bool = False, progress: bool = True, tensorboard: bool | None = None,
                 command: list[str] | None = None) -> dict[str, Any]:
    """Run stages 2-3 and write OUT (see the module docstring); returns the summary written to
    config.json (on ranks > 0: the same without the final head's metrics).

    Under torchrun (WORLD_SIZE > 1 in the environment) every process calls this; it joins the
    process group (``device`` "cuda" -> cuda:LOCAL_RANK, "cpu" -> gloo) and leaves it at the
    end unless the caller had joined it already.
    """
    from tqdm import tqdm

    validate_config(config)
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info = distributed.init_distributed(device)
    try:
        return _train(bank_path=bank_path, segmenter=segmenter, config=config, out_dir=out_dir,
                      variant=variant, seed=seed, steps=steps, info=info,
                      text_encoder=text_encoder, clip_weights=clip_weights, restart=restart,
                      progress=progress, tensorboard=tensorboard, command=command, tqdm=tqdm)
    finally:
        if owns_group:
            distributed.shutdown()


def _train(*, bank_path: str | Path, segmenter: str | Path, config: dict[str, Any],
           out_dir: str | Path, variant: str, seed: int, steps: int | None,
           info: distributed.DistInfo, text_encoder: str | None, clip_weights: str | None,
           restart: bool, progress: bool, tensorboard: bool | None, command: list[str] | None,
           tqdm: Any) -> dict[str, Any]:
    out = Path(out_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    bank = load_feature_bank(bank_path, segmenter_hash=segmenter_hash(segmenter))
    names = [c["name"] for c in bank.categories]
    semantic, encoder_id = encode_categories(config, names, override=text_encoder,
                                             clip_weights=clip_weights)
    trainer = PadingTrainer(bank=bank, semantic=semantic, cfg=config, variant=variant, seed=seed,
                            device=info.device, rank=info.rank, world_size=info.world_size)
    total_steps = int(steps if steps is not None else config["optim"]["steps"])
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not restart:
        trainer.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        if info.is_main:
            print(f"resuming {out} at step {trainer.step}")
    distributed.barrier()          # every rank has read checkpoint.pt before rank 0 rewrites it

    log_cfg = config["logging"]
    use_tb = log_cfg["tensorboard"] if tensorboard is None else tensorboard
    writer = None
    if use_tb and info.is_main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tb"), purge_step=trainer.step)

    def save_checkpoint() -> None:
        state = trainer.state_dict()                   # collective: every rank
        if info.is_main:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write_bytes(ckpt, buffer.getvalue())

    started = time.time()
    logs: dict[str, float] = {}
    bar = tqdm(total=total_steps, initial=trainer.step, desc=f"pading/{variant}", unit="step",
               disable=not (progress and info.is_main))
    while trainer.step < total_steps:
        logs = trainer.train_step()
        bar.update(1)
        if trainer.step % log_cfg["log_every"] == 0 or trainer.step == total_steps:
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logs.items() if k.startswith("loss/")})
            if writer is not None:
                for key, value in logs.items():
                    if math.isfinite(value):
                        writer.add_scalar(key, value, trainer.step)
        if trainer.step % log_cfg["checkpoint_every"] == 0 or trainer.step == total_steps:
            save_checkpoint()
    bar.close()
    if trainer.step == 0:
        save_checkpoint()

    categories = [dict(c) for c in bank.categories]
    common = {"variant": variant, "seed": seed,
              "text_encoder": {"id": encoder_id, "dim": int(semantic.shape[1])},
              "categories": categories, "segmenter_hash": bank.segmenter_hash}
    metrics = {"steps": trainer.step, "train_seconds_this_run": round(time.time() - started, 2),
               **{k: v for k, v in logs.items() if math.isfinite(v)}}
    summary = {"format": "zsp-pading-run", "config": config, **common,
               "head_rows": [c["id"] for c in categories] + [0],
               "bank": {"path": str(Path(bank_path).resolve()), "rows": len(bank),
                        "embed_dim": bank.embed_dim, "extra": bank.extra},
               "segmenter": str(segmenter), "world_size": info.world_size, "metrics": metrics}
    if info.is_main:                                   # files and the final head: rank 0 only
        _finish(trainer, out, config=config, common=common, metrics=metrics, semantic=semantic,
                names=names, encoder_id=encoder_id, writer=writer)
        summary["provenance"] = provenance(command)
        write_json(out / "config.json", summary)
    distributed.barrier()
    return summary


def _finish(trainer: PadingTrainer, out: Path, *, config: dict[str, Any], common: dict[str, Any],
            metrics: dict[str, Any], semantic: torch.Tensor, names: list[str], encoder_id: str,
            writer: Any) -> None:
    """Rank 0: the heads (online and final), the generator, the text embeddings, TensorBoard."""
    save_head(out / "head_online.safetensors", trainer.head, metadata=common)
    head = trainer.head
    if config["final_head"]["enabled"]:
        t0 = time.time()
        head, head_metrics = fit_final_head(trainer)
        metrics.update(head_metrics, final_head_seconds=round(time.time() - t0, 3))
    save_head(out / "head.safetensors", head, metadata=common)
    save_generator(out / "generator.safetensors", trainer.generator,
                   metadata={"text_encoder": common["text_encoder"], "variant": common["variant"]})
    save_text_embeddings(out / "text_embeddings.safetensors", semantic, names=names,
                         identifier=encoder_id)
    if writer is not None:
        for key, value in metrics.items():
            if key.startswith("final_head/") and math.isfinite(value):
                writer.add_scalar(key, value, trainer.step)
        writer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bank", required=True, help="feature bank .safetensors (zsp_ros/training/feature_bank.py)")
    parser.add_argument("--segmenter", required=True,
                        help="segmenter run directory or weights file (its sha256 must match the bank)")
    parser.add_argument("--config", required=True, help="PADing config YAML (config/pading_*.yaml)")
    parser.add_argument("--out", required=True, help="output run directory")
    parser.add_argument("--variant", default="pading", choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override optim.steps")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda (under torchrun: cuda:LOCAL_RANK), cuda:N or auto")
    parser.add_argument("--text-encoder", default=None, help="override text_encoder.name (e.g. attributes)")
    parser.add_argument("--clip-weights", default=None, help="local CLIP weights file for clip encoders")
    parser.add_argument("--restart", action="store_true", help="ignore OUT/checkpoint.pt")
    parser.add_argument("--no-tensorboard", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.device == "cpu":
        torch.set_num_threads(min(torch.get_num_threads(), 2))
    summary = train_pading(bank_path=args.bank, segmenter=args.segmenter, config=load_config(args.config),
                           out_dir=args.out, variant=args.variant, seed=args.seed, steps=args.steps,
                           device=args.device, text_encoder=args.text_encoder,
                           clip_weights=args.clip_weights, restart=args.restart,
                           progress=not args.quiet, tensorboard=False if args.no_tensorboard else None)
    if "provenance" in summary:                       # rank 0 (the one that wrote config.json)
        print(json.dumps({k: summary["metrics"][k] for k in sorted(summary["metrics"])}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m zsp_ros.training.train_pading ...`` (what torchrun starts)."""
    parser = argparse.ArgumentParser(prog="zsp train pading", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
