# Over 400 lines: one lock guards the snapshot swap, the writer thread, persistence and the refit they share.
"""The category registry: the current category set, its classifier head and its version.

Readers (inference) take ``registry.snapshot`` — one attribute read of an immutable
`HeadSnapshot` — and never wait. Writers (`add`, `remove`) are serialised by a lock; each one
builds a complete new snapshot off to the side, persists it, then swaps the reference.

Adding names (PADing at runtime): validate → encode the names with the kit's text encoder →
generate ``synthetic_per_category`` fake query embeddings per name with the primitive generator →
fit the head on the kit's bank of real seen embeddings plus the synthetic embeddings of every
runtime-added category → persist → swap → report how each name was understood (`last_add_report`,
zsp_ros.runtime.name_report).

Which rows an add fits (``refit_mode``): "new_rows" (default) fits ONLY the new names' rows with every
other row fixed, on the same weighted cross-entropy over all classes (`zsp_ros.pading.head_fit.fit_rows`).
PADing retrains the whole last layer offline; doing so per add makes its cost grow with the vocabulary
(1.4 s for one name, 142 s after 256) and lets every add move the seen rows. Fitting only the new rows
keeps the seen head exactly as trained, costs the same at 500 added names as at 1, and on the seed-31
dev world it gave unseen PQ 19.1 vs 15.0 (full refit, seed 0) for seen PQ 41.5 vs 42.3. "full" is
PADing's retraining of every row (``fit_head``). After its own fit an added category keeps
``stored_synthetic_per_category`` of its rows (they are later fits' negatives and stand for all its rows).

Removing categories RETRAINS the head (it does not merely mask a row; except for a kit whose bank is
generated, which has no real no-object rows to retrain with, see `_remove`): the removed category's
row disappears; real bank embeddings of a removed seen category are relabelled no-object (as the
zero-shot protocol treats unannotated objects), synthetic ones of a removed added category are
dropped. So a removed category's objects fall to void instead of being given a neighbour's label.
A removed seen category added again by name gets a new id (ids are never reused) and its real
bank embeddings train it again, alongside its synthetic ones.

Ids are stable: a new category gets max(every id ever used) + 1; removed ids are never reused.

Bounded cost: at most ``max_added_categories`` (default 256) added categories at a time (an add past it
is refused with a `CategoryError` naming the cap), and at most ``max_synthetic_rows`` (default 16384)
synthetic rows enter a refit (the same number per added category, their class weights scaled to keep
each one's loss mass: zsp_ros.pading.runtime_refit.bounded_synthetic), so an add after 200 others costs
about what the fit of the larger head needs, not 500 rows x 200 categories.

Writes yield the CPU: every add / remove / warm-up runs in one writer thread, created on first use,
whose OS scheduling priority is lowered (Linux: ``os.setpriority`` on its thread id, nice + ``writer_nice``
= 10; no privileges needed to lower one's own priority), with ``train_threads`` torch threads; the
caller waits for it. Inference threads, at normal priority, keep most of a contended core meanwhile.

A failed request (validation, encoder, fit, save) changes nothing: version, ids and snapshot stay as
they were; `version` is always readable. A store opened read-only (`StateStore.open(...,
allow_read_only=True)`) makes every add / remove a `CategoryError` naming the directory.
"""
from __future__ import annotations

import builtins
import contextlib
import inspect
import logging
import os
import queue
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

import numpy as np
import torch

from zsp_ros.kit.category_set import Category, CategorySet
from zsp_ros.kit.model_kit import BANK_FILE, GENERATOR_FILE, KitError, ModelKit
from zsp_ros.model.primitive_generator import PrimitiveGenerator
from zsp_ros.pading.head_fit import fit_head as pading_fit_head
from zsp_ros.pading.head_fit import fit_rows
from zsp_ros.pading.runtime_refit import (
    DEFAULT_CLASS_WEIGHTS,
    DEFAULT_MAX_SYNTHETIC_ROWS,
    bounded_synthetic,
    first_rows_per_category,
    head_tensors,
    synthesize_for_ids,
    training_rows,
    warm_start,
)
from zsp_ros.runtime.category_requests import (
    CategoryError,
    validate_added_count,
    validate_names,
    validate_remove,
)
from zsp_ros.runtime.name_report import NameReport, far_threshold, name_reports
from zsp_ros.runtime.state_store import MemoryStateStore, RegistryState, StateStore
from zsp_ros.semantics.build import build_text_encoder, with_phrasing
from zsp_ros.semantics.interpretation import Interpretation

log = logging.getLogger(__name__)
T = TypeVar("T")
_Job = tuple[Callable[[], Any], threading.Event, dict[str, Any]]      # (work, done signal, its value or error)
DEFAULT_MAX_ADDED_CATEGORIES = 1024
REFIT_MODES = ("new_rows", "full")
DEFAULT_STORED_SYNTHETIC_PER_CATEGORY = 64
# L-BFGS iterations of a new-rows fit. On the seed-31 dev world (11 unseen names, 3 registry seeds) 30 gave the
# unseen/seen PQ of 100 (19.1/41.5 vs 18.9/41.6) at half the cost; 15 stopped early enough to act as a prior
# toward the generator's class mean (unseen 24.7, but seen -1.3).
DEFAULT_NEW_ROW_STEPS = 30
# Class weight of the new names' synthetic rows in a new-rows fit (PADing's 5 stays for full refits). Seed-31 dev
# world, 11 unseen names, 3 seeds, unseen/seen PQ (seen-only head 44.8): full refit 15.0/42.3; new rows with 5:
# 19.1/41.5 (seen drop 3.3), 3: 17.2/42.0 (drop 2.8), 2: 15.3/42.5. 3 keeps the seen drop under 3 points.
DEFAULT_NEW_ROW_ADDED_WEIGHT = 3.0
# Stored rows of earlier added names that enter a new-rows fit as negatives (the same number per name, each
# standing for all its rows). Bounded so that one add costs the same at 500 added names as at 10.
DEFAULT_MAX_NEGATIVE_ROWS = 2048
WRITER_NICE = 10          # how much lower the writer thread's scheduling priority is (Linux nice units)


