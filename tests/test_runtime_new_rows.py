"""The default add path: only the new categories' rows are fitted (fit_rows), the rest of the head fixed;
bounded stored rows; what the registry reports about each added name."""
from __future__ import annotations

import pytest
import torch
from runtime_fakes import make_kit, make_registry
from torch.nn import functional as F

from zsp_ros.pading.head_fit import fit_head, fit_rows
from zsp_ros.runtime import registry as registry_module
from zsp_ros.runtime.name_report import NameReport, far_threshold
from zsp_ros.semantics.lexicon import find_wordnet


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory):
    return make_kit(tmp_path_factory.mktemp("kit") / "kit", per_class=32)


def _objective(x, y, cw, w, b, wd=5e-4):
    return float(F.cross_entropy(x @ w.T + b, y, weight=cw) + 0.5 * wd * w.pow(2).sum())


def test_fit_rows_with_every_row_free_reaches_fit_heads_minimum():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(600, 8, generator=g), torch.randint(0, 5, (600,), generator=g)
    cw = torch.rand(5, generator=g) + 0.5
    w0, b0 = torch.randn(5, 8, generator=g) * 0.1, torch.zeros(5)
    w, b = fit_rows(x, y, cw, weight=w0, bias=b0, free=torch.arange(5), steps=300)
    head = fit_head(x, y, cw, steps=300, init=(w0, b0))
    assert _objective(x, y, cw, w, b) == pytest.approx(_objective(x, y, cw, head.weight, head.bias), abs=1e-4)


def test_fit_rows_changes_only_the_free_rows_and_lowers_the_objective():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(400, 8, generator=g), torch.randint(0, 4, (400,), generator=g)
    cw = torch.ones(4)
    w0, b0 = torch.randn(4, 8, generator=g), torch.randn(4, generator=g)
    w, b = fit_rows(x, y, cw, weight=w0, bias=b0, free=torch.tensor([1, 3]), steps=50)
    assert torch.equal(w[[0, 2]], w0[[0, 2]]) and torch.equal(b[[0, 2]], b0[[0, 2]])
    assert not torch.equal(w[1], w0[1])
    assert _objective(x, y, cw, w, b) < _objective(x, y, cw, w0, b0)


@pytest.mark.parametrize("free, message", [([], "free must be"), ([1, 1], "free must be"), ([9], "free must be")])
def test_fit_rows_refuses_bad_rows(free, message):
    with pytest.raises(ValueError, match=message):
        fit_rows(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.ones(3), weight=torch.zeros(3, 2),
                 bias=torch.zeros(3), free=torch.tensor(free, dtype=torch.long))


def test_add_fits_only_the_new_row_and_recognises_the_name(kit_dir):
    reg = make_registry(kit_dir, refit_mode="new_rows")
    before = reg.snapshot
    added, = reg.add(["purple star"])
    snap = reg.snapshot
    k_old = len(before.categories)
    assert torch.equal(snap.weight[:k_old], before.weight[:-1]) and torch.equal(snap.weight[-1], before.weight[-1])
    assert torch.equal(snap.bias[:k_old], before.bias[:-1])
    syn = reg._state.synthetic_embeds[reg._state.synthetic_ids == added.id]
    assert ((syn @ snap.weight.T + snap.bias).argmax(1) == snap.categories.index_of(added.id)).float().mean() > 0.9
    real = reg.kit.bank_embeds.float()
    lut = {c.id: k for k, c in enumerate(snap.categories)} | {0: len(snap.categories)}
    labels = torch.tensor([lut[int(i)] for i in reg.kit.bank_category_ids])
    assert ((real @ snap.weight.T + snap.bias).argmax(1) == labels).float().mean() > 0.8


def test_removed_seen_category_added_again_learns_from_its_real_rows(kit_dir):
    reg = make_registry(kit_dir, refit_mode="new_rows")
    blue = reg.kit.bank_embeds[reg.kit.bank_category_ids == 4].float()
    reg.remove(["blue star"])                                       # removals refit every row
    assert (((blue @ reg.snapshot.weight.T + reg.snapshot.bias).argmax(1)) == len(reg.snapshot.categories)
            ).float().mean() > 0.9
    again, = reg.add(["blue star"])
    snap = reg.snapshot
    assert ((blue @ snap.weight.T + snap.bias).argmax(1) == snap.categories.index_of(again.id)).float().mean() > 0.9


