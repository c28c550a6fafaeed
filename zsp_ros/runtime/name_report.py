"""What an added name became: its nearest known categories and whether it is likely to be confused.

Computed by the registry right after an add, from what it already has in hand (no extra network or
text-encoder pass): the text embeddings of every known category, the new name's generated
embeddings and the new head, and the kit's bank of real seen embeddings.

- ``nearest``: the known categories whose names the text encoder puts closest (cosine of text
  embeddings). What the generator makes of a name follows its text embedding, so a name close to a
  known one is understood mostly as that one.
- ``confused_with``: categories the new head gives a large share of the name's own generated
  embeddings to (the name does not get its own region), and seen categories a large share of whose
  REAL bank embeddings the new row now claims with probability above one half (their objects may be
  labelled with the new name).
- ``far``: no known name is as close as the kit's own names usually are to each other (below the
  5th percentile of their nearest-neighbour similarities): the generator extrapolates and what the
  name picks up is least predictable. The bar is relative, so it suits any text encoder (MiniLM's
  and CLIP's cosines live on different scales).

Shapes: D = text width, E = embedding width, K = categories (+1 no-object row in heads).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

NEAREST = 3                 # nearest known names reported per added name
OWN_SHARE_WARNING = 0.5     # warn when less than this share of a name's generated rows is classified as it
CLAIM_WARNING = 0.1         # warn when the new row claims at least this share of a seen category's real rows


@dataclass(frozen=True)
class NameReport:
    """How one added name was understood.

    Attributes:
        name, category_id: the added category.
        nearest: up to 3 (known category name, text cosine), closest first.
        own_share: share of the name's generated embeddings the new head classifies as the name.
        confused_with: (category name, share) pairs: categories taking its generated embeddings, or
            seen categories whose real embeddings it claims (share of that category's bank rows).
        far: True when the name is farther from every known name than the kit's names usually are.
        read_as: what the text encoder embedded when it rewrote the name (zsp_ros.semantics.phrasing),
            else None; because: why it was rewritten so ("WordNet: pentagram is-a star"), or "".
        caution: what the text encoder warns of the name ("this kit knows only the colour of ..."), or "".
    """
    name: str
    category_id: int
    nearest: tuple[tuple[str, float], ...]
    own_share: float
    confused_with: tuple[tuple[str, float], ...]
    far: bool
    read_as: str | None = None
    because: str = ""
    caution: str = ""

    @property
    def warning(self) -> str | None:
        """A plain-language warning, or None when nothing suggests confusion."""
        parts = [self.caution] if self.caution else []
        if self.confused_with:
            others = ", ".join(f"'{n}' ({share:.0%})" for n, share in self.confused_with)
            parts.append(f"likely to be confused with {others}")
        if self.far:
            parts.append("far from every name the kit knows: what it picks up is hard to predict")
        return "; ".join(parts) or None

    def text(self) -> str:
        """One line: ``'name' (id N):[ read as 'x' (why);] nearest 'a' 0.81, 'b' 0.64[; warning: ...]``."""
        near = ", ".join(f"'{n}' {s:.2f}" for n, s in self.nearest) or "none"
        because = f" ({self.because})" if self.because else ""
        read = "" if self.read_as is None else f" read as '{self.read_as}'{because};"
        line = f"'{self.name}' (id {self.category_id}):{read} nearest {near}"
        warning = self.warning
        return line if warning is None else f"{line}; warning: {warning}"


def far_threshold(known_text: torch.Tensor) -> float:
    """5th percentile of the known names' nearest-neighbour text cosines (known_text [N, D], N >= 2)."""
    unit = torch.nn.functional.normalize(known_text.float(), dim=1)
    sims = unit @ unit.T
    sims.fill_diagonal_(-1.0)
    return float(torch.quantile(sims.max(1).values, 0.05))


def name_reports(*, names: Sequence[str], ids: Sequence[int], text: torch.Tensor, known_names: Sequence[str],
                 known_text: torch.Tensor, synthetic: torch.Tensor, synthetic_ids: torch.Tensor,
                 category_names: Sequence[str], category_ids: Sequence[int], weight: torch.Tensor,
                 bias: torch.Tensor, bank_embeds: torch.Tensor, bank_ids: torch.Tensor, bank_lse: torch.Tensor,
                 far_below: float, read_as: Sequence[str] | None = None,
                 because: Sequence[str] | None = None, cautions: Sequence[str] | None = None) -> list[NameReport]:
    """One `NameReport` per added name.

    Args:
        names, ids: the added names and their new category ids; text: their text embeddings [A, D].
        known_names, known_text: every category known before this add and its text embedding [N, D].
        synthetic, synthetic_ids: the added names' generated embeddings [S, E] and ids [S].
        category_names, category_ids: the new head's categories in row order (K); weight [K+1, E], bias [K+1].
        bank_embeds, bank_ids: the kit's real seen embeddings [B, E] and their category ids [B] (0 = none).
        bank_lse: [B] logsumexp of the bank's logits under the new head (the registry keeps it); a bank row
            counts as claimed by a name when the name's probability on it is above one half.
        far_below: `far_threshold` of the kit's names.
        read_as: per name, the text the encoder embedded (reported when it differs from the name).
        because: per name, why it was rewritten (`Interpretation.explanation`).
        cautions: per name, the text encoder's warning ("" for none; `PhrasingEncoder.caution`).
    """
    unit = torch.nn.functional.normalize(text.float(), dim=1)
    known_unit = torch.nn.functional.normalize(known_text.float(), dim=1)
    cos = unit @ known_unit.T if len(known_names) else torch.zeros(len(names), 0)
    row_of = {int(c): k for k, c in enumerate(category_ids)}
    syn_pred = (synthetic.float() @ weight.T + bias).argmax(1)                       # [S] head row
    reports = []
    for a, (name, cid) in enumerate(zip(names, ids)):
        top = torch.topk(cos[a], min(NEAREST, cos.shape[1])) if cos.shape[1] else None
        nearest = () if top is None else tuple((known_names[int(i)], round(float(v), 3))
                                               for v, i in zip(top.values, top.indices))
        own = row_of[int(cid)]
        pred = syn_pred[synthetic_ids == int(cid)]
        own_share = float((pred == own).float().mean()) if pred.numel() else 0.0
        confused: dict[str, float] = {}
        if own_share < OWN_SHARE_WARNING and pred.numel():
            rows, counts = torch.unique(pred[pred != own], return_counts=True)
            for r, n in zip(rows.tolist(), counts.tolist()):
                share = n / pred.numel()
                if r < len(category_names) and share >= CLAIM_WARNING:
                    confused[category_names[r]] = share
        bank_prob = torch.exp(bank_embeds.float() @ weight[own] + bias[own] - bank_lse)   # [B]
        claimed = bank_ids[bank_prob > 0.5]
        for seen_id, n in zip(*torch.unique(claimed[claimed > 0], return_counts=True)):
            total = int((bank_ids == seen_id).sum())
            k = row_of.get(int(seen_id))
            if k is not None and n / total >= CLAIM_WARNING:
                confused[category_names[k]] = max(confused.get(category_names[k], 0.0), float(n) / total)
        reports.append(NameReport(
            name=name, category_id=int(cid), nearest=nearest, own_share=round(own_share, 3),
            confused_with=tuple(sorted(((n, round(s, 3)) for n, s in confused.items()), key=lambda t: -t[1])),
            far=bool(cos.shape[1]) and float(cos[a].max()) < far_below,
            read_as=None if read_as is None or read_as[a] == name else read_as[a],
            because="" if because is None or read_as is None or read_as[a] == name else because[a],
            caution="" if cautions is None else cautions[a]))
    return reports