class TextEncoderLike(Protocol):
    identifier: str
    dim: int

    def encode(self, names: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class HeadSnapshot:
    """An immutable (category set, head) pair. Never mutated after creation.

    weight: float32 [K+1,E], bias: float32 [K+1]; row k classifies ``categories.categories[k]``,
    row K is no-object.
    """
    categories: CategorySet
    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def version(self) -> int:
        return self.categories.version




class _Writer:
    """One daemon thread that runs the registry's writes one at a time at a lower OS priority.

    Created on the first `run`; it raises its own nice value by ``nice`` (Linux: ``os.setpriority`` on the
    thread id; elsewhere it runs at normal priority) and records the value it got in ``niceness``.
    `run` queues a job and waits for it, returning its value or raising its exception in the caller.
    """

    def __init__(self, *, nice: int, name: str) -> None:
        self.nice = int(nice)
        self.name = name
        self.niceness: int | None = None
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()   # the current thread's own queue
        self._start_lock = threading.Lock()

    def run(self, job: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:          # a write inside a write: run it here
            return job()
        done, box = threading.Event(), dict[str, Any]()
        with self._start_lock:                                  # start (if needed) and enqueue as one step
            if self._thread is None or not self._thread.is_alive():
                started, self._jobs = threading.Event(), queue.SimpleQueue()
                self._thread = threading.Thread(target=self._loop, args=(self._jobs, started), name=self.name,
                                                daemon=True)
                self._thread.start()
                started.wait()
            self._jobs.put((job, done, box))
        done.wait()
        if "error" in box:
            raise box["error"]
        value: T = box["value"]
        return value

    def close(self, *, wait: bool = True) -> None:
        """Stop the thread after the jobs queued so far (idempotent); a later `run` starts a new one."""
        with self._start_lock:
            thread, self._thread = self._thread, None
            if thread is not None and thread.is_alive():
                self._jobs.put(None)
        if thread is not None and wait and thread is not threading.current_thread():
            thread.join(timeout=60)

    def _loop(self, jobs: queue.SimpleQueue[_Job | None], started: threading.Event) -> None:
        self.niceness = _lower_priority(self.nice)
        started.set()
        while self._run_one(jobs.get()):
            pass

    @staticmethod
    def _run_one(item: _Job | None) -> bool:
        """Run one queued job (False: the stop signal). Keeps no reference to it afterwards, so an
        unreferenced registry can be collected (its finalizer then stops this thread)."""
        if item is None:
            return False
        job, done, box = item
        try:
            box["value"] = job()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, which raises it
            box["error"] = exc
        finally:
            done.set()
        return True


def _lower_priority(nice: int) -> int | None:
    """Raise this thread's nice value by ``nice`` (Linux: PRIO_PROCESS of a thread id is that thread);
    return the nice value it now has (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    if nice > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except OSError as exc:                                 # a sandbox may forbid it: run at normal priority
            log.warning("could not lower the category writer thread's priority (%s)", exc)
    return os.getpriority(os.PRIO_PROCESS, tid)


class CategoryRegistry:
    """Category set + head + version, changeable while inference runs.

    Args:
        kit: the loaded model kit (bank of real seen embeddings, default head and categories).
        text_encoder: encodes new names; must be the kit's (identifier and dim are checked).
        generator: the kit's PrimitiveGenerator (``forward(semantic [N,D], noise) -> [N,E]``, ``sample_noise``).
        fit_head: ``fit_head(embeds=[M,E], labels=[M], class_weights=[K+1], **fit_kwargs)`` returning
            a head with ``weight`` [K+1,E] and ``bias`` [K+1] (default: zsp_ros.pading.head_fit.fit_head).
        store: where state persists: a `StateStore` (a directory; read-only ones refuse changes), a
            `MemoryStateStore` (this process only), or None (this registry only). `close` closes it.
        synthetic_per_category: fake embeddings generated per added name.
        class_weights: {"seen", "added", "no_object"} loss weights of the retraining.
        fit_kwargs: extra keyword arguments for ``fit_head`` (steps, lr, ...).
        warm_start: pass ``init=`` to ``fit_head``: the current head's rows for kept categories and,
            for a new category, the scaled mean of its synthetic embeddings (a prototype).
        verify_text_encoder: encode up to 4 kit category names and compare them with the kit's
            stored text embeddings (cosine >= 0.99), catching same-name encoders with other weights.
        seed: synthetic embeddings of category id c are generated with seed ``seed + c``.
        train_threads: torch threads used by the writer while it generates and retrains (restored
            afterwards). 1 by default: the problem is small, a single thread is fastest on a busy 2-core
            CPU (OpenMP threads spin when oversubscribed), and it leaves the other core to inference.
        max_added_categories: at most this many categories of origin "added" at a time; an add past it
            is refused (`CategoryError` naming the cap).
        max_synthetic_rows: at most this many synthetic rows per refit (None: all of them; see module
            docstring).
        writer_nice: run every write in one writer thread whose nice value is raised by this much
            (lower CPU priority; module docstring); None runs writes in the calling thread.
        refit_mode: how an add retrains the head. "new_rows" (default): only the new categories' rows are
            fitted, every other row fixed (`zsp_ros.pading.head_fit.fit_rows`; the objective is the same
            weighted cross-entropy over all classes). "full": every row is refitted with ``fit_head``
            (PADing's stage 3). Removals always refit every row.
        stored_synthetic_per_category: synthetic rows kept per added category after its fit (they are the
            negatives of later fits and the rows of full refits, standing for all
            ``synthetic_per_category`` rows); None keeps all.
        new_row_steps: L-BFGS iterations of a new-rows fit (``fit_kwargs`` steer full refits).
        new_row_added_weight: class weight of added categories in new-rows fits (None: ``class_weights``'s).
        max_negative_rows: at most this many stored rows of earlier added categories in a new-rows fit.
    """

    def __init__(self, *, kit: ModelKit, text_encoder: TextEncoderLike, generator: torch.nn.Module,
                 fit_head: Callable[..., Any] | None = None, store: StateStore | MemoryStateStore | None = None,
                 synthetic_per_category: int = 64, class_weights: dict[str, float] | None = None,
                 fit_kwargs: dict[str, Any] | None = None, warm_start: bool = True,
                 verify_text_encoder: bool = True, seed: int = 0, train_threads: int | None = 1,
                 max_added_categories: int = DEFAULT_MAX_ADDED_CATEGORIES,
                 max_synthetic_rows: int | None = DEFAULT_MAX_SYNTHETIC_ROWS, writer_nice: int | None = WRITER_NICE,
                 refit_mode: str = "new_rows",
                 stored_synthetic_per_category: int | None = DEFAULT_STORED_SYNTHETIC_PER_CATEGORY,
                 new_row_steps: int = DEFAULT_NEW_ROW_STEPS,
                 new_row_added_weight: float | None = DEFAULT_NEW_ROW_ADDED_WEIGHT,
                 max_negative_rows: int = DEFAULT_MAX_NEGATIVE_ROWS):
        kit.check_text_encoder(text_encoder.identifier, text_encoder.dim)
        if verify_text_encoder:
            _verify_text_encoder(kit, text_encoder)
        if synthetic_per_category < 1:
            raise ValueError(f"synthetic_per_category must be >= 1, got {synthetic_per_category}")
        if max_added_categories < 1:
            raise ValueError(f"max_added_categories must be >= 1, got {max_added_categories}")
        if max_synthetic_rows is not None and max_synthetic_rows < 1:
            raise ValueError(f"max_synthetic_rows must be >= 1 or None, got {max_synthetic_rows}")
        if refit_mode not in REFIT_MODES:
            raise ValueError(f"refit_mode must be one of {REFIT_MODES}, got {refit_mode!r}")
        if stored_synthetic_per_category is not None and stored_synthetic_per_category < 1:
            raise ValueError(f"stored_synthetic_per_category must be >= 1 or None, got {stored_synthetic_per_category}")
        self.kit = kit
        self.text_encoder = text_encoder
        self.generator = generator
        self.fit_head = fit_head or pading_fit_head
        self.store = store
        self.synthetic_per_category = int(synthetic_per_category)
        self.class_weights = {**DEFAULT_CLASS_WEIGHTS, **(class_weights or {})}
        self.fit_kwargs = dict(fit_kwargs or {})
        _check_fit_kwargs(self.fit_head, self.fit_kwargs)
        self.warm_start = bool(warm_start)
        self.seed = int(seed)
        self.train_threads = train_threads
        self.max_added_categories = int(max_added_categories)
        self.max_synthetic_rows = max_synthetic_rows
        self.refit_mode = refit_mode
        self.stored_synthetic_per_category = stored_synthetic_per_category
        self.new_row_steps = int(new_row_steps)
        self.new_row_added_weight = new_row_added_weight
        self.max_negative_rows = int(max_negative_rows)
        self._bank_lse: tuple[torch.Tensor, torch.Tensor] | None = None   # (head weight it is for, lse [B])
        self.last_timings_ms: dict[str, float] = {}
        self.last_add_report: builtins.list[NameReport] = []      # how the names of the last add were understood
        self._far_below = far_threshold(kit.text_embeds) if len(kit.categories) > 1 else -1.0
        self.load_problem: str | None = None       # why a stored state was set aside, if it was
        self._write_lock = threading.Lock()
        self._writer = None if writer_nice is None else _Writer(nice=writer_nice, name="zsp-category-writer")
        if self._writer is not None:        # a registry dropped without close() still stops its thread
            weakref.finalize(self, self._writer.close, wait=False)
        self._bank_embeds = kit.bank_embeds.float()
        self._bank_ids = kit.bank_category_ids
        self._state = self._initial_state()
        self._snapshot = HeadSnapshot(categories=self._state.categories, weight=self._state.head_weight,
                                      bias=self._state.head_bias)

    # ------------------------------------------------------------------ readers
    @property
    def snapshot(self) -> HeadSnapshot:
        """The current (categories, head); take it once per frame and use only that object."""
        return self._snapshot

    @property
    def version(self) -> int:
        """The current category-set version (always readable, also after a failed request)."""
        return self._snapshot.version

    @property
    def read_only_reason(self) -> str | None:
        """Why categories cannot be changed (the store is read-only), or None."""
        if self.store is not None and not self.store.writable:
            return self.store.read_only_reason or "the state store was opened read-only"
        return None

    @property
    def writer_niceness(self) -> int | None:
        """The nice value the writer thread runs at (None before its first write, or without a writer)."""
        return None if self._writer is None else self._writer.niceness

    def list(self) -> CategorySet:
        """The current category set (immutable)."""
        return self._snapshot.categories

    # ------------------------------------------------------------------ writers
    def add(self, names: Sequence[str], isthing: bool | Sequence[bool] | None = None) -> builtins.list[Category]:
        """Add categories by name; returns them with their new ids. Raises CategoryError on a bad request.

        ``isthing``: None or empty = all things; a bool for all; or one bool per name.
        Runs in the writer thread (lower priority); the caller waits.
        """
        return self._write(lambda: self._add(names, isthing))

    def _add(self, names: Sequence[str], isthing: bool | Sequence[bool] | None) -> builtins.list[Category]:
        with self._write_lock, _torch_threads(self.train_threads):
            t0 = time.perf_counter()
            self._check_writable()
            state = self._state
            names, flags = validate_names(names, isthing, state.categories)
            validate_added_count(len(names), state.categories, self.max_added_categories)
            interpretations = self._interpretations(names)
            readings = [i.text if i is not None else n for n, i in zip(names, interpretations)]
            self._refuse_names(names, interpretations, readings, state.categories)
            try:
                text = torch.from_numpy(np.asarray(self.text_encoder.encode(names), dtype=np.float32))
            except (ValueError, TypeError, KeyError) as exc:   # e.g. a word outside a fixed vocabulary
                raise CategoryError(f"the text encoder {self.text_encoder.identifier!r} cannot embed "
                                    f"these names: {exc}") from exc
            t1 = time.perf_counter()
            ids = list(range(state.next_id, state.next_id + len(names)))
            synthetic = self._generate(text, ids)
            t2 = time.perf_counter()
            new = tuple(Category(id=i, name=n, isthing=f, origin="added") for i, n, f in zip(ids, names, flags))
            categories = CategorySet(state.categories.categories + new, version=state.categories.version + 1,
                                     text_encoder=state.categories.text_encoder)
            syn_ids = torch.tensor(ids, dtype=torch.int64).repeat_interleave(self.synthetic_per_category)
            kept_embeds, kept_ids = first_rows_per_category(synthetic, syn_ids, self.stored_synthetic_per_category)
            draft = RegistryState(
                categories=categories, next_id=ids[-1] + 1, removed_ids=state.removed_ids,
                head_weight=state.head_weight, head_bias=state.head_bias,
                synthetic_embeds=torch.cat([state.synthetic_embeds, kept_embeds]),
                synthetic_ids=torch.cat([state.synthetic_ids, kept_ids]),
                added_text_embeds=torch.cat([state.added_text_embeds, text]),
                added_ids=torch.cat([state.added_ids, torch.tensor(ids, dtype=torch.int64)]))
            self._commit(draft, t0=t0, extra={"encode": (t1 - t0) * 1e3, "generate": (t2 - t1) * 1e3},
                         new_synthetic=(synthetic, syn_ids), free_ids=ids if self.refit_mode == "new_rows" else None)
            because = [i.explanation if i is not None else "" for i in interpretations]
            caution = getattr(self.text_encoder, "caution", None)
            cautions = [(caution(i) or "") if callable(caution) and i is not None else "" for i in interpretations]
            self.last_add_report = self._report(state, names, readings, ids, text, synthetic, syn_ids, because,
                                                cautions)
            return list(new)

    def _interpretations(self, names: Sequence[str]) -> builtins.list[Interpretation | None]:
        """What a phrasing encoder (zsp_ros.semantics.phrasing) makes of each name; None per name for
        any other encoder (it embeds the name as given)."""
        interpret = getattr(self.text_encoder, "interpret", None)
        return list(interpret(list(names))) if callable(interpret) else [None] * len(names)

    def _refuse_names(self, names: Sequence[str], interpretations: Sequence[Interpretation | None],
                      readings: Sequence[str], categories: CategorySet) -> None:
        """CategoryError (with ``refused`` per name) when a new name is read as a known category's name or
        as another new name ("crimson circle" -> "red circle": the same category twice), or when the
        phrasing encoder refuses it (a name with no word the kit knows: `PhrasingEncoder.refusal`)."""
        refused: dict[str, str] = {}
        seen_here: dict[str, str] = {}
        refusal = getattr(self.text_encoder, "refusal", None)
        for name, interpretation, reading in zip(names, interpretations, readings):
            why = refusal(interpretation) if callable(refusal) and interpretation is not None else None
            if why is not None:
                refused[name] = why
                continue
            if reading.casefold() == name.casefold():
                seen_here.setdefault(reading.casefold(), name)
                continue
            known = categories.get(reading)
            if known is not None:
                refused[name] = f"{name!r} is read as {reading!r}, already a category (id {known.id})"
            elif reading.casefold() in seen_here:
                refused[name] = (f"{name!r} is read as {reading!r}, like {seen_here[reading.casefold()]!r} "
                                 f"in the same request")
            else:
                seen_here[reading.casefold()] = name
        if refused:
            raise CategoryError("; ".join(refused.values()), refused=refused)

    def _report(self, before: RegistryState, names: Sequence[str], readings: Sequence[str], ids: Sequence[int],
                text: torch.Tensor, synthetic: torch.Tensor, synthetic_ids: torch.Tensor,
                because: Sequence[str], cautions: Sequence[str]) -> builtins.list[NameReport]:
        """`NameReport` per added name against what was known before the add (zsp_ros.runtime.name_report)."""
        kit_row = {c.id: k for k, c in enumerate(self.kit.categories)}
        added_row = {int(i): k for k, i in enumerate(before.added_ids.tolist())}
        known_names, known_text = [], []
        for c in before.categories:
            if c.id in added_row:
                known_text.append(before.added_text_embeds[added_row[c.id]])
            elif c.id in kit_row:
                known_text.append(self.kit.text_embeds[kit_row[c.id]].float())
            else:
                continue
            known_names.append(c.name)
        snap = self._snapshot
        return name_reports(
            names=names, ids=ids, text=text, known_names=known_names,
            known_text=torch.stack(known_text) if known_text else torch.zeros((0, text.shape[1])),
            synthetic=synthetic, synthetic_ids=synthetic_ids, category_names=snap.categories.names,
            category_ids=snap.categories.ids, weight=snap.weight, bias=snap.bias, bank_embeds=self._bank_embeds,
            bank_ids=self._bank_ids, bank_lse=self._bank_logsumexp(snap.weight, snap.bias), far_below=self._far_below,
            read_as=readings, because=because, cautions=cautions)

    def remove(self, names_or_ids: Sequence[str | int]) -> builtins.list[int]:
        """Remove categories (seen or added) by name or id; returns the removed ids. Retrains the head
        (in the writer thread; the caller waits)."""
        return self._write(lambda: self._remove(names_or_ids))

    def _remove(self, names_or_ids: Sequence[str | int]) -> builtins.list[int]:
        with self._write_lock, _torch_threads(self.train_threads):
            t0 = time.perf_counter()
            self._check_writable()
            state = self._state
            gone = validate_remove(names_or_ids, state.categories)
            keep = tuple(c for c in state.categories if c.id not in gone)
            categories = CategorySet(keep, version=state.categories.version + 1,
                                     text_encoder=state.categories.text_encoder)
            syn_keep = ~torch.isin(state.synthetic_ids, torch.tensor(sorted(gone), dtype=torch.int64))
            txt_keep = ~torch.isin(state.added_ids, torch.tensor(sorted(gone), dtype=torch.int64))
            seen_gone = [c.id for c in state.categories if c.id in gone and c.origin == "seen"]
            draft = RegistryState(
                categories=categories, next_id=state.next_id,
                removed_ids=tuple(sorted(set(state.removed_ids) | set(seen_gone))),
                head_weight=state.head_weight, head_bias=state.head_bias,
                synthetic_embeds=state.synthetic_embeds[syn_keep], synthetic_ids=state.synthetic_ids[syn_keep],
                added_text_embeds=state.added_text_embeds[txt_keep], added_ids=state.added_ids[txt_keep])
            # A kit whose bank is generated (a release kit) has no real no-object rows to refit with:
            # its removals drop the rows and keep every other row as it is.
            self._commit(draft, t0=t0, extra={}, refit=self.kit.bank_source != "generated")
            return [c.id for c in state.categories if c.id in gone]

    def warm_up(self) -> float:
        """Run generate + fit once on a tiny problem, changing nothing, so the first real `add` does not
        pay one-off costs (torch.optim's first use imports torch._dynamo: seconds). Returns seconds taken.
        Runs in the writer thread, which it starts."""
        return self._write(self._warm_up)

    def _warm_up(self) -> float:
        t0 = time.perf_counter()
        with self._write_lock, _torch_threads(self.train_threads):
            state = self._state
            text = state.added_text_embeds[:1] if len(state.added_ids) else self.kit.text_embeds[:1]
            fake = self._generate(text, [0]).repeat(2, 1)[:2]     # two rows even at synthetic_per_category=1
            k = len(state.categories)
            labels = torch.tensor([0, k], dtype=torch.int64)
            kwargs = {k_: v for k_, v in self.fit_kwargs.items() if k_ not in ("steps", "init")}
            self.fit_head(embeds=fake, labels=labels, class_weights=torch.ones(k + 1), steps=1, **kwargs)
            prepare = getattr(self.text_encoder, "warm_up", None)
            if callable(prepare):                  # e.g. the phrasing encoder's lexicon index (~0.7 s)
                prepare()
        return time.perf_counter() - t0

    def close(self) -> None:
        """Stop the writer thread and close the store (a directory's write lock is released; a
        `MemoryStateStore` keeps its state)."""
        if self._writer is not None:
            self._writer.close()
        if self.store is not None:
            self.store.close()

    # ------------------------------------------------------------------ internals
    def _write(self, job: Callable[[], T]) -> T:
        return job() if self._writer is None else self._writer.run(job)

    def _check_writable(self) -> None:
        reason = self.read_only_reason
        if reason is not None:
            raise CategoryError(f"{reason}; categories cannot be changed")

    def _generate(self, text: torch.Tensor, ids: builtins.list[int]) -> torch.Tensor:
        """float32 [len(ids)*N, E]: N fake embeddings per name (zsp_ros.pading.runtime_refit)."""
        return synthesize_for_ids(self.generator, text, ids, per_category=self.synthetic_per_category, seed=self.seed,
                                  embed_dim=self.kit.embed_dim)

    def _fit(self, state: RegistryState, new_synthetic: tuple[torch.Tensor, torch.Tensor] | None = None,
             free_ids: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Retrain the head for ``state.categories`` on real bank + synthetic embeddings.

        ``new_synthetic``: (embeds [S,E], ids [S]) every generated row of the names being added (``state``
        keeps only some); they train next to the live state's stored rows of earlier names. Without it
        (a removal) the draft's stored rows are used. Every added category stands for
        ``synthetic_per_category`` rows whatever it has here. ``free_ids``: fit only these categories'
        rows (`fit_rows`), the rest of the current head fixed; None refits every row.
        """
        k = len(state.categories)
        if free_ids is not None:
            if new_synthetic is None:
                raise ValueError("a new-rows fit needs the new names' generated rows")
            return self._fit_new_rows(state, new_synthetic, free_ids)
        if new_synthetic is None:
            syn_embeds, syn_ids = state.synthetic_embeds, state.synthetic_ids
        else:
            syn_embeds = torch.cat([self._state.synthetic_embeds, new_synthetic[0]])
            syn_ids = torch.cat([self._state.synthetic_ids, new_synthetic[1]])
        embeds, labels, weights = training_rows(
            categories=state.categories, kit_categories=self.kit.categories, bank_embeds=self._bank_embeds,
            bank_ids=self._bank_ids, synthetic_embeds=syn_embeds, synthetic_ids=syn_ids,
            next_id=state.next_id, class_weights=self.class_weights, max_synthetic_rows=self.max_synthetic_rows,
            mass_rows=self.synthetic_per_category)
        kwargs = dict(self.fit_kwargs)
        if self.warm_start and "init" not in kwargs:
            kwargs["init"] = warm_start(old_categories=self._state.categories, old_weight=self._state.head_weight,
                                        old_bias=self._state.head_bias, categories=state.categories,
                                        synthetic_embeds=syn_embeds, synthetic_ids=syn_ids)
        head = self.fit_head(embeds=embeds, labels=labels, class_weights=weights, **kwargs)
        weight, bias = head_tensors(head)
        if weight.shape != (k + 1, self.kit.embed_dim) or bias.shape != (k + 1,):
            raise RuntimeError(f"fit_head returned a head of shape {list(weight.shape)}/{list(bias.shape)}, "
                               f"expected [{k + 1},{self.kit.embed_dim}]/[{k + 1}]")
        return weight, bias

    def _fit_new_rows(self, state: RegistryState, new_synthetic: tuple[torch.Tensor, torch.Tensor],
                      free_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fit only the rows of ``free_ids`` (the names being added), every row of the live head fixed.

        Training rows: the whole bank, at most ``max_negative_rows`` stored rows of earlier added names,
        and every generated row of the new names. The logsumexp of the fixed rows' logits is cached for
        the bank (updated with the new rows after each add), so an add costs about the same however many
        categories exist: (bank + negatives + new rows) x E per L-BFGS evaluation.
        """
        live = self._state
        old_weight, old_bias = live.head_weight, live.head_bias
        neg_embeds, neg_ids, _ = bounded_synthetic(live.synthetic_embeds, live.synthetic_ids, self.max_negative_rows)
        rows_embeds, rows_ids = torch.cat([neg_embeds, new_synthetic[0]]), torch.cat([neg_ids, new_synthetic[1]])
        class_weights = self.class_weights
        if self.new_row_added_weight is not None:
            class_weights = {**class_weights, "added": float(self.new_row_added_weight)}
        embeds, labels, weights = training_rows(
            categories=state.categories, kit_categories=self.kit.categories, bank_embeds=self._bank_embeds,
            bank_ids=self._bank_ids, synthetic_embeds=rows_embeds, synthetic_ids=rows_ids, next_id=state.next_id,
            class_weights=class_weights, max_synthetic_rows=None, mass_rows=self.synthetic_per_category)
        init = warm_start(old_categories=live.categories, old_weight=old_weight, old_bias=old_bias,
                          categories=state.categories, synthetic_embeds=rows_embeds, synthetic_ids=rows_ids)
        free = torch.tensor([state.categories.index_of(i) for i in free_ids], dtype=torch.int64)
        bank_lse = self._bank_logsumexp(old_weight, old_bias)
        fixed_lse = torch.cat([bank_lse, torch.logsumexp(rows_embeds @ old_weight.T + old_bias, 1)])
        weight, bias = fit_rows(embeds, labels, weights, weight=init[0], bias=init[1], free=free,
                                steps=self.new_row_steps, weight_decay=float(self.fit_kwargs.get("weight_decay", 5e-4)),
                                num_threads=None, fixed_lse=fixed_lse)
        new_lse = torch.logsumexp(self._bank_embeds @ weight[free].T + bias[free], 1)
        self._bank_lse = (weight, torch.logaddexp(bank_lse, new_lse))   # valid once this head is live
        return weight, bias

    def _bank_logsumexp(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """[B] logsumexp of the bank's logits under the head (weight [K+1,E], bias); cached per head."""
        if self._bank_lse is not None and self._bank_lse[0] is weight:
            return self._bank_lse[1]
        lse = torch.logsumexp(self._bank_embeds @ weight.T + bias, 1)
        self._bank_lse = (weight, lse)
        return lse

    def _commit(self, draft: RegistryState, *, t0: float, extra: dict[str, float],
                new_synthetic: tuple[torch.Tensor, torch.Tensor] | None = None,
                free_ids: Sequence[int] | None = None, refit: bool = True) -> None:
        t_fit = time.perf_counter()
        if refit:
            weight, bias = self._fit(draft, new_synthetic, free_ids)
        else:                                    # the current rows of the categories kept, no-object last
            old = self._state.categories
            rows = torch.tensor([old.index_of(c.id) for c in draft.categories] + [len(old)], dtype=torch.int64)
            weight, bias = self._state.head_weight[rows].clone(), self._state.head_bias[rows].clone()
        t_save = time.perf_counter()
        state = RegistryState(**{**draft.__dict__, "head_weight": weight, "head_bias": bias})
        if self.store is not None:
            self.store.save(state)           # persist first: a failed save leaves the old snapshot live
        t_swap = time.perf_counter()
        self._state = state
        self._snapshot = HeadSnapshot(categories=state.categories, weight=weight, bias=bias)
        t_end = time.perf_counter()
        self.last_timings_ms = {**extra, "fit": (t_save - t_fit) * 1e3, "save": (t_swap - t_save) * 1e3,
                                "swap": (t_end - t_swap) * 1e3, "total": (t_end - t0) * 1e3}

    def _initial_state(self) -> RegistryState:
        kit = self.kit
        fresh = RegistryState(
            categories=CategorySet(kit.categories.categories, version=1, text_encoder=kit.text_encoder_id),
            next_id=max(kit.categories.ids) + 1, removed_ids=(),
            head_weight=kit.head_weight.float().clone(), head_bias=kit.head_bias.float().clone(),
            synthetic_embeds=torch.zeros((0, kit.embed_dim)), synthetic_ids=torch.zeros((0,), dtype=torch.int64),
            added_text_embeds=torch.zeros((0, kit.text_encoder_dim)), added_ids=torch.zeros((0,), dtype=torch.int64))
        if self.store is None:
            return fresh
        outcome = self.store.load()
        if outcome.problem:
            self.load_problem = outcome.problem
            log.warning("%s; starting from the kit's categories", outcome.problem)
        state = outcome.state
        if state is None:
            return fresh
        problem = self._inconsistency(state)
        if problem:
            where = "the state kept in memory" if self.store.path is None else f"state file {self.store.path}"
            self.load_problem = f"{where} was not used: {problem}"
            if self.store.writable:
                moved = self.store.set_aside()
                if moved is not None:
                    self.load_problem += f"; moved to {moved.name}"
            log.warning("%s; starting from the kit's categories", self.load_problem)
            return fresh
        return state

    def _inconsistency(self, state: RegistryState) -> str | None:
        kit_ids = set(self.kit.categories.ids)
        for c in state.categories:
            if c.origin == "seen" and c.id not in kit_ids:
                return f"seen category {c.name!r} (id {c.id}) is not in the kit"
        if state.head_weight.shape[1] != self.kit.embed_dim:
            return f"head width {state.head_weight.shape[1]} != kit embed_dim {self.kit.embed_dim}"
        if state.synthetic_embeds.ndim != 2 or (state.synthetic_embeds.shape[0] and
                                                state.synthetic_embeds.shape[1] != self.kit.embed_dim):
            return "synthetic embeddings do not match the kit's embed_dim"
        if state.next_id <= max(kit_ids):
            return f"next_id {state.next_id} is not above the kit's ids"
        return None


def _check_fit_kwargs(fit_head: Callable[..., Any], fit_kwargs: dict[str, Any]) -> None:
    """Refuse keyword arguments ``fit_head`` does not take (unless it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fit_head).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(fit_kwargs) - set(params))
    if unknown:
        raise ValueError(f"fit_kwargs {unknown} are not arguments of {getattr(fit_head, '__name__', 'fit_head')} "
                         f"(it takes {sorted(params)})")


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads in this thread (None: leave as is)."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _verify_text_encoder(kit: ModelKit, encoder: TextEncoderLike, *, count: int = 4, min_cos: float = 0.99) -> None:

    names = kit.categories.names[:count]
    got = torch.from_numpy(np.asarray(encoder.encode(names), dtype=np.float32))
    want = kit.text_embeds[:len(names)]
    cos = torch.nn.functional.cosine_similarity(got, want, dim=1)
    if bool((cos < min_cos).any()):
        i = int(torch.argmin(cos))
        raise KitError(f"kit {kit.root}: the text encoder {encoder.identifier!r} in use embeds {names[i]!r} "
                       f"differently from {BANK_FILE}:text_embeds (cosine {float(cos[i]):.3f} < {min_cos}); "
                       f"same identifier, different weights?")


def kit_phrasing_settings(kit: ModelKit) -> dict[str, Any]:
    """The phrasing settings a kit's text encoder is wrapped with (`with_phrasing`): its manifest's
    ``text_encoder.kwargs.phrasing``, by default toward the words of the kit's category names
    ("vocabulary") with the roles its stuff names give them ("stuff")."""
    settings = dict(kit.manifest["text_encoder"].get("kwargs", {}).get("phrasing") or {})
    settings.setdefault("vocabulary", list(kit.categories.names))
    settings.setdefault("stuff", [c.name for c in kit.categories if not c.isthing])
    return settings


def build_registry(kit: ModelKit, *, text_encoder: TextEncoderLike | None = None, state_dir: Any = None,
                   store: StateStore | MemoryStateStore | None = None, allow_read_only: bool = False,
                   synthetic_per_category: int | None = None, fit_kwargs: dict[str, Any] | None = None,
                   max_added_categories: int | None = None, seed: int = 0, warm_up: bool = True,
                   writer_nice: int | None = WRITER_NICE) -> CategoryRegistry:
    """The registry for a loaded kit: its text encoder, its primitive generator, its runtime settings
    (warmed up unless ``warm_up`` is False, see `CategoryRegistry.warm_up`).

    Where the state lives: ``state_dir`` (a directory, opened with `StateStore.open`; ``allow_read_only``
    opens one that cannot be written read-only instead of raising, see ``registry.read_only_reason``),
    or ``store`` (a ready `StateStore` or `MemoryStateStore`; a memory store is bound to this kit and
    encoder), or neither (this registry only). Not both.

    The kit's text encoder rewrites new names toward the words of the kit's category names first
    (zsp_ros.semantics.phrasing; ``text_encoder.kwargs.phrasing`` in the manifest overrides the vocabulary
    and settings, ``{"enabled": false}`` turns it off).
    The kit's manifest may hold ``text_encoder.kwargs`` (constructor arguments for `build_text_encoder`)
    and ``runtime`` = {synthetic_per_category, class_weights, fit_kwargs, max_added_categories,
    max_synthetic_rows, refit ("new_rows" | "full"), stored_synthetic_per_category, new_row_steps,
    new_row_added_weight, max_negative_rows}; the arguments here override them.

    Raises:
        KitError: the kit's generator does not build. StateDirError / StateLockedError: the state directory.
    """
    if state_dir is not None and store is not None:
        raise ValueError("give state_dir or store, not both")
    if text_encoder is None:
        kwargs = dict(kit.manifest["text_encoder"].get("kwargs", {}))
        kwargs.pop("phrasing", None)
        phrasing = kit_phrasing_settings(kit)                       # zsp_ros.semantics.phrasing; on by default
        base = build_text_encoder(kit.text_encoder_id, **kwargs)
        try:
            text_encoder = with_phrasing(base, phrasing)
        except ValueError as exc:                                   # a bad setting in the kit's manifest
            raise KitError(f"kit {kit.root}: the phrasing rewrite (manifest text_encoder.kwargs.phrasing, "
                           f"config/phrasing.yaml or its colour table): {exc}") from None
    try:
        generator = PrimitiveGenerator(**kit.generator_config)
        generator.load_state_dict(kit.generator_state_dict())
    except (TypeError, RuntimeError, ValueError) as exc:
        raise KitError(f"kit {kit.root}: {GENERATOR_FILE} / generator_config do not build a "
                       f"PrimitiveGenerator ({exc})") from None
    generator.eval()
    runtime = kit.runtime
    owned = False
    if state_dir is not None:
        store = StateStore.open(state_dir, kit_sha256=kit.sha256, text_encoder=text_encoder.identifier,
                                allow_read_only=allow_read_only)
        owned = True
    elif isinstance(store, MemoryStateStore):
        store.bind(kit_sha256=kit.sha256, text_encoder=text_encoder.identifier)
    registry = None
    try:
        registry = CategoryRegistry(
            kit=kit, text_encoder=text_encoder, generator=generator, store=store,
            synthetic_per_category=synthetic_per_category or int(runtime.get("synthetic_per_category", 64)),
            class_weights=runtime.get("class_weights"),
            fit_kwargs={**runtime.get("fit_kwargs", {}), **(fit_kwargs or {})}, seed=seed,
            max_added_categories=max_added_categories or int(runtime.get("max_added_categories",
                                                                          DEFAULT_MAX_ADDED_CATEGORIES)),
            max_synthetic_rows=int(runtime.get("max_synthetic_rows", DEFAULT_MAX_SYNTHETIC_ROWS)),
            writer_nice=writer_nice, refit_mode=str(runtime.get("refit", "new_rows")),
            stored_synthetic_per_category=runtime.get("stored_synthetic_per_category",
                                                      DEFAULT_STORED_SYNTHETIC_PER_CATEGORY),
            new_row_steps=int(runtime.get("new_row_steps", DEFAULT_NEW_ROW_STEPS)),
            new_row_added_weight=runtime.get("new_row_added_weight", DEFAULT_NEW_ROW_ADDED_WEIGHT),
            max_negative_rows=int(runtime.get("max_negative_rows", DEFAULT_MAX_NEGATIVE_ROWS)))
        if warm_up:
            registry.warm_up()
        return registry
    except BaseException:
        if registry is not None and registry._writer is not None:
            registry._writer.close()
        if owned and store is not None:
            store.close()
        raise
