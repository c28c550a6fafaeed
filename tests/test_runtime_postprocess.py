"""Post-processing on hand-made logits with known answers, and against a plain loop reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zsp_ros.inference.postprocess import instance_inference, panoptic_inference, semantic_inference
from zsp_ros.inference.resize import NearestResize

BIG = 12.0   # a logit that means "yes" (sigmoid ~ 1 - 6e-6); -BIG means "no"


@pytest.fixture(autouse=True)
def _one_thread(_few_torch_threads):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, params=["kernels", "numpy"])
def host_path(request, monkeypatch):
    """Every test here runs on both host paths: the compiled kernels and their numpy twins."""
    from zsp_ros.inference import postprocess_kernels

    if request.param == "kernels" and not postprocess_kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(postprocess_kernels, "AVAILABLE", request.param == "kernels")
    return request.param


def _class_logits(rows: list[tuple[int, float]], num_classes: int) -> torch.Tensor:
    """One row per query: (class index or K for no-object, its probability); the rest of the
    probability is spread evenly over the other K classes."""
    out = torch.empty(len(rows), num_classes + 1)
    for q, (c, p) in enumerate(rows):
        rest = (1 - p) / num_classes
        probs = torch.full((num_classes + 1,), rest)
        probs[c] = p
        out[q] = probs.log()
    return out


def _mask(h: int, w: int, region: tuple[slice, slice]) -> torch.Tensor:
    m = torch.full((h, w), -BIG)
    m[region] = BIG
    return m


def _reference_panoptic(class_logits, mask_logits, isthing, obj_thr=0.8, overlap_thr=0.8):
    """Mask2Former's loop, written out plainly (slow, obviously right); also counts merges."""
    num_classes = class_logits.shape[1] - 1
    scores, labels = class_logits.softmax(-1).max(-1)
    keep = labels.ne(num_classes) & (scores > obj_thr)
    scores, labels, masks = scores[keep], labels[keep], mask_logits[keep].sigmoid()
    id_map = torch.zeros(mask_logits.shape[-2:], dtype=torch.int32)
    segments, stuff_ids, next_id, merges = [], {}, 0, 0
    if len(scores) == 0:
        return id_map, segments, merges
    winner = (scores[:, None, None] * masks).argmax(0)
    for k in range(len(scores)):
        c = int(labels[k])
        won = int((winner == k).sum())
        own = int((masks[k] >= 0.5).sum())
        final = (winner == k) & (masks[k] >= 0.5)
        if won == 0 or own == 0 or int(final.sum()) == 0 or won / own < overlap_thr:
            continue
        if not isthing[c]:
            if c in stuff_ids:
                id_map[final] = stuff_ids[c]
                seg = next(s for s in segments if s["id"] == stuff_ids[c])
                seg["score"] = max(seg["score"], float(scores[k]))
                merges += 1
                continue
            stuff_ids[c] = next_id + 1
        next_id += 1
        id_map[final] = next_id
        segments.append({"id": next_id, "class_index": c, "isthing": bool(isthing[c]),
                         "score": float(scores[k])})
    for s in segments:
        s["area"] = int((id_map == s["id"]).sum())
    return id_map, segments, merges


def test_semantic_is_the_class_times_mask_probability_sum():
    g = torch.Generator().manual_seed(0)
    cls, masks = torch.randn(4, 4, generator=g), torch.randn(4, 5, 6, generator=g)
    got = semantic_inference(cls, masks)
    probs = cls.softmax(-1)
    expected = torch.zeros(3, 5, 6)
    for q in range(4):
        for k in range(3):
            expected[k] += probs[q, k] * masks[q].sigmoid()
    assert got.shape == (3, 5, 6) and torch.allclose(got, expected, atol=1e-6)


def test_panoptic_known_answer_with_stuff_merging_and_dropped_queries():
    h = w = 4
    isthing = torch.tensor([True, True, False])
    cls = _class_logits([(0, 0.95),   # q0 thing 0, left half
                         (2, 0.90),   # q1 stuff 2, top-right
                         (3, 0.99),   # q2 no-object: dropped
                         (2, 0.85),   # q3 stuff 2, bottom-right: merged with q1
                         (1, 0.50)],  # q4 thing 1, score 0.5 < 0.8: dropped
                        num_classes=3)
    masks = torch.stack([_mask(h, w, (slice(None), slice(0, 2))),
                         _mask(h, w, (slice(0, 2), slice(2, 4))),
                         _mask(h, w, (slice(None), slice(None))),
                         _mask(h, w, (slice(2, 4), slice(2, 4))),
                         _mask(h, w, (slice(None), slice(None)))])
    id_map, segments = panoptic_inference(cls, masks, isthing=isthing)
    expected = torch.tensor([[1, 1, 2, 2]] * 4, dtype=torch.int32)
    assert id_map.dtype == torch.int32 and torch.equal(id_map, expected)
    assert [(s["id"], s["class_index"], s["isthing"], s["area"]) for s in segments] == [
        (1, 0, True, 8), (2, 2, False, 8)]
    assert segments[0]["score"] == pytest.approx(0.95, abs=1e-5)
    assert segments[1]["score"] == pytest.approx(0.90, abs=1e-5)     # best of the merged


