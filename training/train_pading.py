"""`zsp train pading`: PADing stages 2-3 on a feature bank (the segmenter itself stays frozen).

    zsp train pading --bank BANK --segmenter RUN --config config/pading_synth.yaml --out RUN2 \
        [--variant pading|gmmn|primitives|primitives_alignment] [--seed 0]

Each step, as the released code's two-optimizer loop:
1. generator step (Adam): the real query embeddings of the step's ``images_per_step`` bank
   images (seeded stream: a fresh permutation of the bank's images every epoch);
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
scheduler, per-rank RNG states; format 2) and tb/ (TensorBoard). Re-running the same command
resumes, bitwise equal to an uninterrupted run (tests/test_training_resume_full.py).

Several processes (the released code runs this stage on one GPU only):

    torchrun --nproc_per_node N -m training.train_pading --bank ... --device cuda ...

(or ``torchrun --nproc_per_node N --no-python zsp train pading ...``). ``images_per_step`` is
the global batch; it must be divisible by N. The run follows the same loss trajectory as one
process with the same seed (tests/test_training_ddp_pading.py), because:

- the images of step t are slots 0..G-1 of the seeded stream of training/batching.py (they
  depend on (seed, t) only); rank r generates the fakes of slots [r G/N, (r+1) G/N), each
  slot under its own RNG seed ``image_seed(seed, t, slot)`` (generator noise; one batched
  generator call per rank, whose dropout is drawn under the seed of the rank's first slot, so
  the trajectories are equal when the generator's dropout is 0 and statistically alike otherwise);
- every loss of the generator step is a function of the whole batch (MMD and the structure
  alignment compare all pairs), so the fakes are all-gathered (detached) and every rank
  evaluates the same global loss on them; its gradient w.r.t. the gathered fakes is then
  pushed back through this rank's own generator graph, scaled by N, and the parameter
  gradients are averaged over ranks (`distributed.average_gradients`): sum over ranks of the
  local chain-rule terms + the terms of the computation every rank repeats (the unseen fakes,
  the disentangler, the projected semantics, drawn under the shared seed
  ``image_seed(seed, t, G)``) = the one-process gradient;
- the classifier step is a Linear layer on the real rows of the global batch (every rank reads
  them from its copy of the bank) + the unseen fakes drawn under ``image_seed(seed, t, G + 1)``:
  each rank computes it whole (identical inputs; gradients are still averaged so the replicas
  cannot drift).
DDP's wrapper is not used: the generator is called through several methods per step
(``project``, ``generate``, one call per slot), which DDP's forward hooks do not see;
`distributed.average_gradients` is the same reduction done explicitly. Only rank 0 writes
files; the final head is fitted on rank 0 only (the others wait at a barrier), as it writes
head.safetensors and needs no collective.

Precision: this stage stays in float32 (no autocast). The MMD is sqrt of a difference of
Gaussian-kernel sums that cancel to ~1e-3 of their size, and the structure losses are KLs of
softmaxes at temperature 0.1 - neither survives bf16's 8-bit mantissa, and the generator is
small enough that fp32 costs nothing worth saving.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training import checkpoint as checkpoints
from training import distributed
from training.batching import StreamBatchSampler, image_seed
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
# checkpoint.pt layout: 1 = sequential sampler RNG + one torch RNG state (before multi-process);
# 2 = stateless sampling, per-rank RNG states (training/checkpoint.py rng_state), world_size.
CHECKPOINT_FORMAT = 2


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


class BankImages:
    """The bank's rows grouped by image: image ``i`` (in sorted image-id order) owns rows
    ``rows(i)``. Rows of one image are contiguous after a stable sort, so a lookup is a slice."""

    def __init__(self, image_ids: torch.Tensor) -> None:
        order = torch.argsort(image_ids, stable=True)
        _, counts = torch.unique_consecutive(image_ids[order], return_counts=True)
        self.order = order
        self.starts = (torch.cumsum(counts, 0) - counts).tolist()
        self.counts = counts.tolist()

    @property
    def num_images(self) -> int:
        return len(self.counts)

    def rows(self, image: int) -> torch.Tensor:
        """Bank row indices [R_i] int64 of image ``image`` (0 <= image < num_images)."""
        start = self.starts[image]
        return self.order[start:start + self.counts[image]]


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global torch RNG (CPU, and ``device`` if CUDA) seeded by ``seed``;
    the previous states are restored afterwards, so the caller's stream does not move."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class PadingTrainer:
    """Generator (+ disentangler) and classifier trained on a bank; see the module docstring.

    Args:
        bank: the feature bank (categories in split order define the head rows).
        semantic: [K, Ds] float32 text embeddings of ``bank.categories`` in the same order.
        cfg: a validated config dict.
        variant: a key of ``cfg["variants"]``.
        seed: seeds the models' init, the image stream and every noise / dropout draw.
        device: torch device of this process.
        rank, world_size: this process among those of the run (``training/distributed.py``);
            the process group must be initialised when ``world_size > 1``.
    """

    def __init__(self, *, bank: FeatureBank, semantic: torch.Tensor, cfg: dict[str, Any],
                 variant: str, seed: int, device: str | torch.device = "cpu", rank: int = 0,
                 world_size: int = 1) -> None:
        if variant not in cfg["variants"]:
            raise ValueError(f"unknown variant {variant!r}; config has {list(cfg['variants'])}")
        self.cfg, self.variant, self.seed, self.device = cfg, variant, seed, torch.device(device)
        self.rank, self.world_size = int(rank), int(world_size)
        self.spec = cfg["variants"][variant]
        self.loss_cfg, self.optim_cfg = cfg["losses"], cfg["optim"]
        self.global_batch = int(self.optim_cfg["images_per_step"])
        if self.global_batch < 1 or self.global_batch % self.world_size:
            raise ValueError(f"optim.images_per_step {self.global_batch} must be a positive "
                             f"multiple of the {self.world_size} processes")
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
        self.generator_params = list(self.generator.parameters())
        if self.disentangler is not None:
            self.generator_params += list(self.disentangler.parameters())
        o = self.optim_cfg
        self.opt_generator = torch.optim.Adam(self.generator_params, lr=o["generator_lr"])
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
        self.images = BankImages(bank.image_ids)
        # the whole global batch (rank 0 of 1): every rank knows every slot's image
        self.stream = StreamBatchSampler(dataset_size=self.images.num_images,
                                         global_batch=self.global_batch, seed=seed)
        self.step = 0

    @property
    def local_slots(self) -> range:
        """This rank's slots of the global batch (contiguous, ``G / world_size`` of them)."""
        per_rank = self.global_batch // self.world_size
        return range(self.rank * per_rank, (self.rank + 1) * per_rank)

    # ---------------------------------------------------------------- generation helpers
    def _queries(self) -> torch.Tensor | None:
        """Projected semantics [K, E] (primitive generator) or None (GMMN)."""
        if isinstance(self.generator, PrimitiveGenerator):
            return self.generator.project(self.semantic)
        return None

    def _fake(self, index: torch.Tensor, queries: torch.Tensor | None,
              noise: torch.Tensor | None = None) -> torch.Tensor:
        """Fakes [len(index), E] of categories ``index``; ``noise`` as the generator's
        ``noise_shape(len(index))``, or None for one fresh draw each."""
        if queries is not None:
            return self.generator.generate(queries[index], noise)
        return self.generator(self.semantic[index], noise)

    def _slot_noise(self, n: int, step: int, slot: int) -> torch.Tensor | None:
        """The generator noise of ``n`` fakes of one slot, from the slot's own seed (None: no noise)."""
        if getattr(self.generator, "noise_std", 1.0) == 0:
            return None
        device = next(self.generator.parameters()).device
        stream = torch.Generator(device=device).manual_seed(image_seed(self.seed, step, slot))
        return self.generator.sample_noise(n, generator=stream)

    # ---------------------------------------------------------------- one training step
    def train_step(self) -> dict[str, float]:
        """One generator step and one classifier step; returns the logged scalars (the same on
        every rank: every loss is evaluated on the whole global batch)."""
        k, step, g = self.num_classes, self.step, self.global_batch
        self.generator.train()
        if self.disentangler is not None:
            self.disentangler.train()
        slot_rows = [self.images.rows(i) for i in self.stream.batch(step)]     # G x [R_s]
        rows = torch.cat(slot_rows)
        real = self.embeds[rows].float().to(self.device)              # [R, E] global batch
        labels = self.labels[rows].to(self.device)                    # [R]
        matched = labels < k
        logs: dict[str, float] = {"matched_per_step": float(matched.sum())}
        if bool(matched.any()):
            self._generator_step(slot_rows, real[matched], labels[matched], logs)

        # classifier step: all real rows + one fake for each of num_choose unseen categories
        x, y = real, labels
        if self.unseen_index.numel() > 0 and self.optim_cfg["num_choose"] > 0:
            with seeded(image_seed(self.seed, step, g + 1), self.device), torch.no_grad():
                choose = self.unseen_index[torch.randperm(self.unseen_index.numel())
                                           [:self.optim_cfg["num_choose"]]].to(self.device)
                fake_unseen = self._fake(choose, self._queries())
            x, y = torch.cat([real, fake_unseen]), torch.cat([labels, choose])
        ce = F.cross_entropy(self.head(x), y, weight=self.class_weights)
        self.opt_head.zero_grad(set_to_none=True)
        ce.backward()
        distributed.average_gradients(list(self.head.parameters()))
        self.opt_head.step()
        logs["loss/classifier"] = _scalar(ce)
        logs["lr/generator"] = self.scheduler.get_last_lr()[0]
        self.step += 1
        return logs

    def _generator_step(self, slot_rows: list[torch.Tensor], real_seen: torch.Tensor,
                        y_seen: torch.Tensor, logs: dict[str, float]) -> None:
        """Fakes of this rank's slots -> all-gather -> global losses -> two-part backward ->
        gradients averaged over ranks -> Adam + LR schedule (see the module docstring).

        real_seen [Rs, E] float32 and y_seen [Rs] are the matched rows of the whole global
        batch in slot order (the order the gathered fakes come in)."""
        lc, k, step, g = self.loss_cfg, self.num_classes, self.step, self.global_batch
        queries_local = self._queries()
        # One batched generator call for this rank's slots (a call per slot was ~5x slower on
        # CPU). Each slot's noise still comes from its own seed, so the fakes of a slot do not
        # depend on how slots are split over ranks; the generator's dropout is drawn once per rank
        # (as in any DDP run with dropout), so with dropout 0 two processes equal one exactly.
        ys, noises = [], []
        for slot in self.local_slots:
            y_slot = self.labels[slot_rows[slot]]
            y_slot = y_slot[y_slot < k].to(self.device)
            if y_slot.numel():
                ys.append(y_slot)
                noises.append(self._slot_noise(y_slot.numel(), step, slot))
        if ys:
            noise = None if noises[0] is None else torch.cat(noises, dim=-2)   # rows: dim -2 for both kinds
            with seeded(image_seed(self.seed, step, self.local_slots.start), self.device):
                local_fake = self._fake(torch.cat(ys), queries_local, noise)
        else:
            local_fake = real_seen.new_zeros((0, self.embed_dim))
        chunks = distributed.all_gather_rows(local_fake)
        offset = sum(c.shape[0] for c in chunks[:self.rank])
        fake_seen = torch.cat(chunks).requires_grad_(True)           # [Rs, E] leaf
        if fake_seen.shape[0] != y_seen.shape[0]:
            raise RuntimeError(f"gathered {fake_seen.shape[0]} fakes for {y_seen.shape[0]} matched rows")

        with seeded(image_seed(self.seed, step, g), self.device):     # shared by every rank
            queries = self._queries()
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
        total.backward()               # grads of the shared computation + d total / d fake_seen
        if local_fake.requires_grad and fake_seen.grad is not None:
            grad = fake_seen.grad[offset:offset + local_fake.shape[0]] * self.world_size
            local_fake.backward(grad)  # + this rank's slots; averaging makes it the sum over ranks
        distributed.average_gradients(self.generator_params)
        self.opt_generator.step()
        self.scheduler.step()
        logs["loss/generator_total"] = _scalar(total)

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
        """Refit the head on the bank + generated unseen embeddings (`fit_head`). Deterministic
        (seeded); `train_pading` calls it on rank 0 only.

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
        """Everything to resume (checkpoint.pt, format 2); call on every rank (it all-gathers
        the per-rank Python / NumPy / torch / CUDA RNG states). torch.load(weights_only=True)-safe."""
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "variant": self.variant,
                "seed": self.seed, "config": _resume_key(self.cfg), "world_size": self.world_size,
                "generator": self.generator.state_dict(),
                "disentangler": self.disentangler.state_dict() if self.disentangler else None,
                "head": self.head.state_dict(), "opt_generator": self.opt_generator.state_dict(),
                "scheduler": self.scheduler.state_dict(), "opt_head": self.opt_head.state_dict(),
                "rng": distributed.all_gather_objects(checkpoints.rng_state())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict` (any world size; the RNG states only when it is the one that
        saved them). A format-1 checkpoint (written before multi-process training) restores
        models, optimizers and scheduler; its image stream differs, with a warning."""
        if (state["variant"], state["seed"]) != (self.variant, self.seed):
            raise ValueError(f"checkpoint is of variant {state['variant']!r} seed {state['seed']}, "
                             f"not {self.variant!r} seed {self.seed}; use --restart or another --out")
        if state["config"] != _resume_key(self.cfg):
            raise ValueError("checkpoint was trained with another config (only optim.steps, "
                             "final_head and logging may change on resume); use --restart or another --out")
        fmt = int(state.get("format", 1))
        if fmt > CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {fmt} is newer than this code's {CHECKPOINT_FORMAT}")
        self.step = int(state["step"])
        self.generator.load_state_dict(state["generator"])
        if self.disentangler is not None:
            self.disentangler.load_state_dict(state["disentangler"])
        self.head.load_state_dict(state["head"])
        self.opt_generator.load_state_dict(state["opt_generator"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.opt_head.load_state_dict(state["opt_head"])
        if fmt == 1:
            warnings.warn("checkpoint.pt has format 1 (single-process trainer): models and "
                          "optimizers restored, but the image stream and noise draws continue "
                          "differently from the run that wrote it", stacklevel=2)
            torch.set_rng_state(state["torch_rng"])
        elif int(state["world_size"]) == self.world_size:
            checkpoints.set_rng_state(state["rng"][self.rank])


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
        head, head_metrics = trainer.final_head()
        metrics.update(head_metrics, final_head_seconds=round(time.time() - t0, 3))
    save_head(out / "head.safetensors", head, metadata=common)
    save_generator(out / "generator.safetensors", trainer.generator,
                   metadata={"text_encoder": common["text_encoder"], "variant": common["variant"]})
    from safetensors.torch import save
    atomic_write_bytes(out / "text_embeddings.safetensors",
                       save({"embeddings": semantic.float().contiguous()},
                            metadata={"names": json.dumps(names), "identifier": encoder_id}))
    if writer is not None:
        for key, value in metrics.items():
            if key.startswith("final_head/") and math.isfinite(value):
                writer.add_scalar(key, value, trainer.step)
        writer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bank", required=True, help="feature bank .safetensors (training/feature_bank.py)")
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
    """``python -m training.train_pading ...`` (what torchrun starts)."""
    parser = argparse.ArgumentParser(prog="zsp train pading", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
