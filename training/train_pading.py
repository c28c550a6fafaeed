"""`zsp train pading`: PADing stages 2-3 on a feature bank (the segmenter itself stays frozen).

    zsp train pading --bank BANK --segmenter RUN --config config/pading_synth.yaml --out RUN2 \
        [--variant pading|gmmn|primitives|primitives_alignment] [--seed 0]

Each step, as the released code's two-optimizer loop:
1. generator step (Adam): the real query embeddings of ``images_per_step`` random bank images;
   fakes for their matched (seen) rows from the category text embeddings; MMD(fake, real)
   + classification of the fakes through the current classifier (which it does not update)
   + ``structure_weight`` x [alignment of the feature/semantic similarity structure, and the
   disentanglement losses] per the variant;
2. classifier step (SGD): ``Linear(E, K + 1)`` on all those real rows (unmatched = no object)
   + one fake each for ``num_choose`` random unseen categories, class weights seen / unseen /
   no-object.
At the end the final head is refitted on the whole bank plus generated unseen embeddings
(`zsp_ros.pading.head_fit.fit_head`, warm-started from the head trained alongside).

OUT/ receives generator.safetensors, head.safetensors (weight [K+1, E], bias [K+1]; row i =
categories[i] of config.json, the last row no object), head_online.safetensors (the head
trained alongside), text_embeddings.safetensors, config.json (resolved config, categories,
text encoder, bank, metrics, provenance), checkpoint.pt (resumable: models, optimizers,
scheduler, RNG states) and tb/ (TensorBoard). Re-running the same command resumes.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training.feature_bank import FeatureBank, load_feature_bank, sha256_file
from zsp_ros.model.classifier import ClassifierHead
from zsp_ros.model.disentangle import Disentangler
from zsp_ros.model.gmmn_generator import GMMNGenerator
from zsp_ros.model.primitive_generator import PrimitiveGenerator
from zsp_ros.pading import losses as L
from zsp_ros.pading.head_fit import fit_head, pading_class_weights
from zsp_ros.pading.synthesis import synthesize_embeddings
from zsp_ros.utils.provenance import atomic_write_bytes, provenance, seed_everything, write_json

VARIANTS = ("pading", "gmmn", "primitives", "primitives_alignment")
# training/train_segmenter.py writes RUN/segmenter.safetensors; a kit holds network.safetensors.
SEGMENTER_WEIGHT_FILES = ("segmenter.safetensors", "network.safetensors", "model.safetensors")

# The keys every config must hold (values live only in config/*.yaml).
REQUIRED: dict[str, tuple[str, ...]] = {
    "text_encoder": ("name", "kwargs"),
    "generator": ("num_primitives", "num_layers", "num_heads", "ffn_dim", "dropout", "noise_std"),
    "gmmn_generator": ("noise_dim", "hidden_dim", "dropout"),
    "disentangle": ("dropout",),
    "losses": ("mmd_bandwidths", "mmd_mode", "classification_weight", "structure_weight",
               "alignment_weight", "relation_weight", "reconstruction_weight", "relation_factor",
               "unrelated_factor", "temperature"),
    "optim": ("steps", "images_per_step", "generator_lr", "generator_lr_steps", "generator_lr_gamma",
              "classifier_lr", "classifier_momentum", "classifier_weight_decay", "num_choose"),
    "class_weights": ("seen", "unseen", "no_object"),
    "final_head": ("enabled", "fakes_per_class", "max_rows_per_class", "optimizer", "steps", "lr",
                   "weight_decay", "warm_start"),
    "logging": ("log_every", "checkpoint_every", "tensorboard"),
    "variants": (),
}
VARIANT_KEYS = ("generator", "classification_loss", "disentangle", "alignment")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a PADing YAML config and check that it has exactly the required keys."""
    import yaml

    cfg = yaml.safe_load(Path(path).read_text())
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a YAML mapping")
    validate_config(cfg, source=str(path))
    return cfg


