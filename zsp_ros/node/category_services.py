"""The node's category services: add_categories, remove_categories, list_categories.

Every request gets an answer: ``success`` and a ``message`` that says what was done or why nothing
was. A refused request (``ValueError``: `CategoryError`, the text encoder's refusals) changes nothing;
any other failure is reported as an internal error and logged with its traceback. Writes hold the
node's registry lock, so a cleanup cannot free the model under a running add.
"""
from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable

from zsp_ros.node.messages import category_set_message


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
            return (f"added {', '.join(f'{c.name!r} (id {c.id})' for c in added)} in "
                    f"{time.perf_counter() - t0:.2f} s")
        return self._change(add, response, verb="added", ids_field="category_ids")

    def on_remove(self, request: Any, response: Any) -> Any:
        items: list[Any] = [*request.names, *(int(i) for i in request.ids)]

        def remove(registry: Any) -> str:
            response.removed_ids = [int(i) for i in registry.remove(items)]
            return f"removed ids {list(response.removed_ids)}"
        return self._change(remove, response, verb="removed", ids_field="removed_ids")

    def on_list(self, request: Any, response: Any) -> Any:
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
            response.message = f"internal error {type(exc).__name__}: {exc}"
            self._logger.error(f"{response.message}\n{traceback.format_exc()}")
        return response

    def _not_configured(self) -> str:
        return (f"the node is {self._lifecycle_state()}, not configured: configure it first "
                f"(lifecycle transition 'configure')")

    def _change(self, change: Callable[[Any], str], response: Any, *, verb: str, ids_field: str) -> Any:
        """Run ``change(registry) -> message`` under the lock and fill the service response."""
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
            self._on_changed()
        except Exception as exc:
            setattr(response, ids_field, [])
            response.success = False
            response.message = f"nothing {verb}: internal error {type(exc).__name__}: {exc}"
            self._logger.error(f"{response.message}\n{traceback.format_exc()}")
        return response