def test_stored_rows_are_bounded_and_the_fit_sees_every_new_row(kit_dir, monkeypatch):
    seen = []
    real_fit_rows = registry_module.fit_rows

    def recording(embeds, labels, weights, **kw):
        seen.append((embeds.shape[0], weights.clone()))
        return real_fit_rows(embeds, labels, weights, **kw)

    monkeypatch.setattr(registry_module, "fit_rows", recording)
    reg = make_registry(kit_dir, refit_mode="new_rows", synthetic_per_category=16, stored_synthetic_per_category=4)
    bank = reg.kit.bank_embeds.shape[0]
    reg.add(["purple star", "orange moon"])
    assert seen[-1][0] == bank + 32                                  # all 16 new rows of both names
    assert reg._state.synthetic_embeds.shape[0] == 8                 # 4 kept per name
    reg.add(["yellow sun"])
    rows, weights = seen[-1]
    assert rows == bank + 8 + 16                                      # the kept rows of the others + 16 new
    w_added = reg.new_row_added_weight
    assert torch.allclose(weights[-4:-2], torch.full((2,), w_added * 16 / 4))  # each stands for all its rows
    assert float(weights[-2]) == w_added


def test_the_fit_size_stays_bounded_however_many_names_exist(kit_dir, monkeypatch):
    sizes = []
    real_fit_rows = registry_module.fit_rows

    def recording(embeds, labels, weights, **kw):
        sizes.append(embeds.shape[0])
        return real_fit_rows(embeds, labels, weights, **kw)

    monkeypatch.setattr(registry_module, "fit_rows", recording)
    reg = make_registry(kit_dir, refit_mode="new_rows", synthetic_per_category=8, max_negative_rows=40,
                        new_row_steps=5)
    for i in range(12):
        reg.add([f"thing {i}"])
    assert max(sizes) <= reg.kit.bank_embeds.shape[0] + 40 + 8          # negatives + the new name's rows
    assert sizes[-1] > reg.kit.bank_embeds.shape[0] + 8                  # earlier names are negatives
    assert len(reg.list()) == 4 + 12


def test_the_cached_bank_logsumexp_matches_a_fresh_one(kit_dir):
    reg = make_registry(kit_dir, refit_mode="new_rows")
    reg.add(["purple star"])
    reg.add(["orange moon", "yellow sun"])
    cached_for, cached = reg._bank_lse
    snap = reg.snapshot
    assert cached_for is snap.weight
    fresh = torch.logsumexp(reg.kit.bank_embeds.float() @ snap.weight.T + snap.bias, 1)
    assert torch.allclose(cached, fresh, atol=1e-4)


def test_refit_mode_is_checked(kit_dir):
    with pytest.raises(ValueError, match="refit_mode must be one of"):
        make_registry(kit_dir, refit_mode="sometimes")


def test_add_reports_nearest_names_and_confusion(kit_dir):
    reg = make_registry(kit_dir, refit_mode="new_rows")
    reg.add(["blue star big", "zzz qqq"])
    by_name = {r.name: r for r in reg.last_add_report}
    assert set(by_name) == {"blue star big", "zzz qqq"}
    star = by_name["blue star big"]
    assert star.nearest[0][0] == "blue star" and star.nearest[0][1] > 0.5     # shares two of its words
    assert len(star.nearest) == 3 and star.nearest[0][1] >= star.nearest[1][1] >= star.nearest[2][1]
    assert "nearest 'blue star'" in star.text()
    assert by_name["zzz qqq"].far and "far from every name the kit knows" in by_name["zzz qqq"].text()
    assert not star.far


def test_report_text_names_confused_categories():
    r = NameReport(name="crimson ring", category_id=70, nearest=(("red ring", 0.8),), own_share=0.2,
                   confused_with=(("red ring", 0.62),), far=False)
    assert r.text() == ("'crimson ring' (id 70): nearest 'red ring' 0.80; warning: likely to be confused "
                        "with 'red ring' (62%)")
    clean = NameReport(name="x", category_id=1, nearest=(), own_share=1.0, confused_with=(), far=False)
    assert clean.warning is None and clean.text() == "'x' (id 1): nearest none"