def test_panoptic_overlap_threshold_drops_a_mostly_covered_query():
    h, w = 4, 5
    isthing = torch.tensor([True, True])
    cls = _class_logits([(0, 0.99), (1, 0.90), (1, 0.95)], num_classes=2)
    masks = torch.stack([_mask(h, w, (slice(None), slice(0, 3))),      # q0: columns 0-2
                         _mask(h, w, (slice(None), slice(1, 4))),      # q1: 1-3, loses 1-2 to q0
                         _mask(h, w, (slice(None), slice(4, 5)))])     # q2: column 4
    id_map, segments = panoptic_inference(cls, masks, isthing=isthing)
    # q1 wins only column 3 of its 3 columns (1/3 < 0.8): dropped, column 3 stays empty
    expected = torch.tensor([[1, 1, 1, 0, 2]] * h, dtype=torch.int32)
    assert torch.equal(id_map, expected)
    assert [(s["id"], s["class_index"], s["area"]) for s in segments] == [(1, 0, 12), (2, 1, 4)]
    # with the threshold lowered, q1 keeps column 3 and takes id 2 (query order)
    id_map, segments = panoptic_inference(cls, masks, isthing=isthing, overlap_threshold=0.3)
    assert torch.equal(id_map, torch.tensor([[1, 1, 1, 2, 3]] * h, dtype=torch.int32))


def test_panoptic_nothing_kept_gives_an_empty_map():
    cls = _class_logits([(2, 0.99), (0, 0.3)], num_classes=2)
    id_map, segments = panoptic_inference(cls, torch.randn(2, 3, 3), isthing=torch.tensor([1, 0]))
    assert segments == [] and id_map.shape == (3, 3) and int(id_map.abs().sum()) == 0


