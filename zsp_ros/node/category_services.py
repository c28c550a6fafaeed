"""The node's category services: add_categories, remove_categories, list_categories.

Every request gets an answer: ``success`` and a ``message`` that says what was done or why nothing
was, and — whenever a model is loaded — the current category-set version (after the change, or the
unchanged one after a failure; 0 only while unconfigured). A refused request (``ValueError``:
`CategoryError`, the text encoder's refusals, a read-only state directory) changes nothing; any other
failure also changes nothing (the registry persists before it swaps): a state directory that cannot
be written (`StateDirError`) is reported with its own message (directory and cause), anything else as
an internal error naming its cause and, for an OSError, the file (`describe_error`); both are logged
with the traceback. A failure after the change
(republishing category_set) is logged and does not turn the success into a failure. Writes hold the
node's registry lock, so a cleanup cannot free the model under a running add.
"""
from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from zsp_ros.node.messages import category_set_message
from zsp_ros.runtime.state_store import StateDirError


class CategoryServices:
    """Service callbacks bound to the node's current Segmenter.

    Args:
        segmenter: returns the node's Segmenter, or None while unconfigured.
        lock: held while the registry changes (the node takes it to release the model).
        logger: the node's rclpy logger.
        lifecycle_state: returns the node's lifecycle state label (for "not configured" answers).
        stamp: returns the current ROS time (builtin_interfaces/Time).
        on_changed: called after a successful change (republishes the category set).
    """

    def __init__(self, *, segmenter: Callable[[], Any], lock: threading.Lock, logger: Any,
                 lifecycle_state: Callable[[], str], stamp: Callable[[], Any], on_changed: Callable[[], None]) -> None:
        self._segmenter = segmenter
        self._lock = lock
        self._logger = logger
        self._lifecycle_state = lifecycle_state
        self._stamp = stamp
        self._on_changed = on_changed

    def on_add(self, request: Any, response: Any) -> Any:
        names = list(request.names)

        def add(registry: Any) -> str:
            t0 = time.perf_counter()
            added = registry.add(names, list(request.isthing) or None)
            response.category_ids = [int(c.id) for c in added]
            understood = " | ".join(r.text() for r in registry.last_add_report)
            return (f"added {', '.join(f'{c.name!r} (id {c.id})' for c in added)} in "
                    f"{time.perf_counter() - t0:.2f} s" + (f"; understood as: {understood}" if understood else ""))
        return self._change(add, response, verb="added", ids_field="category_ids")

    def on_remove(self, request: Any, response: Any) -> Any:
        items: list[Any] = [*request.names, *(int(i) for i in request.ids)]

        def remove(registry: Any) -> str:
            response.removed_ids = [int(i) for i in registry.remove(items)]
            return f"removed ids {list(response.removed_ids)}"
        return self._change(remove, response, verb="removed", ids_field="removed_ids")

    def on_list(self, request: Any, response: Any) -> Any:
        segmenter = None
        try:
            segmenter = self._segmenter()
            if segmenter is None:
                response.success, response.message = False, self._not_configured()
                return response
            cats = segmenter.registry.list()
            response.category_set = category_set_message(cats)
            response.category_set.header.stamp = self._stamp()
            response.success = True
            response.message = f"{len(cats)} categories, version {cats.version}"
        except Exception as exc:
            response.success = False
            response.message = f"internal error {describe_error(exc)}"
            response.category_set.version = _version(segmenter)
            self._logger.error(f"{response.message}\n{traceback.format_exc()}")
        return response

    def _not_configured(self) -> str:
        return (f"the node is {self._lifecycle_state()}, not configured: configure it first "
                f"(lifecycle transition 'configure')")

    def _change(self, change: Callable[[Any], str], response: Any, *, verb: str, ids_field: str) -> Any:
        """Run ``change(registry) -> message`` under the lock and fill the service response."""
        segmenter = None
        try:
            with self._lock:
                segmenter = self._segmenter()
                if segmenter is None:
                    response.success, response.message = False, self._not_configured()
                    return response
                try:
                    done = change(segmenter.registry)
                except ValueError as exc:
                    setattr(response, ids_field, [])
                    response.success, response.message = False, f"nothing {verb}: {exc}"
                    response.version = segmenter.registry.version
                    return response
                response.version = segmenter.registry.version
            response.success = True
            response.message = f"{done}; category set version {response.version}"
            self._logger.info(response.message)
        except Exception as exc:
            setattr(response, ids_field, [])
            response.success = False
            why = str(exc) if isinstance(exc, StateDirError) else \
                f"internal error {describe_error(exc, _state_path(segmenter))}"     # StateDirError names dir + cause
            response.message = f"nothing {verb}: {why}"
            response.version = _version(segmenter)
            self._logger.error(f"{response.message}\n{traceback.format_exc()}")
            return response
        try:
            self._on_changed()
        except Exception as exc:        # the change is made and persisted: report, but do not deny it
            self._logger.error(f"category set changed (version {response.version}) but category_set was not "
                               f"republished: {describe_error(exc)}\n{traceback.format_exc()}")
        return response


def describe_error(exc: BaseException, state_path: Path | None = None) -> str:
    """``Type: message``; for an OSError also the file it concerns: its ``filename`` (already in the
    message when set) or, when the error names none, ``state_path`` (the file a registry change writes)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        named = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
        missing = [p for p in named if p not in text]
        if missing:
            text += f" (file {', '.join(missing)})"
        elif not named and state_path is not None:
            text += f" (while writing the state file {state_path})"
    return text


def _version(segmenter: Any) -> int:
    """The current category-set version, or 0 without a model (or if even that cannot be read)."""
    try:
        return int(segmenter.registry.version) if segmenter is not None else 0
    except Exception:
        return 0


def _state_path(segmenter: Any) -> Path | None:
    """The registry's state file, when it has one."""
    path = getattr(getattr(getattr(segmenter, "registry", None), "store", None), "path", None)
    return Path(path) if path is not None else None
