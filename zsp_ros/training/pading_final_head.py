"""PADing stage 3: the final head, refitted on the whole bank plus generated unseen embeddings.

`fit_final_head` takes a trained `PadingTrainer` and returns a fresh ``Linear(E, K + 1)``
(float32, CPU; row i = category i of the bank, the last row no object) fitted with
`zsp_ros.pading.head_fit.fit_head` under the config's ``final_head`` section, warm-started
from the head trained alongside when ``final_head.warm_start``, plus its metrics
(``final_head/*``: rows used, fakes per class, accuracy on the real and on the fake rows).
"""
from __future__ import annotations

import torch
from torch import nn

from zsp_ros.pading.head_fit import fit_head
from zsp_ros.pading.synthesis import synthesize_embeddings
from zsp_ros.training.pading_trainer import PadingTrainer


def fit_final_head(trainer: PadingTrainer) -> tuple[nn.Linear, dict[str, float]]:
    """Refit the head on the bank + generated unseen embeddings (`fit_head`). Deterministic
    (seeded); `train_pading` calls it on rank 0 only.

    Each seen category keeps at most ``max_rows_per_class`` real rows (seeded subsample);
    no-object rows are subsampled by the same overall fraction as the object rows, so the
    bank's object / no-object proportion (the head's no-object prior) is kept.
    """
    fh, k = trainer.cfg["final_head"], trainer.num_classes
    gen = torch.Generator().manual_seed(trainer.seed + 1)
    cap = fh["max_rows_per_class"]
    keep, kept_objects, all_objects = [], 0, 0
    for c in torch.unique(trainer.labels[trainer.labels < k]).tolist():
        rows = torch.nonzero(trainer.labels == c).squeeze(1)
        all_objects += rows.numel()
        if cap is not None and rows.numel() > cap:
            rows = rows[torch.randperm(rows.numel(), generator=gen)[:cap]]
        kept_objects += rows.numel()
        keep.append(rows)
    no_object = torch.nonzero(trainer.labels == k).squeeze(1)
    fraction = kept_objects / all_objects if all_objects else 1.0
    keep.append(no_object[torch.randperm(no_object.numel(), generator=gen)
                          [:max(1, round(fraction * no_object.numel()))]])
    keep = torch.sort(torch.cat(keep)).values
    real, labels = trainer.embeds[keep].float(), trainer.labels[keep]
    seen_counts = torch.bincount(labels[labels < k], minlength=k)[trainer.seen_index]
    per_class = fh["fakes_per_class"]
    if per_class is None:
        present = seen_counts[seen_counts > 0]
        per_class = int(present.float().median()) if present.numel() else 0
    fakes, fake_labels = synthesize_embeddings(trainer.generator, trainer.semantic[trainer.unseen_index],
                                               trainer.unseen_index, per_class=int(per_class),
                                               seed=trainer.seed + 2)
    x, y = torch.cat([real, fakes]), torch.cat([labels, fake_labels])
    head = fit_head(x, y, trainer.class_weights.cpu(), steps=fh["steps"], lr=fh["lr"],
                    optimizer=fh["optimizer"], weight_decay=fh["weight_decay"],
                    init=trainer.head.cpu() if fh["warm_start"] else None, seed=trainer.seed,
                    num_threads=None)
    trainer.head.to(trainer.device)
    with torch.no_grad():
        pred = head(x).argmax(1)
    real_mask = torch.arange(y.numel()) < real.shape[0]
    metrics = {"final_head/real_rows": float(real.shape[0]),
               "final_head/fakes_per_class": float(per_class),
               "final_head/real_accuracy": float((pred[real_mask] == y[real_mask]).float().mean())}
    if fakes.numel():
        metrics["final_head/fake_accuracy"] = float((pred[~real_mask] == y[~real_mask]).float().mean())
    return head, metrics
