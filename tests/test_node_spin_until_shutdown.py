"""spin_until_shutdown: a requested shutdown ends the loop quietly, however it surfaces."""
from __future__ import annotations

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from zsp_ros.node.spin_until_shutdown import spin_until_shutdown  # noqa: E402


@pytest.fixture
def node():
    from rclpy.context import Context
    from rclpy.node import Node

    context = Context()
    rclpy.init(context=context)
    n = Node("spin_until_shutdown_test", context=context)
    yield n
    if context.ok():
        n.destroy_node()
        rclpy.shutdown(context=context)


def test_returns_after_its_duration(node):
    t0 = time.monotonic()
    spin_until_shutdown(node, duration_s=0.3)
    assert 0.3 <= time.monotonic() - t0 < 3.0


def test_returns_when_the_context_is_shut_down(node):
    threading.Timer(0.2, lambda: rclpy.shutdown(context=node.context)).start()
    spin_until_shutdown(node)                     # would spin forever otherwise
    assert not node.context.ok()


def test_the_shutdown_race_is_not_an_error_but_a_real_error_is(node, monkeypatch):
    from rclpy.impl.implementation_singleton import rclpy_implementation

    def shut_down_then_fail(self, timeout_sec=None):   # a SIGINT between ok() and the wait set looks like this
        rclpy.shutdown(context=node.context)
        raise rclpy_implementation.RCLError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(SingleThreadedExecutor, "spin_once", shut_down_then_fail)
    spin_until_shutdown(node)


def test_an_rcl_error_on_a_valid_context_is_raised(node, monkeypatch):
    from rclpy.impl.implementation_singleton import rclpy_implementation

    def fail(self, timeout_sec=None):
        raise rclpy_implementation.RCLError("something else broke")

    monkeypatch.setattr(SingleThreadedExecutor, "spin_once", fail)
    with pytest.raises(rclpy_implementation.RCLError, match="something else broke"):
        spin_until_shutdown(node)