def validate_config(cfg: dict[str, Any], *, source: str = "config") -> None:
    """Raise naming every missing or unknown key."""
    problems = [f"unknown section {k!r}" for k in cfg if k not in REQUIRED]
    for section, keys in REQUIRED.items():
        if section not in cfg or not isinstance(cfg[section], dict):
            problems.append(f"missing section {section!r}")
            continue
        if section == "variants":
            for name, spec in cfg[section].items():
                if set(spec) != set(VARIANT_KEYS):
                    problems.append(f"variants.{name} must have exactly {list(VARIANT_KEYS)}")
                elif spec["generator"] not in ("primitive", "gmmn"):
                    problems.append(f"variants.{name}.generator must be primitive or gmmn")
            continue
        problems += [f"missing {section}.{k}" for k in keys if k not in cfg[section]]
        problems += [f"unknown {section}.{k}" for k in cfg[section] if k not in keys]
    if "losses" in cfg and cfg["losses"].get("mmd_mode") not in ("batch", "per_class"):
        problems.append("losses.mmd_mode must be 'batch' or 'per_class'")
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))


def _scalar(value: torch.Tensor) -> float:
    return float(value.detach())


class BankSampler:
    """Draws the rows of random bank images (rows of one image are contiguous after sorting)."""

    def __init__(self, image_ids: torch.Tensor, *, generator: torch.Generator) -> None:
        order = torch.argsort(image_ids, stable=True)
        _, counts = torch.unique_consecutive(image_ids[order], return_counts=True)
        self.order = order
        self.starts = torch.cumsum(counts, 0) - counts
        self.counts = counts
        self.generator = generator

    @property
    def num_images(self) -> int:
        return int(self.counts.numel())

    def sample(self, num_images: int) -> torch.Tensor:
        """Row indices [R] of ``num_images`` distinct random images."""
        pick = torch.randperm(self.num_images, generator=self.generator)[:num_images]
        rows = [torch.arange(int(s), int(s + c)) for s, c in zip(self.starts[pick], self.counts[pick])]
        return self.order[torch.cat(rows)]


