"""Spin a small helper node (synthetic camera, transport echo) until it is told to stop.

A SIGINT makes rclpy shut its context down from the signal handler. When that lands between
``rclpy.ok()`` and the executor building its wait set, rclpy raises `RCLError` ("the given context
is not valid") or a `RuntimeError` ("Context must be initialized ...") instead of
`ExternalShutdownException`: a normal stop that would otherwise end the process with exit code 1
(seen as "the camera exited with code 1" by `zsp demo`). Here every way a requested shutdown
surfaces ends the loop quietly; such an error while the context is still valid is raised.
"""
from __future__ import annotations

import time
from typing import Any


def spin_until_shutdown(node: Any, *, duration_s: float = 0.0, period_s: float = 0.1) -> None:
    """Spin ``node`` until shutdown (SIGINT, `rclpy.shutdown`) or, when ``duration_s`` > 0, that many seconds."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    deadline = time.monotonic() + duration_s if duration_s > 0 else None
    executor = SingleThreadedExecutor(context=node.context)
    try:
        executor.add_node(node)
        while rclpy.ok(context=node.context) and (deadline is None or time.monotonic() < deadline):
            executor.spin_once(timeout_sec=period_s)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:                    # rclpy's RCLError is one
        if rclpy.ok(context=node.context):
            raise
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0)
