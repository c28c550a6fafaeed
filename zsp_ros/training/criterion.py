"""Set criterion of Mask2Former: match, then classification + point-sampled mask losses.

Losses per prediction layer (the last one and every ``aux_outputs`` entry, each matched on its
own):
- ``loss_ce``: cross-entropy over K+1 classes for every query, unmatched queries labelled
  no-object, class weights 1 and ``eos_coef`` (0.1) at the no-object index (weighted mean
  over the queries of the global batch, see below);
- ``loss_mask``: sigmoid cross-entropy, mean over ``num_points`` importance-sampled points,
  summed over matched queries and divided by the number of target masks;
- ``loss_dice``: dice loss with +1 smoothing on the same points, same normalisation.

Normalisers are global: the number of target masks and the sum of the class weights of all
queries are averaged over processes when torch.distributed is initialised. In one process
this is exactly Mask2Former's loss. Across N processes the mask losses are Mask2Former's, and
the class loss is the weighted mean over the global batch — Mask2Former averages per-process
weighted means instead, which differs when processes hold different numbers of targets — so
the gradient DDP averages equals the one of a single process with the same global batch.
The criterion returns the unweighted losses; :func:`weighted_total` applies ``weight_dict``
(the training loop's job).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zsp_ros.training.matcher import HungarianMatcher
from zsp_ros.training.point_sampling import point_sample, uncertain_point_coords

LOSS_NAMES = ("loss_ce", "loss_mask", "loss_dice")


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sum over masks of the mean BCE over points, divided by ``num_masks``.

    Args:
        logits: float [R, P]; targets: float [R, P] in [0, 1].
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sum over masks of ``1 - (2|p∩t| + 1) / (|p| + |t| + 1)``, divided by ``num_masks``.

    Args:
        logits: float [R, P]; targets: float [R, P] in [0, 1].
    """
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def global_normalisers(targets: Sequence[dict], *, num_queries: int, eos_coef: float,
                       device: torch.device) -> tuple[float, float]:
    """(number of target masks, sum of class-loss weights of all queries) of this process's
    batch, averaged over processes (one all-reduce); the mask count is at least 1.

    Each image matches min(Q, N_b) queries (weight 1); the other queries weigh ``eos_coef``.
    """
    masks = float(sum(len(t["labels"]) for t in targets))
    matched = float(sum(min(num_queries, len(t["labels"])) for t in targets))
    weights = matched + eos_coef * (len(targets) * num_queries - matched)
    values = torch.tensor([masks, weights], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return max(values[0].item(), 1.0), values[1].item()


class SetCriterion(nn.Module):
    """Mask2Former's loss: Hungarian matching, then ``loss_ce``, ``loss_mask``, ``loss_dice``."""

    def __init__(self, *, num_classes: int, matcher: HungarianMatcher, eos_coef: float = 0.1,
                 num_points: int = 12544, oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75,
                 weight_dict: Mapping[str, float] | None = None, aux_loss: bool = True) -> None:
        """
        Args:
            num_classes: K, object categories (the no-object class is index K).
            matcher: assigns queries to targets.
            eos_coef: class-loss weight of the no-object class.
            num_points: points per matched mask for the mask losses.
            oversample_ratio, importance_sample_ratio: see uncertain_point_coords.
            weight_dict: loss name -> weight, used by :func:`weighted_total`.
            aux_loss: also compute the losses of ``aux_outputs`` (deep supervision).
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"SetCriterion: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matcher = matcher
        self.eos_coef = float(eos_coef)
        self.num_points = int(num_points)
        self.oversample_ratio = float(oversample_ratio)
        self.importance_sample_ratio = float(importance_sample_ratio)
        self.weight_dict = dict(weight_dict or {})
        self.aux_loss = bool(aux_loss)
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = self.eos_coef
        self.register_buffer("class_weight", class_weight)

    def loss_labels(self, class_logits: torch.Tensor, targets: Sequence[dict],
                    indices: Sequence[tuple[torch.Tensor, torch.Tensor]],
                    weight_total: float | None = None) -> torch.Tensor:
        """Weighted cross-entropy: sum of weight * NLL over the queries divided by
        ``weight_total`` (default: this batch's sum of weights, i.e. the weighted mean).

        class_logits: float [B, Q, K+1]; returns a scalar.
        """
        batch, queries, classes = class_logits.shape
        if classes != self.num_classes + 1:
            raise ValueError(f"SetCriterion: pred_logits has {classes} classes, expected "
                             f"{self.num_classes + 1} (K={self.num_classes} + no-object)")
        target_classes = torch.full((batch, queries), self.num_classes, dtype=torch.int64,
                                    device=class_logits.device)
        for b, ((src, tgt), target) in enumerate(zip(indices, targets)):
            target_classes[b, src.to(class_logits.device)] = target["labels"].to(
                class_logits.device)[tgt.to(class_logits.device)]
        weight = self.class_weight.to(class_logits.device)
        if weight_total is None:
            return F.cross_entropy(class_logits.float().transpose(1, 2), target_classes, weight)
        nll = F.cross_entropy(class_logits.float().transpose(1, 2), target_classes, weight,
                              reduction="sum")
        return nll / weight_total

    def loss_masks(self, mask_logits: torch.Tensor, targets: Sequence[dict],
                   indices: Sequence[tuple[torch.Tensor, torch.Tensor]], num_masks: float, *,
                   generators: Sequence[torch.Generator] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point-sampled BCE and dice of the matched masks. mask_logits: float [B, Q, h, w]."""
        device = mask_logits.device
        pred_per_image, tgt_per_image = [], []
        for b, ((src, tgt), target) in enumerate(zip(indices, targets)):
            pred_per_image.append(mask_logits[b, src.to(device)][:, None].float())  # [n_b,1,h,w]
            tgt_per_image.append(target["masks"].to(device)[tgt.to(device)][:, None].float())
        if sum(p.shape[0] for p in pred_per_image) == 0:
            zero = mask_logits.sum() * 0.0          # keeps the graph, so DDP sees every parameter
            return zero, zero.clone()

        point_logits, point_labels = [], []
        if generators is None:                      # one vectorised draw for the whole batch
            preds = torch.cat(pred_per_image)
            with torch.no_grad():
                coords = uncertain_point_coords(
                    preds, num_points=self.num_points, oversample_ratio=self.oversample_ratio,
                    importance_sample_ratio=self.importance_sample_ratio)       # [R, P, 2]
            splits = coords.split([p.shape[0] for p in pred_per_image])
        else:                                       # per-image RNG: independent of batch layout
            with torch.no_grad():
                splits = [uncertain_point_coords(
                    p, num_points=self.num_points, oversample_ratio=self.oversample_ratio,
                    importance_sample_ratio=self.importance_sample_ratio, generator=g)
                    for p, g in zip(pred_per_image, generators)]
        for pred, tgt, coords in zip(pred_per_image, tgt_per_image, splits):
            if pred.shape[0] == 0:
                continue
            with torch.no_grad():
                point_labels.append(point_sample(tgt, coords)[:, 0])             # [n_b, P]
            point_logits.append(point_sample(pred, coords)[:, 0])                # [n_b, P]
        logits, labels = torch.cat(point_logits), torch.cat(point_labels)
        return sigmoid_ce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)

    def layer_losses(self, outputs: Mapping[str, torch.Tensor], targets: Sequence[dict],
                     num_masks: float, weight_total: float, *,
                     generators: Sequence[torch.Generator] | None = None
                     ) -> dict[str, torch.Tensor]:
        """Match one prediction layer and compute its three losses."""
        indices = self.matcher(outputs, targets, generators=generators)
        loss_mask, loss_dice = self.loss_masks(outputs["pred_masks"], targets, indices, num_masks,
                                               generators=generators)
        return {"loss_ce": self.loss_labels(outputs["pred_logits"], targets, indices, weight_total),
                "loss_mask": loss_mask, "loss_dice": loss_dice}

    def forward(self, outputs: Mapping, targets: Sequence[dict], *,
                generators: Sequence[torch.Generator] | None = None) -> dict[str, torch.Tensor]:
        """Unweighted losses of the last layer and of every auxiliary layer.

        Args:
            outputs: ``pred_logits`` float [B, Q, K+1], ``pred_masks`` float [B, Q, h, w], and
                optionally ``aux_outputs``: a list of dicts with the same two keys.
            targets: B dicts, ``labels`` int64 [N_b] in [0, K), ``masks`` bool [N_b, H, W] on the
                same (padded) canvas as the network input.
            generators: optional, one per image, used for every random draw (matching points
                and importance sampling) of that image, in a fixed order.

        Returns:
            ``loss_ce``, ``loss_mask``, ``loss_dice`` of the last layer and, with ``aux_loss``,
            ``loss_ce_i``, ... for the i-th auxiliary layer; scalar tensors.
        """
        if len(targets) != outputs["pred_logits"].shape[0]:
            raise ValueError(f"SetCriterion: {len(targets)} targets for a batch of "
                             f"{outputs['pred_logits'].shape[0]}")
        for b, t in enumerate(targets):
            if t["labels"].numel() and (int(t["labels"].min()) < 0
                                        or int(t["labels"].max()) >= self.num_classes):
                raise ValueError(f"SetCriterion: target {b} has labels outside [0, {self.num_classes}):"
                                 f" {t['labels'].tolist()}")
        num_masks, weight_total = global_normalisers(
            targets, num_queries=outputs["pred_logits"].shape[1], eos_coef=self.eos_coef,
            device=outputs["pred_logits"].device)
        losses = self.layer_losses(outputs, targets, num_masks, weight_total, generators=generators)
        for i, aux in enumerate(outputs.get("aux_outputs", ()) if self.aux_loss else ()):
            for name, value in self.layer_losses(aux, targets, num_masks, weight_total,
                                                 generators=generators).items():
                losses[f"{name}_{i}"] = value
        return losses


def aux_weight_dict(*, class_weight: float, mask_weight: float, dice_weight: float,
                    num_aux: int) -> dict[str, float]:
    """Loss-name -> weight for the last layer and ``num_aux`` auxiliary layers."""
    base = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
    weights = dict(base)
    for i in range(num_aux):
        weights.update({f"{k}_{i}": v for k, v in base.items()})
    return weights


def weighted_total(losses: Mapping[str, torch.Tensor], weight_dict: Mapping[str, float]
                   ) -> torch.Tensor:
    """Sum of ``weight_dict[name] * loss`` over the losses named in ``weight_dict``.

    A loss without a weight is an error (it would silently not train).
    """
    missing = sorted(set(losses) - set(weight_dict))
    if missing:
        raise KeyError(f"weighted_total: no weight for losses {missing}")
    return sum(weight_dict[name] * value for name, value in losses.items())


def build_criterion(train_cfg: Mapping, *, num_classes: int, num_aux: int) -> SetCriterion:
    """Matcher + criterion from the ``train:`` section of a config.

    Keys read (Mask2Former's values in brackets): ``loss_weights: {class [2.0], mask [5.0],
    dice [5.0]}`` (also the matching cost weights), ``no_object_weight`` [0.1], ``num_points``
    [12544], ``oversample_ratio`` [3.0], ``importance_sample_ratio`` [0.75]. ``num_aux``: the
    number of auxiliary predictions to weight; 0 turns deep supervision off.
    """
    def get(mapping: Mapping, key: str, where: str):
        if not isinstance(mapping, Mapping) or key not in mapping:
            raise KeyError(f"train config: missing {where}{key!r} (needed by the criterion)")
        return mapping[key]

    weights = get(train_cfg, "loss_weights", "")
    class_w = float(get(weights, "class", "loss_weights."))
    mask_w = float(get(weights, "mask", "loss_weights."))
    dice_w = float(get(weights, "dice", "loss_weights."))
    num_points = int(get(train_cfg, "num_points", ""))
    matcher = HungarianMatcher(cost_class=class_w, cost_mask=mask_w, cost_dice=dice_w,
                               num_points=num_points)
    return SetCriterion(num_classes=num_classes, matcher=matcher,
                        eos_coef=float(get(train_cfg, "no_object_weight", "")),
                        num_points=num_points,
                        oversample_ratio=float(get(train_cfg, "oversample_ratio", "")),
                        importance_sample_ratio=float(get(train_cfg, "importance_sample_ratio", "")),
                        weight_dict=aux_weight_dict(class_weight=class_w, mask_weight=mask_w,
                                                    dice_weight=dice_w, num_aux=num_aux),
                        aux_loss=num_aux > 0)
