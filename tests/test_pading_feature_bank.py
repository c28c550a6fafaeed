"""Feature bank (zsp_ros/training/feature_bank.py): extraction with a matcher, file round trip, hash check."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from zsp_ros.training.feature_bank import (
    FeatureBank,
    extract_feature_bank,
    load_feature_bank,
    save_feature_bank,
    sha256_file,
)

CATEGORIES = [{"id": 3, "name": "red circle", "isthing": True, "seen": True},
              {"id": 7, "name": "blue star", "isthing": True, "seen": True},
              {"id": 9, "name": "green square", "isthing": True, "seen": False}]


class _FakeSegmenter(nn.Module):
    """Q queries whose embedding encodes (image mean, query slot); CONTRACTS.md output keys.
    Query 2j is confident of class index j, so the Hungarian matcher pairs target j with it."""

    def __init__(self, num_queries: int = 5, embed_dim: int = 4) -> None:
        super().__init__()
        self.q, self.e = num_queries, embed_dim
        self.seen_shapes: list[tuple[int, ...]] = []

    def forward(self, images: torch.Tensor) -> dict:
        self.seen_shapes.append(tuple(images.shape))
        b, _, h, w = images.shape
        slot = torch.arange(self.q, dtype=torch.float32)
        embeds = torch.stack([slot] * self.e, -1).expand(b, self.q, self.e).clone()
        embeds[..., 0] = images.mean((1, 2, 3))[:, None]
        logits = torch.full((b, self.q, 3), -10.0)
        for j in range(min(2, (self.q + 1) // 2)):
            logits[:, 2 * j, j] = 10.0
        return {"pred_logits": logits, "pred_masks": torch.zeros(b, self.q, h // 4, w // 4),
                "pred_embeds": embeds, "aux_outputs": [{"pred_logits": torch.zeros(b, self.q, 3)}]}


def _matcher(outputs: dict, targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Target j -> query 2j (deterministic stand-in for the Hungarian matcher)."""
    assert "aux_outputs" not in outputs
    out = []
    for t in targets:
        n = t["labels"].numel()
        assert t["masks"].shape[-2:] == (64, 64)          # padded like the images
        out.append((torch.arange(n) * 2, torch.arange(n)))
    return out


def _item(image_id: int, category_ids: list[int]) -> tuple[torch.Tensor, dict]:
    """A (image, target) pair as zsp_ros.data's datasets return it; labels = 0..N-1."""
    n = len(category_ids)
    return (torch.full((3, 40, 50), image_id * 10, dtype=torch.uint8),
            {"labels": torch.arange(n), "masks": torch.ones(n, 40, 50, dtype=torch.bool),
             "category_ids": torch.tensor(category_ids, dtype=torch.int64), "image_id": image_id})


@pytest.mark.parametrize("matcher", ["hungarian", "stand-in"])
def test_extract_labels_matched_queries_and_no_object(matcher):
    from zsp_ros.training.matcher import HungarianMatcher

    dataset = [_item(11, [3, 7]), _item(12, []), {"image": _item(13, [7])[0], "target": _item(13, [7])[1]}]
    model = _FakeSegmenter()
    match = HungarianMatcher(num_points=64) if matcher == "hungarian" else _matcher
    state = torch.get_rng_state()
    bank = extract_feature_bank(model, dataset, match, categories=CATEGORIES, segmenter_hash="ab" * 32,
                                batch_size=2, progress=False)
    assert torch.equal(torch.get_rng_state(), state)       # the caller's RNG is untouched
    assert model.seen_shapes == [(2, 3, 64, 64), (1, 3, 64, 64)] and model.training
    assert len(bank) == 15 and bank.embed_dim == 4
    assert bank.category_ids.tolist() == [3, 0, 7, 0, 0] + [0] * 5 + [7, 0, 0, 0, 0]
    assert bank.image_ids.tolist() == [11] * 5 + [12] * 5 + [13] * 5
    assert bank.query_index.tolist() == list(range(5)) * 3
    assert bank.embeds.dtype == torch.float16 and bank.extra["num_queries"] == 5
    capped = extract_feature_bank(model, dataset, match, categories=CATEGORIES, segmenter_hash="x",
                                  max_unmatched_per_image=1, progress=False)
    assert capped.category_ids.tolist() == [3, 7, 0] + [0] + [7, 0]
    assert capped.query_index[:2].tolist() == [0, 2]


def test_bank_file_round_trip_and_segmenter_check(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"some weights")
    digest = sha256_file(weights)
    bank = FeatureBank(embeds=torch.randn(6, 8), category_ids=torch.tensor([3, 0, 7, 0, 3, 0]),
                       image_ids=torch.tensor([1, 1, 1, 2, 2, 2]), query_index=torch.tensor([0, 1, 2] * 2),
                       categories=CATEGORIES, segmenter_hash=digest, extra={"source": "test"})
    path = tmp_path / "bank.safetensors"
    save_feature_bank(path, bank)
    back = load_feature_bank(path, segmenter_hash=digest)
    assert torch.allclose(back.embeds.float(), bank.embeds, atol=1e-2) and back.embeds.dtype == torch.float16
    assert torch.equal(back.category_ids, bank.category_ids) and back.categories == CATEGORIES
    assert back.extra == {"source": "test"}
    save_feature_bank(path, bank, dtype=torch.float32)
    assert torch.equal(load_feature_bank(path).embeds, bank.embeds)
    with pytest.raises(ValueError, match="re-extract"):
        load_feature_bank(path, segmenter_hash="0" * 64)
    with pytest.raises(ValueError, match="not in its category list"):
        FeatureBank(embeds=torch.zeros(1, 2), category_ids=torch.tensor([5]), image_ids=torch.tensor([1]),
                    query_index=torch.tensor([0]), categories=CATEGORIES, segmenter_hash="x")
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(other))
    with pytest.raises(ValueError, match="not a feature bank"):
        load_feature_bank(other)