class PadingTrainer:
    """Generator (+ disentangler) and classifier trained on a bank; see the module docstring.

    Args:
        bank: the feature bank (categories in split order define the head rows).
        semantic: [K, Ds] float32 text embeddings of ``bank.categories`` in the same order.
        cfg: a validated config dict.
        variant: a key of ``cfg["variants"]``.
        seed: seeds the models' init, the image sampling and every noise draw.
        device: torch device.
    """

    def __init__(self, *, bank: FeatureBank, semantic: torch.Tensor, cfg: dict[str, Any],
                 variant: str, seed: int, device: str = "cpu") -> None:
        if variant not in cfg["variants"]:
            raise ValueError(f"unknown variant {variant!r}; config has {list(cfg['variants'])}")
        self.cfg, self.variant, self.seed, self.device = cfg, variant, seed, torch.device(device)
        self.spec = cfg["variants"][variant]
        self.loss_cfg, self.optim_cfg = cfg["losses"], cfg["optim"]
        cats = bank.categories
        self.num_classes = k = len(cats)
        if semantic.shape[0] != k:
            raise ValueError(f"semantic has {semantic.shape[0]} rows for {k} categories")
        id_to_index = {int(c["id"]): i for i, c in enumerate(cats)}
        self.unseen_index = torch.tensor([i for i, c in enumerate(cats) if not c["seen"]], dtype=torch.long)
        self.seen_index = torch.tensor([i for i, c in enumerate(cats) if c["seen"]], dtype=torch.long)
        lookup = torch.full((max(id_to_index) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(list(id_to_index))] = torch.tensor(list(id_to_index.values()))
        lookup[0] = k                                             # no object -> last row
        self.labels = lookup[bank.category_ids]                   # [M] in [0, K]
        self.embeds = bank.embeds                                 # [M, E] (fp16 kept on CPU)
        if bool((self.labels[self.labels < k, None] == self.unseen_index[None]).any()):
            raise ValueError("the bank labels some rows with unseen categories; stage 2 trains on "
                             "seen categories only")
        self.embed_dim = e = bank.embed_dim
        self.semantic = semantic.float().to(self.device)

        seed_everything(seed)
        if self.spec["generator"] == "primitive":
            self.generator: nn.Module = PrimitiveGenerator(semantic_dim=semantic.shape[1], embed_dim=e,
                                                           **cfg["generator"])
        else:
            self.generator = GMMNGenerator(semantic_dim=semantic.shape[1], embed_dim=e,
                                           **cfg["gmmn_generator"])
        self.generator.to(self.device)
        self.disentangler = (Disentangler(embed_dim=e, semantic_dim=e, **cfg["disentangle"]).to(self.device)
                             if self.spec["disentangle"] else None)
        self.head = ClassifierHead(embed_dim=e, num_classes=k).to(self.device)
        gen_params = list(self.generator.parameters())
        if self.disentangler is not None:
            gen_params += list(self.disentangler.parameters())
        o = self.optim_cfg
        self.opt_generator = torch.optim.Adam(gen_params, lr=o["generator_lr"])
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.opt_generator, milestones=list(o["generator_lr_steps"]), gamma=o["generator_lr_gamma"])
        self.opt_head = torch.optim.SGD(self.head.parameters(), lr=o["classifier_lr"],
                                        momentum=o["classifier_momentum"],
                                        weight_decay=o["classifier_weight_decay"])
        cw = cfg["class_weights"]
        unseen_mask = torch.zeros(k, dtype=torch.bool)
        unseen_mask[self.unseen_index] = True
        self.class_weights = pading_class_weights(unseen_mask, seen_weight=cw["seen"],
                                                  unseen_weight=cw["unseen"],
                                                  no_object_weight=cw["no_object"]).to(self.device)
        self.rng = torch.Generator().manual_seed(seed)
        self.sampler = BankSampler(bank.image_ids, generator=self.rng)
        self.step = 0

    # ---------------------------------------------------------------- generation helpers
    def _queries(self) -> torch.Tensor | None:
        """Projected semantics [K, E] (primitive generator) or None (GMMN)."""
        if isinstance(self.generator, PrimitiveGenerator):
            return self.generator.project(self.semantic)
        return None

    def _fake(self, index: torch.Tensor, queries: torch.Tensor | None) -> torch.Tensor:
        """Fakes [len(index), E] of categories ``index`` (one fresh noise draw each)."""
        if queries is not None:
            return self.generator.generate(queries[index])
        return self.generator(self.semantic[index])

    # ---------------------------------------------------------------- one training step
    def train_step(self) -> dict[str, float]:
        """One generator step and one classifier step; returns the logged scalars."""
        lc, k = self.loss_cfg, self.num_classes
        self.generator.train()
        if self.disentangler is not None:
            self.disentangler.train()
        rows = self.sampler.sample(self.optim_cfg["images_per_step"])
        real = self.embeds[rows].float().to(self.device)              # [R, E]
        labels = self.labels[rows].to(self.device)                    # [R]
        matched = labels < k
        real_seen, y_seen = real[matched], labels[matched]
        logs: dict[str, float] = {"matched_per_step": float(matched.sum())}

        if y_seen.numel() > 0:
            queries = self._queries()
            fake_seen = self._fake(y_seen, queries)
            if lc["mmd_mode"] == "per_class":
                mmd = L.classwise_mmd_loss(fake_seen, y_seen, real_seen, y_seen,
                                           bandwidths=lc["mmd_bandwidths"])
            else:
                mmd = L.mmd_loss(fake_seen, real_seen, bandwidths=lc["mmd_bandwidths"])
            total = mmd
            logs["loss/mmd"] = _scalar(mmd)
            if self.spec["classification_loss"]:
                cls = F.cross_entropy(F.linear(fake_seen, self.head.weight.detach(),
                                               self.head.bias.detach()), y_seen)
                total = total + lc["classification_weight"] * cls
                logs["loss/fake_classification"] = _scalar(cls)
            structure = self._structure_loss(fake_seen, y_seen, queries, logs)
            if structure is not None:
                total = total + lc["structure_weight"] * structure
                logs["loss/structure"] = _scalar(structure)
            self.opt_generator.zero_grad(set_to_none=True)
            total.backward()
            self.opt_generator.step()
            self.scheduler.step()
            logs["loss/generator_total"] = _scalar(total)

        # classifier step: all real rows + one fake for each of num_choose unseen categories
        x, y = real, labels
        if self.unseen_index.numel() > 0 and self.optim_cfg["num_choose"] > 0:
            choose = self.unseen_index[torch.randperm(self.unseen_index.numel(), generator=self.rng)
                                       [:self.optim_cfg["num_choose"]]].to(self.device)
            with torch.no_grad():
                fake_unseen = self._fake(choose, self._queries())
            x, y = torch.cat([real, fake_unseen]), torch.cat([labels, choose])
        ce = F.cross_entropy(self.head(x), y, weight=self.class_weights)
        self.opt_head.zero_grad(set_to_none=True)
        ce.backward()
        self.opt_head.step()
        logs["loss/classifier"] = _scalar(ce)
        logs["lr/generator"] = self.scheduler.get_last_lr()[0]
        self.step += 1
        return logs

    def _structure_loss(self, fake_seen: torch.Tensor, y_seen: torch.Tensor,
                        queries: torch.Tensor | None, logs: dict[str, float]) -> torch.Tensor | None:
        """structure = w1 (alignment + unrelated) + w2 relation + w3 reconstruction (per variant)."""
        spec, lc = self.spec, self.loss_cfg
        if not (spec["alignment"] or spec["disentangle"]):
            return None
        if queries is None:
            raise ValueError(f"variant {self.variant!r}: alignment and disentanglement need the "
                             f"primitive generator's projected semantics")
        t = lc["temperature"]
        unseen = self.unseen_index.to(self.device)
        fake_unseen = self._fake(unseen, queries)
        feat_seen, feat_unseen = fake_seen, fake_unseen
        structure = fake_seen.new_zeros(())
        if self.disentangler is not None:
            rel_s, unrel_s, rec_s = self.disentangler(fake_seen)
            rel_u, unrel_u, rec_u = self.disentangler(fake_unseen)
            seen = self.seen_index.to(self.device)
            seen_pos = torch.full((self.num_classes,), -1, dtype=torch.long, device=self.device)
            seen_pos[seen] = torch.arange(seen.numel(), device=self.device)
            relation_terms = [L.relation_loss(self.disentangler.relation(rel_s, queries[seen]),
                                              seen_pos[y_seen])]
            unrelated_terms = [L.unrelated_kl_loss(unrel_s, temperature=t)]
            rec_terms = [L.reconstruction_loss(rec_s, fake_seen)]
            if unseen.numel() > 0:
                relation_terms.append(L.relation_loss(self.disentangler.relation(rel_u, queries[unseen]),
                                                      torch.arange(unseen.numel(), device=self.device)))
                unrelated_terms.append(L.unrelated_kl_loss(unrel_u, temperature=t))
                rec_terms.append(L.reconstruction_loss(rec_u, fake_unseen))
            relation = lc["relation_factor"] * torch.stack(relation_terms).mean()
            unrelated = lc["unrelated_factor"] * torch.stack(unrelated_terms).mean()
            rec = torch.stack(rec_terms).mean()
            structure = (structure + lc["alignment_weight"] * unrelated + lc["relation_weight"] * relation
                         + lc["reconstruction_weight"] * rec)
            logs.update({"loss/relation": _scalar(relation), "loss/unrelated_kl": _scalar(unrelated),
                         "loss/reconstruction": _scalar(rec)})
            feat_seen, feat_unseen = rel_s, rel_u
        if spec["alignment"]:
            align = L.alignment_loss(feat_seen, queries[y_seen], feat_unseen, queries[unseen],
                                     temperature=t)
            structure = structure + lc["alignment_weight"] * align
            logs["loss/alignment"] = _scalar(align)
        return structure

    # ---------------------------------------------------------------- final head
    def final_head(self) -> tuple[nn.Linear, dict[str, float]]:
        """Refit the head on the bank + generated unseen embeddings (`fit_head`).

        Each seen category keeps at most ``max_rows_per_class`` real rows (seeded subsample);
        no-object rows are subsampled by the same overall fraction as the object rows, so the
        bank's object / no-object proportion (the head's no-object prior) is kept.
        """
        fh, k = self.cfg["final_head"], self.num_classes
        gen = torch.Generator().manual_seed(self.seed + 1)
        cap = fh["max_rows_per_class"]
        keep, kept_objects, all_objects = [], 0, 0
        for c in torch.unique(self.labels[self.labels < k]).tolist():
            rows = torch.nonzero(self.labels == c).squeeze(1)
            all_objects += rows.numel()
            if cap is not None and rows.numel() > cap:
                rows = rows[torch.randperm(rows.numel(), generator=gen)[:cap]]
            kept_objects += rows.numel()
            keep.append(rows)
        no_object = torch.nonzero(self.labels == k).squeeze(1)
        fraction = kept_objects / all_objects if all_objects else 1.0
        keep.append(no_object[torch.randperm(no_object.numel(), generator=gen)
                              [:max(1, round(fraction * no_object.numel()))]])
        keep = torch.sort(torch.cat(keep)).values
        real, labels = self.embeds[keep].float(), self.labels[keep]
        seen_counts = torch.bincount(labels[labels < k], minlength=k)[self.seen_index]
        per_class = fh["fakes_per_class"]
        if per_class is None:
            present = seen_counts[seen_counts > 0]
            per_class = int(present.float().median()) if present.numel() else 0
        fakes, fake_labels = synthesize_embeddings(self.generator, self.semantic[self.unseen_index],
                                                   self.unseen_index, per_class=int(per_class),
                                                   seed=self.seed + 2)
        x, y = torch.cat([real, fakes]), torch.cat([labels, fake_labels])
        head = fit_head(x, y, self.class_weights.cpu(), steps=fh["steps"], lr=fh["lr"],
                        optimizer=fh["optimizer"], weight_decay=fh["weight_decay"],
                        init=self.head.cpu() if fh["warm_start"] else None, seed=self.seed,
                        num_threads=None)
        self.head.to(self.device)
        with torch.no_grad():
            pred = head(x).argmax(1)
        real_mask = torch.arange(y.numel()) < real.shape[0]
        metrics = {"final_head/real_rows": float(real.shape[0]),
                   "final_head/fakes_per_class": float(per_class),
                   "final_head/real_accuracy": float((pred[real_mask] == y[real_mask]).float().mean())}
        if fakes.numel():
            metrics["final_head/fake_accuracy"] = float((pred[~real_mask] == y[~real_mask]).float().mean())
        return head, metrics

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "variant": self.variant, "seed": self.seed,
                "config": _resume_key(self.cfg),
                "generator": self.generator.state_dict(),
                "disentangler": self.disentangler.state_dict() if self.disentangler else None,
                "head": self.head.state_dict(), "opt_generator": self.opt_generator.state_dict(),
                "scheduler": self.scheduler.state_dict(), "opt_head": self.opt_head.state_dict(),
                "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["variant"], state["seed"]) != (self.variant, self.seed):
            raise ValueError(f"checkpoint is of variant {state['variant']!r} seed {state['seed']}, "
                             f"not {self.variant!r} seed {self.seed}; use --restart or another --out")
        if state["config"] != _resume_key(self.cfg):
            raise ValueError("checkpoint was trained with another config (only optim.steps, "
                             "final_head and logging may change on resume); use --restart or another --out")
        self.step = int(state["step"])
        self.generator.load_state_dict(state["generator"])
        if self.disentangler is not None:
            self.disentangler.load_state_dict(state["disentangler"])
        self.head.load_state_dict(state["head"])
        self.opt_generator.load_state_dict(state["opt_generator"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.opt_head.load_state_dict(state["opt_head"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])


def _resume_key(cfg: dict[str, Any]) -> str:
    """The config as JSON without the keys that may change between a run and its resumption."""
    kept = {k: v for k, v in cfg.items() if k not in ("final_head", "logging")}
    kept["optim"] = {k: v for k, v in cfg["optim"].items() if k != "steps"}
    return json.dumps(kept, sort_keys=True)


def save_head(path: Path, head: nn.Linear, *, metadata: dict[str, Any]) -> None:
    """head.safetensors: weight [K+1, E], bias [K+1] float32; metadata values JSON-encoded."""
    from safetensors.torch import save

    tensors = {"weight": head.weight.detach().cpu().float().contiguous(),
               "bias": head.bias.detach().cpu().float().contiguous()}
    atomic_write_bytes(path, save(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()}))


def save_generator(path: Path, generator: nn.Module, *, metadata: dict[str, Any]) -> None:
    """generator.safetensors: the state dict; metadata "kind" and "config" (constructor kwargs)."""
    from safetensors.torch import save

    kind = "primitive" if isinstance(generator, PrimitiveGenerator) else "gmmn"
    meta = {"kind": kind, "config": generator.config, **metadata}
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={k: json.dumps(v) for k, v in meta.items()}))