def test_far_threshold_is_relative_to_the_kits_names():
    close = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.98, 0.2]])
    assert far_threshold(close) > 0.9
    spread = torch.eye(3)
    assert far_threshold(spread) == pytest.approx(0.0, abs=1e-6)


def _phrasing_registry(kit_dir, **settings):
    from runtime_fakes import FakeTextEncoder

    from zsp_ros.semantics.build import with_phrasing
    encoder = with_phrasing(FakeTextEncoder(), {"vocabulary": ["red circle", "green square", "blue star", "grass"],
                                                **settings})
    return make_registry(kit_dir, refit_mode="new_rows", encoder=encoder)


def test_a_name_read_as_a_known_category_is_refused(kit_dir):
    from zsp_ros.runtime.category_requests import CategoryError

    reg = _phrasing_registry(kit_dir)
    with pytest.raises(CategoryError, match=r"'navy star' is read as 'blue star', already a category \(id 4\)"):
        reg.add(["navy star"])
    with pytest.raises(CategoryError, match=r"'navy circle' is read as 'blue circle', like 'blue circle' in the same"):
        reg.add(["blue circle", "navy circle"])
    assert reg.version == 1


def test_the_report_says_what_a_rewritten_name_was_read_as(kit_dir):
    reg = _phrasing_registry(kit_dir)
    reg.add(["navy square tile", "green moon"])
    by_name = {r.name: r for r in reg.last_add_report}
    assert by_name["navy square tile"].read_as == "blue square"
    assert by_name["navy square tile"].because == "navy is a shade of blue; left out 'tile' (no word of the kit)"
    assert ("read as 'blue square' (navy is a shade of blue; left out 'tile' (no word of the kit));"
            in by_name["navy square tile"].text())
    assert by_name["green moon"].read_as is None


def test_a_name_with_no_word_the_kit_knows_is_refused_by_name(kit_dir):
    """Absent-name acceptance: a name the kit cannot recombine from its words is refused, the refusal names
    it (the rest of the request would pass), and the kit's setting turns the refusal off."""
    from zsp_ros.runtime.category_requests import CategoryError

    reg = _phrasing_registry(kit_dir)
    with pytest.raises(CategoryError, match=r"'purple moon' has no word this kit knows \(its names use: blue, "
                                            r"circle, grass, green, red, square, star\)") as refused:
        reg.add(["green moon", "purple moon", "coffee mug"])
    assert set(refused.value.refused) == {"purple moon", "coffee mug"} and reg.version == 1
    assert [c.name for c in reg.add(["green moon"])] == ["green moon"]
    lenient = _phrasing_registry(kit_dir, refuse_unknown_names=False)
    assert [c.name for c in lenient.add(["purple moon"])] == ["purple moon"]


def test_a_name_whose_only_kit_word_is_a_colour_is_added_with_a_warning_or_refused(kit_dir):
    """"red napkin": the kit knows red, not what a napkin looks like; it would label red things of any shape.
    The report says so (added, by default); refuse_colour_only_names refuses it by name instead. "red heart"
    names a shape (WordNet) that is none of the kit's: refused by default (refuse_other_kinds)."""
    from zsp_ros.runtime.category_requests import CategoryError

    reg = _phrasing_registry(kit_dir)
    reg.add(["red napkin", "green star"])
    by_name = {r.name: r for r in reg.last_add_report}
    warning = by_name["red napkin"].warning
    assert warning is not None and warning.startswith("this kit knows only the colour of 'red napkin' (red), "
                                                      "not what 'napkin' looks like: it will label red things")
    assert "its shape and texture words: circle, grass, square, star" in warning
    assert by_name["green star"].caution == ""
    if find_wordnet() is not None:
        with pytest.raises(CategoryError, match=r"'red heart' names a shape this kit does not know"):
            reg.add(["red heart"])
    strict = _phrasing_registry(kit_dir, refuse_colour_only_names=True)
    with pytest.raises(CategoryError, match=r"only the colour of 'blue napkin'.*name a shape it knows") as refused:
        strict.add(["blue napkin", "green star"])
    assert set(refused.value.refused) == {"blue napkin"}
    assert [c.name for c in strict.add(["green star"])] == ["green star"]