def _random_scene(seed: int, num_queries: int = 16, num_classes: int = 4, h: int = 12, w: int = 13):
    """Queries with rectangular masks (soft edges, noise) and peaked class scores."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes + 1, (num_queries,), generator=g)
    probs = 0.7 + 0.3 * torch.rand(num_queries, generator=g)               # some below 0.8
    cls = _class_logits(list(zip(labels.tolist(), probs.tolist())), num_classes)
    masks = torch.randn(num_queries, h, w, generator=g)
    for q in range(num_queries):
        y0, x0 = torch.randint(0, h - 2, (1,), generator=g), torch.randint(0, w - 2, (1,), generator=g)
        y1 = y0 + torch.randint(2, h, (1,), generator=g)
        x1 = x0 + torch.randint(2, w, (1,), generator=g)
        masks[q] -= 6
        masks[q, y0:y1, x0:x1] += 12
    return cls, masks


def test_panoptic_matches_the_reference_loop():
    isthing = torch.tensor([True, False, True, False])
    segments_seen = merged_seen = 0
    for seed in range(8):
        cls, masks = _random_scene(seed)
        for overlap in (0.8, 0.5, 0.1):
            got_map, got = panoptic_inference(cls, masks, isthing=isthing,
                                              overlap_threshold=overlap)
            ref_map, ref, merges = _reference_panoptic(cls, masks, isthing, overlap_thr=overlap)
            assert torch.equal(got_map, ref_map), (seed, overlap)
            assert len(got) == len(ref)
            for a, b in zip(got, ref):
                assert a.keys() == b.keys()
                assert {k: v for k, v in a.items() if k != "score"} == {
                    k: v for k, v in b.items() if k != "score"}
                assert a["score"] == pytest.approx(b["score"], abs=1e-6)
            segments_seen += len(got)
            merged_seen += merges
            assert torch.unique(got_map[got_map > 0]).tolist() == [s["id"] for s in got]
    assert segments_seen > 40 and merged_seen > 3      # the cases above were really exercised


def test_instance_topk_scores_and_thing_filter():
    h = w = 4
    cls = _class_logits([(0, 0.9), (1, 0.6), (2, 0.8)], num_classes=2)  # q2 is no-object
    half = _mask(h, w, (slice(None), slice(0, 2)))
    masks = torch.stack([half, half.flip(-1), half])
    out = instance_inference(cls, masks, topk=3)
    probs = cls.softmax(-1)[:, :2]
    # the 3 best (query, class) pairs: (0,0)=0.9, (1,1)=0.6, then (1,0)=0.2 and (2,*)=0.1 ...
    assert out["query_index"].tolist() == [0, 1, 1]
    assert out["class_index"].tolist() == [0, 1, 0]
    mean_in_mask = half.sigmoid()[half > 0].mean()
    assert torch.allclose(out["scores"], torch.stack([probs[0, 0], probs[1, 1], probs[1, 0]])
                          * mean_in_mask, atol=1e-6)
    assert out["masks"].dtype == torch.bool and torch.equal(out["masks"][0], half > 0)
    assert torch.equal(out["masks"][1], half.flip(-1) > 0)
    things = instance_inference(cls, masks, topk=3, isthing=torch.tensor([False, True]))
    assert things["class_index"].tolist() == [1]
    assert instance_inference(cls, masks, topk=100)["scores"].shape == (6,)   # capped at Q*K


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"\[Q,K\+1\]"):
        semantic_inference(torch.zeros(3, 4, 1), torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="3 class rows but 2 masks"):
        panoptic_inference(torch.zeros(3, 4), torch.zeros(2, 2, 2), isthing=torch.ones(3))
    with pytest.raises(ValueError, match="isthing"):
        panoptic_inference(torch.zeros(3, 4), torch.zeros(3, 2, 2), isthing=torch.ones(2))


def test_first_max_tag_is_argmax_with_ties_broken_to_the_first():
    from zsp_ros.inference.postprocess_numpy import first_max_tag

    def first_argmax(values):
        return values.shape[0] - first_max_tag(values)[1].astype(np.intp)

    rng = np.random.default_rng(3)
    for shape in [(1, 5, 6), (4, 7, 9), (30, 3, 4), (64, 50), (300, 4, 3)]:
        values = rng.random(shape, dtype=np.float32)
        if shape[0] > 2:
            values[2] = values[0]                          # exact ties: the first wins
            values[1] = 0.0
        got = first_argmax(values)
        assert np.array_equal(got, values.argmax(0)), shape
    saturated = np.ones((3, 2, 2), dtype=np.float32)       # every query equal everywhere
    assert np.array_equal(first_argmax(saturated), np.zeros((2, 2)))
    with_nan = np.array([[0.1, np.nan], [0.3, 0.2]], dtype=np.float32)
    assert first_argmax(with_nan).tolist() == [1, 1]       # NaN maximum -> n - 1, in range


def test_semantic_labels_are_the_argmax_of_semantic_inference():
    from zsp_ros.inference.postprocess import semantic_labels

    g = torch.Generator().manual_seed(1)
    for q, k, h, w in [(1, 1, 1, 1), (4, 3, 5, 6), (30, 41, 32, 43)]:
        cls, masks = torch.randn(q, k + 1, generator=g), torch.randn(q, h, w, generator=g)
        got = semantic_labels(cls.softmax(-1), masks)
        expected = semantic_inference(cls, masks).argmax(0).numpy()
        assert got.shape == (h, w) and np.array_equal(got, expected), (q, k, h, w)
    tied = semantic_labels(torch.full((2, 4), 0.25), torch.zeros(2, 3, 3))   # every class equal
    assert np.array_equal(tied, np.zeros((3, 3)))


def test_kernel_and_numpy_pixel_assignment_agree_on_random_scenes_with_ties(host_path):
    """The compiled pixel assignment equals its numpy twin exactly, ties and stuff merges included."""
    from zsp_ros.inference import postprocess_kernels, postprocess_numpy

    if host_path == "numpy" or not postprocess_kernels.AVAILABLE:
        pytest.skip("compares the two paths; runs once")
    rng = np.random.default_rng(5)
    merged = 0
    for case in range(200):
        n, h, w, k = int(rng.integers(1, 12)), int(rng.integers(1, 20)), int(rng.integers(1, 20)), 5
        probs = rng.random((n, h, w), dtype=np.float32)
        if case % 3 == 0:
            probs = np.round(probs * 4) / 4                              # exact ties between queries
        scores = rng.random(n, dtype=np.float32)
        if case % 4 == 0:
            scores[:] = scores[0]
        labels = rng.integers(0, k, n)
        stuff = rng.random(k) > 0.5
        overlap = float(rng.choice([0.0, 0.5, 0.8, 1.0]))
        got = postprocess_kernels.panoptic_assign(probs.copy(), scores, labels, stuff, overlap)
        want = postprocess_numpy.panoptic_assign(probs.copy(), scores, labels, stuff, overlap)
        for a, b in zip(got, want):
            assert a.dtype.kind == b.dtype.kind and np.array_equal(a, b), case
        merged += len(set(labels[stuff[labels]])) < int(stuff[labels].sum())
        id_map, num_segments = got[0], len(got[1])
        big = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))     # shrink or enlarge to an input size
        plan = NearestResize((h, w), big)
        extents = [impl(id_map, num_segments, plan.row_weight, plan.col_weight, plan.first_row, plan.last_row,
                        plan.first_col, plan.last_col) for impl in (postprocess_kernels.segment_extents,
                                                                    postprocess_numpy.segment_extents)]
        assert np.array_equal(extents[0][0], extents[1][0]) and np.array_equal(extents[0][1], extents[1][1]), case
        values = probs.reshape(n, -1)
        assert np.array_equal(postprocess_kernels.first_argmax(values), postprocess_numpy.first_argmax(values)), case
    assert merged > 20