def load_generator(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a generator saved by `save_generator` -> (module in eval mode, metadata)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        state = {k: f.get_tensor(k) for k in f.keys()}
    cls = {"primitive": PrimitiveGenerator, "gmmn": GMMNGenerator}[meta["kind"]]
    generator = cls(**meta["config"])
    generator.load_state_dict(state)
    return generator.eval(), meta


def encode_categories(cfg: dict[str, Any], names: list[str], *, override: str | None = None,
                      clip_weights: str | None = None) -> tuple[torch.Tensor, str]:
    """Text embeddings [K, Ds] of ``names`` with the configured encoder -> (tensor, identifier)."""
    from zsp_ros.semantics.build import build_text_encoder

    name = override or cfg["text_encoder"]["name"]
    kwargs = dict(cfg["text_encoder"]["kwargs"] or {}) if override is None else {}
    if name.startswith("attributes") and "vocabularies" not in kwargs:
        kwargs["names"] = names
    if clip_weights:
        kwargs["weights"] = clip_weights
    encoder = build_text_encoder(name, **kwargs)
    return torch.from_numpy(encoder.encode(names)), encoder.identifier


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


def train_pading(*, bank_path: str | Path, segmenter: str | Path, config: dict[str, Any],
                 out_dir: str | Path, variant: str = "pading", seed: int = 0, steps: int | None = None,
                 device: str = "cpu", text_encoder: str | None = None, clip_weights: str | None = None,
                 restart: bool = False, progress: bool = True, tensorboard: bool | None = None,
                 command: list[str] | None = None) -> dict[str, Any]:
    """Run stages 2-3 and write OUT (see the module docstring); returns the summary written to config.json."""
    from tqdm import tqdm

    validate_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bank = load_feature_bank(bank_path, segmenter_hash=segmenter_hash(segmenter))
    names = [c["name"] for c in bank.categories]
    semantic, encoder_id = encode_categories(config, names, override=text_encoder,
                                             clip_weights=clip_weights)
    trainer = PadingTrainer(bank=bank, semantic=semantic, cfg=config, variant=variant, seed=seed,
                            device=device)
    total_steps = int(steps if steps is not None else config["optim"]["steps"])
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not restart:
        trainer.load_state_dict(torch.load(ckpt, map_location=device, weights_only=False))
        print(f"resuming {out} at step {trainer.step}")

    log_cfg = config["logging"]
    use_tb = log_cfg["tensorboard"] if tensorboard is None else tensorboard
    writer = None
    if use_tb:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tb"), purge_step=trainer.step)

    def save_checkpoint() -> None:
        buffer = io.BytesIO()
        torch.save(trainer.state_dict(), buffer)
        atomic_write_bytes(ckpt, buffer.getvalue())

    started = time.time()
    logs: dict[str, float] = {}
    bar = tqdm(total=total_steps, initial=trainer.step, desc=f"pading/{variant}", unit="step",
               disable=not progress)
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
    save_head(out / "head_online.safetensors", trainer.head, metadata=common)
    metrics = {"steps": trainer.step, "train_seconds_this_run": round(time.time() - started, 2),
               **{k: v for k, v in logs.items() if math.isfinite(v)}}
    head = trainer.head
    if config["final_head"]["enabled"]:
        t0 = time.time()
        head, head_metrics = trainer.final_head()
        metrics.update(head_metrics, final_head_seconds=round(time.time() - t0, 3))
    save_head(out / "head.safetensors", head, metadata=common)
    save_generator(out / "generator.safetensors", trainer.generator,
                   metadata={"text_encoder": common["text_encoder"], "variant": variant})
    from safetensors.torch import save
    atomic_write_bytes(out / "text_embeddings.safetensors",
                       save({"embeddings": semantic.float().contiguous()},
                            metadata={"names": json.dumps(names), "identifier": encoder_id}))
    if writer is not None:
        for key, value in metrics.items():
            if key.startswith("final_head/") and math.isfinite(value):
                writer.add_scalar(key, value, trainer.step)
        writer.close()
    summary = {"format": "zsp-pading-run", "config": config, **common,
               "head_rows": [c["id"] for c in categories] + [0],
               "bank": {"path": str(Path(bank_path).resolve()), "rows": len(bank),
                        "embed_dim": bank.embed_dim, "extra": bank.extra},
               "segmenter": str(segmenter), "metrics": metrics, "provenance": provenance(command)}
    write_json(out / "config.json", summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bank", required=True, help="feature bank .safetensors (training/feature_bank.py)")
    parser.add_argument("--segmenter", required=True,
                        help="segmenter run directory or weights file (its sha256 must match the bank)")
    parser.add_argument("--config", required=True, help="PADing config YAML (config/pading_*.yaml)")
    parser.add_argument("--out", required=True, help="output run directory")
    parser.add_argument("--variant", default="pading", choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override optim.steps")
    parser.add_argument("--device", default="cpu")
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
    print(json.dumps({k: summary["metrics"][k] for k in sorted(summary["metrics"])}, indent=1))
    return 0
