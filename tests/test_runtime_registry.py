"""Category registry: add / remove / list, every validation error, versions, stable ids, threads."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from runtime_fakes import QuadrantNetwork, make_kit, make_registry, prototype_fit

from zsp_ros.runtime.category_requests import MAX_NAME_CHARS, CategoryError


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory):
    return make_kit(tmp_path_factory.mktemp("kit") / "kit")


@pytest.fixture
def reg(kit_dir):
    return make_registry(kit_dir)


def test_initial_state_is_the_kits(reg):
    cats = reg.list()
    assert cats.ids == [1, 2, 4, 7] and cats.version == 1 and reg.version == 1
    assert cats.text_encoder == "fake-words-16"
    assert reg.snapshot.weight.shape == (5, 16)


def test_add_bumps_version_and_gives_new_ids(reg):
    old = reg.snapshot
    old_weight = old.weight.clone()
    added = reg.add(["purple star", "orange moon"], isthing=[True, False])
    assert [(c.id, c.name, c.isthing, c.origin) for c in added] == [
        (8, "purple star", True, "added"), (9, "orange moon", False, "added")]
    snap = reg.snapshot
    assert snap.version == 2 and snap.weight.shape == (7, 16) and snap.bias.shape == (7,)
    assert snap.categories.names[-2:] == ["purple star", "orange moon"]
    assert old.version == 1 and len(old.categories) == 4 and torch.equal(old.weight, old_weight)  # immutable
    assert set(reg.last_timings_ms) >= {"encode", "generate", "fit", "swap", "total"}


def test_isthing_defaults_and_forms(reg):
    assert reg.add(["a thing"])[0].isthing is True
    assert reg.add(["some stuff"], isthing=False)[0].isthing is False
    assert reg.add(["another"], isthing=[])[0].isthing is True      # empty list = all things (srv convention)


@pytest.mark.parametrize("names, isthing, message", [
    ([], None, "no names given"),
    ("purple star", None, "got the single string"),
    ([""], None, "name '' is empty"),
    (["   "], None, "name '   ' is empty"),
    ([" purple star"], None, "name ' purple star' has leading or trailing whitespace"),
    (["purple star\t"], None, "has leading or trailing whitespace"),
    (["x" * (MAX_NAME_CHARS + 1)], None, f"is {MAX_NAME_CHARS + 1} characters long \\(at most {MAX_NAME_CHARS}\\)"),
    (["purple\nstar"], None, "contains non-printable characters"),
    (["purple\x00star"], None, "contains non-printable characters"),
    (["purple\u200bstar"], None, "contains non-printable characters"),
    (["purple star", "Purple Star"], None, "name 'Purple Star' is given more than once"),
    (["Red Circle"], None, "'Red Circle' is already a category \\(id 1\\)"),
    (["grass"], None, "'grass' is already a category \\(id 7\\)"),
    ([5], None, "5 is not a string \\(int\\)"),
    (["a", "b"], [True], "isthing has 1 values for 2 names"),
    (["n"] * 300, None, "300 names in one request; at most 256"),
])
def test_add_validation_errors(reg, names, isthing, message):
    before = reg.snapshot
    with pytest.raises(CategoryError, match=message):
        reg.add(names, isthing=isthing)
    assert reg.snapshot is before                     # nothing changed


def test_add_reports_every_problem_at_once(reg):
    with pytest.raises(CategoryError) as info:
        reg.add(["", " x", "red circle"])
    msg = str(info.value)
    assert "is empty" in msg and "whitespace" in msg and "already a category" in msg


def test_non_ascii_printable_names_are_fine(reg):
    added = reg.add(["café au lait", "紫色の星"])
    assert [c.name for c in added] == ["café au lait", "紫色の星"]
    assert len("x" * MAX_NAME_CHARS) == MAX_NAME_CHARS and reg.add(["x" * MAX_NAME_CHARS])


def test_remove_by_name_and_id(reg):
    reg.add(["purple star"])                                   # id 8, version 2
    removed = reg.remove(["Purple Star", 2])
    assert removed == [2, 8]
    assert reg.list().ids == [1, 4, 7] and reg.version == 3
    assert reg.snapshot.weight.shape == (4, 16)


@pytest.mark.parametrize("items, message", [
    ([], "no categories given"),
    (["no such thing"], "unknown category 'no such thing'"),
    ([99], "unknown category id 99"),
    ([1, "red circle"], "category 'red circle' \\(id 1\\) is listed more than once"),
    ([1, 2, 4, 7], "cannot remove every category"),
    ([True], "True is neither a name nor an id"),
    ([1.5], "1.5 is neither a name nor an id"),
])
def test_remove_validation_errors(reg, items, message):
    before = reg.snapshot
    with pytest.raises(CategoryError, match=message):
        reg.remove(items)
    assert reg.snapshot is before


def test_ids_are_never_reused(reg):
    a, = reg.add(["alpha"])
    b, = reg.add(["beta"])
    assert (a.id, b.id) == (8, 9)
    reg.remove([b.id])
    reg.remove([7])                                            # a seen id
    c, = reg.add(["gamma"])
    assert c.id == 10
    d, = reg.add(["beta"])                                     # same name again: still a new id
    assert d.id == 11
    assert reg.version == 7


def test_remove_retrains_removed_seen_objects_to_no_object(reg):
    kit = reg.kit
    blue = kit.bank_embeds[kit.bank_category_ids == 4].float()
    reg.remove(["blue star"])
    snap = reg.snapshot
    pred = (blue @ snap.weight.T + snap.bias).argmax(1)
    assert (pred == len(snap.categories)).float().mean() > 0.9    # no-object row
    assert 4 in reg._state.removed_ids


def test_added_category_is_recognised_by_the_new_head(reg):
    added, = reg.add(["purple star"])
    snap = reg.snapshot
    syn = reg._state.synthetic_embeds[reg._state.synthetic_ids == added.id]
    pred = (syn @ snap.weight.T + snap.bias).argmax(1)
    assert (pred == snap.categories.index_of(added.id)).all()


def test_synthetic_embeddings_are_seeded_per_id(kit_dir):
    r1, r2 = make_registry(kit_dir), make_registry(kit_dir)
    r1.add(["purple star"])
    r2.add(["purple star"])
    assert torch.equal(r1._state.synthetic_embeds, r2._state.synthetic_embeds)
    assert r1._state.synthetic_embeds.std(0).mean() > 0      # noise made them differ from each other


def test_real_fit_head_retrains_within_budget(kit_dir):
    from zsp_ros.pading.head_fit import fit_head

    reg = make_registry(kit_dir, fit=fit_head, fit_kwargs={"steps": 100})
    added, = reg.add(["purple star"])
    snap = reg.snapshot
    syn = reg._state.synthetic_embeds
    assert ((syn @ snap.weight.T + snap.bias).argmax(1) == snap.categories.index_of(added.id)).float().mean() > 0.9
    kit = reg.kit
    real = kit.bank_embeds.float()
    lut = {c.id: k for k, c in enumerate(snap.categories)} | {0: len(snap.categories)}
    labels = torch.tensor([lut[int(i)] for i in kit.bank_category_ids])
    accuracy = ((real @ snap.weight.T + snap.bias).argmax(1) == labels).float().mean()
    assert accuracy > 0.8                                      # seen categories still recognised


def test_concurrent_adds_serialise(kit_dir):
    active, peak = [0], [0]
    guard = threading.Lock()

    def slow_fit(**kw):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with guard:
            active[0] -= 1
        return prototype_fit(**kw)

    reg = make_registry(kit_dir, fit=slow_fit)
    errors, results = [], []

    def worker(i):
        try:
            results.append(reg.add([f"thing {i}"])[0])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and peak[0] == 1
    assert sorted(c.id for c in results) == list(range(8, 16))
    assert reg.version == 9 and len(reg.list()) == 12
    assert reg.snapshot.weight.shape == (13, 16)


def test_same_name_added_concurrently_succeeds_once(kit_dir):
    reg = make_registry(kit_dir)
    outcomes = []

    def worker():
        try:
            outcomes.append(reg.add(["purple star"])[0].id)
        except CategoryError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes.count(8) == 1 and sum("already a category" in str(o) for o in outcomes) == 3


def test_inference_keeps_running_during_an_add(kit_dir):
    """The fit blocks until the inference thread has produced 3 new results: inference never waits."""
    from zsp_ros.runtime.backends.torch_backend import TorchBackend
    from zsp_ros.runtime.segmenter import Segmenter

    frames_during_fit = threading.Event()
    produced = []

    def blocking_fit(**kw):
        start = len(produced)
        deadline = time.monotonic() + 20
        while len(produced) < start + 3:
            assert time.monotonic() < deadline, "inference made no progress while the head was retrained"
            time.sleep(0.005)
        frames_during_fit.set()
        return prototype_fit(**kw)

    reg = make_registry(kit_dir, fit=blocking_fit)
    net = QuadrantNetwork()
    net.embeds.copy_(reg.kit.bank_embeds[[0, 30, 60, 90]].float())
    seg = Segmenter(backend=TorchBackend(network=net), registry=reg, short_side=64, max_long_side=64)
    stop = threading.Event()
    image = np.zeros((64, 64, 3), dtype=np.uint8)

    def infer():
        while not stop.is_set():
            produced.append(seg.segment(image).category_set_version)

    thread = threading.Thread(target=infer)
    thread.start()
    try:
        reg.add(["purple star"])
        assert frames_during_fit.is_set()
        t_end = time.monotonic() + 20
        while (not produced or produced[-1] != 2) and time.monotonic() < t_end:
            time.sleep(0.005)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert produced[0] == 1 and produced[-1] == 2
    assert produced == sorted(produced)                        # versions never go back


def test_text_encoder_refusal_becomes_a_category_error(kit_dir):
    from runtime_fakes import FakeTextEncoder

    class Picky(FakeTextEncoder):
        def encode(self, names):
            if any("zzz" in n for n in names):
                raise ValueError("'zzz': the word 'zzz' is in no attribute vocabulary")
            return super().encode(names)

    reg = make_registry(kit_dir, encoder=Picky())
    with pytest.raises(CategoryError, match="cannot embed these names: 'zzz': the word 'zzz'"):
        reg.add(["zzz"])
    assert reg.version == 1


def test_removed_seen_category_added_again_gets_a_new_id_and_its_real_data(reg):
    kit = reg.kit
    blue = kit.bank_embeds[kit.bank_category_ids == 4].float()
    reg.remove(["blue star"])
    again, = reg.add(["blue star"])
    assert again.id == 8 and again.origin == "added"
    snap = reg.snapshot
    pred = (blue @ snap.weight.T + snap.bias).argmax(1)
    assert (pred == snap.categories.index_of(8)).float().mean() > 0.9


@pytest.mark.parametrize("per_category", [1, 2, 16])
def test_warm_up_changes_nothing_at_any_synthetic_count(kit_dir, per_category):
    reg = make_registry(kit_dir, synthetic_per_category=per_category)
    before = reg.snapshot
    assert reg.warm_up() >= 0.0
    assert reg.snapshot is before and reg.list().version == before.version
    reg.add(["purple star"])                      # and the registry still works afterwards
    assert "purple star" in {c.name for c in reg.list()}


# ------------------------------------------------------------------ bounded cost, low-priority writer, failures
def test_added_categories_are_capped(kit_dir):
    reg = make_registry(kit_dir, max_added_categories=3)
    reg.add(["alpha", "beta"])
    before = reg.snapshot
    with pytest.raises(CategoryError, match="2 categories are added already and 2 more would exceed the cap of 3 "
                                            r"added categories \(max_added_categories\)"):
        reg.add(["gamma", "delta"])
    assert reg.snapshot is before and reg.version == 2
    reg.add(["gamma"])                                            # exactly at the cap
    reg.remove(["alpha"])                                         # removing one frees a place
    assert reg.add(["delta"])[0].id == 11
    reg.remove([1])                                               # seen categories do not count
    with pytest.raises(CategoryError, match="cap of 3"):
        reg.add(["epsilon"])


def test_cap_and_row_budget_come_from_the_kit_runtime(tmp_path):
    from runtime_fakes import FakeTextEncoder

    from zsp_ros.kit.model_kit import load_kit
    from zsp_ros.runtime.registry import build_registry

    kit = load_kit(make_kit(tmp_path / "kit", runtime={"synthetic_per_category": 4, "max_added_categories": 2,
                                                       "max_synthetic_rows": 6}))
    reg = build_registry(kit, text_encoder=FakeTextEncoder(), warm_up=False, writer_nice=None)
    assert (reg.max_added_categories, reg.max_synthetic_rows, reg.synthetic_per_category) == (2, 6, 4)
    assert build_registry(kit, text_encoder=FakeTextEncoder(), warm_up=False, writer_nice=None,
                          max_added_categories=7).max_added_categories == 7


def test_bounded_synthetic_keeps_the_same_rows_per_category():
    from zsp_ros.pading.runtime_refit import bounded_synthetic

    ids = torch.tensor([5, 5, 5, 9, 9, 5, 7])
    embeds = torch.arange(7.0)[:, None]
    kept, kept_ids, scale = bounded_synthetic(embeds, ids, 3)                 # 3 categories: 1 row each
    assert kept.flatten().tolist() == [0.0, 3.0, 6.0] and kept_ids.tolist() == [5, 9, 7]
    assert scale == {5: 4.0, 9: 2.0}
    kept, kept_ids, scale = bounded_synthetic(embeds, ids, 6)                 # 2 rows each
    assert kept_ids.tolist() == [5, 5, 9, 9, 7] and scale == {5: 2.0}
    assert bounded_synthetic(embeds, ids, None)[1] is ids and bounded_synthetic(embeds, ids, 7)[2] == {}


def test_refit_rows_stay_within_the_budget_while_the_state_keeps_all(kit_dir):
    seen_rows = []

    def recording_fit(**kw):
        seen_rows.append((kw["embeds"].shape[0], kw["class_weights"].clone()))
        return prototype_fit(**kw)

    reg = make_registry(kit_dir, fit=recording_fit, synthetic_per_category=16, max_synthetic_rows=64)
    bank = reg.kit.bank_embeds.shape[0]
    reg.add([f"thing {i}" for i in range(3)])                     # 48 synthetic rows: under the budget
    assert seen_rows[-1][0] == bank + 48 and seen_rows[-1][1][-4:-1].tolist() == [5.0] * 3
    reg.add([f"more {i}" for i in range(7)])                      # 160 rows -> 6 per category, 60 in all
    rows, weights = seen_rows[-1]
    assert rows == bank + 60
    assert torch.allclose(weights[4:-1], torch.full((10,), 5.0 * 16 / 6))     # each keeps its loss mass
    assert reg._state.synthetic_embeds.shape[0] == 160                       # persisted state keeps every row


def test_writes_run_in_the_low_priority_writer_thread(kit_dir):
    import os

    main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    where = []

    def recording_fit(**kw):
        where.append((threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                      torch.get_num_threads()))
        return prototype_fit(**kw)

    reg = make_registry(kit_dir, fit=recording_fit)
    reg.warm_up()
    reg.add(["purple star"])
    reg.remove(["purple star"])
    expected = min(19, main_nice + 10)
    assert where[1:] == [("zsp-category-writer", expected, 1)] * 2 and where[0][0] == "zsp-category-writer"
    assert reg.writer_niceness == expected
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_nice   # the caller is untouched
    thread = reg._writer._thread
    reg.close()                                                   # stops the thread; a later write restarts it
    assert not thread.is_alive()
    reg.add(["orange moon"])
    assert where[-1][:2] == ("zsp-category-writer", expected)
    thread = reg._writer._thread
    del reg                                                       # dropped without close(): its thread ends too
    import gc
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()

    inline = make_registry(kit_dir, fit=recording_fit, writer_nice=None)
    inline.add(["teal cone"])
    assert where[-1][0] == threading.current_thread().name


def test_failed_writes_change_nothing_and_keep_the_version(kit_dir):
    calls = []

    def flaky_fit(**kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the fit blew up")
        return prototype_fit(**kw)

    reg = make_registry(kit_dir, fit=flaky_fit)
    reg.add(["alpha"])
    before, next_id = reg.snapshot, reg._state.next_id
    with pytest.raises(RuntimeError, match="the fit blew up"):    # raised in the caller, from the writer thread
        reg.add(["beta"])
    assert reg.snapshot is before and reg.version == 2 and reg._state.next_id == next_id
    with pytest.raises(CategoryError):
        reg.remove(["nothing like this"])
    assert reg.version == 2
    assert reg.add(["beta"])[0].id == next_id                     # the failed add used no id


def test_unknown_fit_kwargs_are_refused(kit_dir):
    from zsp_ros.pading.head_fit import fit_head

    with pytest.raises(ValueError, match=r"fit_kwargs \['stpes'\] are not arguments of fit_head"):
        make_registry(kit_dir, fit=fit_head, fit_kwargs={"stpes": 3})
