"""The PADing stage 2 trainer: generator (+ disentangler) and classifier on a feature bank.

`PadingTrainer.train_step` runs one step of the released code's two-optimizer loop:
1. generator step (Adam): the real query embeddings of the step's ``images_per_step`` bank
   images (seeded stream: a fresh permutation of the bank's images every epoch);
   fakes for their matched (seen) rows from the category text embeddings; MMD(fake, real)
   + classification of the fakes through the current classifier (which it does not update)
   + ``structure_weight`` x [alignment of the feature/semantic similarity structure, and the
   disentanglement losses] per the variant;
2. classifier step (SGD): ``Linear(E, K + 1)`` on all those real rows (unmatched = no object)
   + one fake each for ``num_choose`` random unseen categories, class weights seen / unseen /
   no-object.
`state_dict` / `load_state_dict` are checkpoint.pt (format CHECKPOINT_FORMAT): models,
optimizers, scheduler, per-rank RNG states; resuming is bitwise equal to an uninterrupted run.

Several processes follow the same loss trajectory as one process with the same seed and
global batch ``images_per_step`` (which must be divisible by the number of processes N):

- the images of step t are slots 0..G-1 of the seeded stream of zsp_ros/training/batching.py (they
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
`distributed.average_gradients` is the same reduction done explicitly.

Precision: this stage stays in float32 (no autocast). The MMD is sqrt of a difference of
Gaussian-kernel sums that cancel to ~1e-3 of their size, and the structure losses are KLs of
softmaxes at temperature 0.1 - neither survives bf16's 8-bit mantissa, and the generator is
small enough that fp32 costs nothing worth saving.
"""
from __future__ import annotations

import json
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from zsp_ros.model.classifier import ClassifierHead
from zsp_ros.model.disentangle import Disentangler
from zsp_ros.model.gmmn_generator import GMMNGenerator
from zsp_ros.model.primitive_generator import PrimitiveGenerator
from zsp_ros.pading import losses as L
from zsp_ros.pading.head_fit import pading_class_weights
from zsp_ros.training import checkpoint as checkpoints
from zsp_ros.training import distributed
from zsp_ros.training.batching import StreamBatchSampler, image_seed
from zsp_ros.training.feature_bank import FeatureBank
from zsp_ros.training.pading_data import BankImages, seeded
from zsp_ros.utils.provenance import seed_everything

# checkpoint.pt layout: 1 = sequential sampler RNG + one torch RNG state (before multi-process);
# 2 = stateless sampling, per-rank RNG states (zsp_ros/training/checkpoint.py rng_state), world_size.
CHECKPOINT_FORMAT = 2


def _scalar(value: torch.Tensor) -> float:
    return float(value.detach())


class PadingTrainer:
    """Generator (+ disentangler) and classifier trained on a bank; see the module docstring.

    Args:
        bank: the feature bank (categories in split order define the head rows).
        semantic: [K, Ds] float32 text embeddings of ``bank.categories`` in the same order.
        cfg: a validated config dict.
        variant: a key of ``cfg["variants"]``.
        seed: seeds the models' init, the image stream and every noise / dropout draw.
        device: torch device of this process.
        rank, world_size: this process among those of the run (``zsp_ros/training/distributed.py``);
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
