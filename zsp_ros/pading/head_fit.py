"""Classifier retraining shared by offline stage 3 and the runtime category registry.

`fit_head` fits a fresh ``Linear(E, K + 1)`` (the last row is "no object") to labelled
query embeddings - real seen embeddings (unmatched queries labelled no-object) plus
generated embeddings of unseen categories - with a class-weighted cross-entropy and weight
decay. It must be fast enough for the runtime (well under 1 s on 2 CPU cores for ~50
categories and a few thousand embeddings), so it trains full-batch by default. The
objective (weighted cross-entropy + L2) is convex in the head, so full-batch L-BFGS reaches
its minimum in a few tens of iterations (measured: M = 4000, E = 256, K = 50 in ~0.1 s on
one idle core), where PADing's offline SGD (lr 1e-3, momentum 0.9) needs thousands of
mini-batch steps; "sgd" and "adam" remain available for that schedule.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from zsp_ros.model.classifier import ClassifierHead

OPTIMIZERS = ("adam", "sgd", "lbfgs")


def pading_class_weights(unseen: torch.Tensor, *, seen_weight: float = 1.0,
                         unseen_weight: float = 5.0, no_object_weight: float = 0.1) -> torch.Tensor:
    """Cross-entropy class weights [K + 1] float32 from an unseen mask [K] bool (PADing: 1 / 5 / 0.1)."""
    unseen = torch.as_tensor(unseen, dtype=torch.bool)
    if unseen.ndim != 1:
        raise ValueError(f"unseen must be a [K] bool mask, got shape {tuple(unseen.shape)}")
    weights = torch.full((unseen.numel() + 1,), float(seen_weight))
    weights[:-1][unseen] = float(unseen_weight)
    weights[-1] = float(no_object_weight)
    return weights


def fit_head(embeds: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor, *,
             steps: int = 30, lr: float = 1.0, optimizer: str = "lbfgs", momentum: float = 0.9,
             weight_decay: float = 5e-4, batch_size: int | None = None,
             init: nn.Linear | tuple[torch.Tensor, torch.Tensor] | None = None,
             seed: int = 0, num_threads: int | None = 1) -> ClassifierHead:
    """Train a classifier head on labelled embeddings and return it.

    Args:
        embeds: [M, E] float (fp16 is upcast).
        labels: [M] int64 in [0, K]; K (= len(class_weights) - 1) is no-object.
        class_weights: [K + 1] float, the cross-entropy weight of each class.
        steps: optimizer steps (full-batch passes unless ``batch_size`` is set; L-BFGS
            iterations for "lbfgs").
        lr: learning rate (L-BFGS step scale 1.0 with a strong-Wolfe line search by default;
            PADing's SGD uses 1e-3 over ~20k mini-batch steps).
        optimizer: "adam", "sgd" (with ``momentum``) or "lbfgs".
        weight_decay: L2 penalty on the weight (not the bias), as a loss term.
        batch_size: mini-batch size for "sgd"/"adam" (a reshuffle every epoch); None = full
            batch. L-BFGS is always full batch.
        init: warm start - a Linear(E, K + 1) or (weight [K + 1, E], bias [K + 1]); the caller
            maps rows when the category set changed. None = seeded uniform init (torch's
            default Linear init).
        seed: seed of the init and of the mini-batch order; the result is deterministic.
        num_threads: torch intra-op threads while fitting (restored afterwards); None keeps
            the process setting. Default 1: on the shared 2-core machine (load ~4-6), M = 4000,
            E = 256, K = 50 took 0.16 s with 1 thread and 1-2.7 s with 2 (thread contention);
            offline training on a big bank passes None.

    Returns:
        a `ClassifierHead` (``nn.Linear(E, K + 1)``, docs/CONTRACTS.md), CPU, float32, eval
        mode, parameters with requires_grad False.
    """
    embeds = torch.as_tensor(embeds).detach().float().cpu()
    labels = torch.as_tensor(labels).detach().long().cpu()
    class_weights = torch.as_tensor(class_weights).detach().float().cpu()
    if embeds.ndim != 2 or embeds.shape[0] == 0:
        raise ValueError(f"embeds must be a non-empty [M, E] tensor, got {tuple(embeds.shape)}")
    m, e = embeds.shape
    k1 = class_weights.numel()
    if labels.shape != (m,):
        raise ValueError(f"labels must be [{m}], got {tuple(labels.shape)}")
    if k1 < 2:
        raise ValueError(f"class_weights must have K + 1 >= 2 entries, got {k1}")
    if labels.min() < 0 or labels.max() >= k1:
        raise ValueError(f"labels must lie in [0, {k1 - 1}], got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")

    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _fit(embeds, labels, class_weights, steps=steps, lr=lr, optimizer=optimizer,
                    momentum=momentum, weight_decay=weight_decay, batch_size=batch_size, init=init,
                    seed=seed)
    finally:
        torch.set_num_threads(previous_threads)


def _fit(embeds: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor, *, steps: int,
         lr: float, optimizer: str, momentum: float, weight_decay: float, batch_size: int | None,
         init: nn.Linear | tuple[torch.Tensor, torch.Tensor] | None, seed: int) -> ClassifierHead:
    """The training of `fit_head` on checked CPU float32 inputs."""
    m, e = embeds.shape
    k1 = class_weights.numel()
    gen = torch.Generator().manual_seed(seed)
    head = ClassifierHead(embed_dim=e, num_classes=k1 - 1)
    with torch.no_grad():
        if init is None:
            bound = 1.0 / math.sqrt(e)
            head.weight.uniform_(-bound, bound, generator=gen)
            head.bias.uniform_(-bound, bound, generator=gen)
        else:
            weight, bias = (init.weight, init.bias) if isinstance(init, nn.Linear) else init
            if tuple(weight.shape) != (k1, e) or tuple(bias.shape) != (k1,):
                raise ValueError(f"init must be weight [{k1}, {e}] and bias [{k1}], got "
                                 f"{tuple(weight.shape)} and {tuple(bias.shape)}")
            head.weight.copy_(weight)
            head.bias.copy_(bias)

    def loss_on(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(head(x), y, weight=class_weights)
        return loss + 0.5 * weight_decay * head.weight.pow(2).sum()

    head.train()
    params = list(head.parameters())
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=lr, max_iter=max(steps, 1), history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-6,
                                tolerance_change=1e-9)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_on(embeds, labels)
            loss.backward()
            return loss

        if steps > 0:
            opt.step(closure)
    else:
        opt = (torch.optim.Adam(params, lr=lr) if optimizer == "adam"
               else torch.optim.SGD(params, lr=lr, momentum=momentum))
        full = batch_size is None or batch_size >= m
        order, start = torch.randperm(m, generator=gen), 0
        for _ in range(steps):
            if full:
                x, y = embeds, labels
            else:
                if start + batch_size > m:  # a new epoch: reshuffle
                    order, start = torch.randperm(m, generator=gen), 0
                idx = order[start:start + batch_size]
                start += batch_size
                x, y = embeds[idx], labels[idx]
            opt.zero_grad(set_to_none=True)
            loss_on(x, y).backward()
            opt.step()
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head



def fit_rows(embeds: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor, *, weight: torch.Tensor,
             bias: torch.Tensor, free: torch.Tensor, steps: int = 100, weight_decay: float = 5e-4,
             num_threads: int | None = 1, fixed_lse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit only the ``free`` rows of a head, every other row fixed; return the new (weight, bias).

    The objective is `fit_head`'s (class-weighted cross-entropy over all K + 1 classes + L2 on the
    fitted rows), restricted to the free rows' parameters, so it stays convex and L-BFGS solves it.
    The fixed rows' logits are computed once: each step costs M x F x E for F free rows instead of
    M x (K + 1) x E, which is what keeps adding one name cheap however many categories exist.

    Args:
        embeds: [M, E] float; labels: [M] int64 in [0, K] (K = no-object); class_weights: [K + 1].
        weight, bias: the head [K + 1, E] / [K + 1]: fixed rows as they are, free rows as the start.
        free: int64 [F] row indices to fit (no duplicates).
        steps: L-BFGS iterations; weight_decay: L2 on the free rows' weights.
        num_threads: torch intra-op threads while fitting (restored); None keeps the process setting.
        fixed_lse: [M] logsumexp of the fixed rows' logits for every embedding, when the caller keeps it
            (the registry caches it for its bank); None computes it here (M x (K + 1 - F) x E).

    Returns:
        (weight [K + 1, E], bias [K + 1]) float32 copies; rows outside ``free`` are bit-identical.
    """
    embeds = torch.as_tensor(embeds).detach().float().cpu()
    labels = torch.as_tensor(labels).detach().long().cpu()
    class_weights = torch.as_tensor(class_weights).detach().float().cpu()
    weight, bias = weight.detach().float().cpu().clone(), bias.detach().float().cpu().clone()
    free = torch.as_tensor(free, dtype=torch.int64).flatten()
    k1, e = weight.shape
    if embeds.ndim != 2 or embeds.shape[1] != e or labels.shape != (embeds.shape[0],):
        raise ValueError(f"need embeds [M, {e}] and labels [M], got {tuple(embeds.shape)} and {tuple(labels.shape)}")
    if bias.shape != (k1,) or class_weights.shape != (k1,):
        raise ValueError(f"bias and class_weights must be [{k1}], got {tuple(bias.shape)}, {tuple(class_weights.shape)}")
    if free.numel() == 0 or free.unique().numel() != free.numel() or int(free.min()) < 0 or int(free.max()) >= k1:
        raise ValueError(f"free must be distinct row indices in [0, {k1 - 1}], got {free.tolist()}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k1):
        raise ValueError(f"labels must lie in [0, {k1 - 1}]")
    if fixed_lse is not None and tuple(fixed_lse.shape) != (embeds.shape[0],):
        raise ValueError(f"fixed_lse must be [{embeds.shape[0]}], got {tuple(fixed_lse.shape)}")
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _fit_rows(embeds, labels, class_weights, weight, bias, free, steps=steps, weight_decay=weight_decay,
                         fixed_lse=None if fixed_lse is None else fixed_lse.detach().float().cpu())
    finally:
        torch.set_num_threads(previous_threads)


def _fit_rows(embeds: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor, weight: torch.Tensor,
              bias: torch.Tensor, free: torch.Tensor, *, steps: int, weight_decay: float,
              fixed_lse: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit_rows` on checked CPU float32 inputs."""
    k1 = weight.shape[0]
    is_free = torch.zeros(k1, dtype=torch.bool)
    is_free[free] = True
    fixed_rows = torch.nonzero(~is_free).flatten()
    slot = torch.full((k1,), -1, dtype=torch.int64)                # label -> column among the free rows
    slot[free] = torch.arange(free.numel())
    with torch.no_grad():
        if fixed_lse is not None:
            lse_fixed = fixed_lse
        elif fixed_rows.numel():
            lse_fixed = torch.logsumexp(embeds @ weight[fixed_rows].T + bias[fixed_rows], 1)
        else:
            lse_fixed = torch.full((embeds.shape[0],), float("-inf"))
        label_is_free = is_free[labels]
        # the logit of each row's own (fixed) class: one dot product per row (M x E), not M x K x E
        label_logit_fixed = torch.where(label_is_free, torch.zeros(()),
                                        (embeds * weight[labels]).sum(1) + bias[labels])
        row_weight = class_weights[labels]
        row_weight = row_weight / row_weight.sum().clamp(min=1e-12)
    w = weight[free].clone()
    b = bias[free].clone()
    w.grad, b.grad = torch.zeros_like(w), torch.zeros_like(b)
    target = torch.zeros(embeds.shape[0], free.numel())                               # one-hot of free labels
    target[label_is_free, slot[labels[label_is_free]]] = 1.0
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max(steps, 1), history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        # The gradient in closed form (softmax minus target, weighted), not autograd: this small problem
        # is dominated by per-op overhead, and the closed form halves the ops per evaluation.
        free_logits = torch.addmm(b, embeds, w.T)                                     # [M, F]
        lse = torch.logaddexp(lse_fixed, torch.logsumexp(free_logits, 1))              # [M]
        label_logit = torch.where(label_is_free, (free_logits * target).sum(1), label_logit_fixed)
        loss = (row_weight * (lse - label_logit)).sum() + 0.5 * weight_decay * w.pow(2).sum()
        residual = (torch.exp(free_logits - lse[:, None]) - target) * row_weight[:, None]  # dloss/dlogits [M, F]
        torch.mm(residual.T, embeds, out=w.grad)
        w.grad.add_(w, alpha=weight_decay)
        torch.sum(residual, 0, out=b.grad)
        return loss

    if steps > 0:
        opt.step(closure)
    weight[free] = w
    bias[free] = b
    return weight, bias


def warm_up() -> None:
    """Pay the one-time cost of the first torch optimizer in this process now.

    Constructing the first `torch.optim` optimizer imports torch._dynamo (measured 1.5-4 s on
    the 2-core machine); a runtime calls this at start-up so that its first `fit_head` is fast.
    """
    fit_head(torch.zeros(2, 1), torch.tensor([0, 1]), torch.ones(2), steps=1)
