"""A client of zsp_node for programs and tests: an rclpy node with its own context, spun by a
background thread, that records topics and calls services with timeouts.

Used by `zsp demo`, `zsp bench node` and the end-to-end tests:

    client = ZspClient(namespace="/robot")
    client.subscribe("panoptic", PanopticSegmentation)
    client.change_state("configure"); client.change_state("activate")
    msg = client.wait_for("panoptic", lambda m: m.header.stamp == stamp, timeout=30)
    response = client.add_categories(["purple star"])
    client.close()

Every received message is kept with its arrival time (``time.time()`` seconds), so callers can
compute end-to-end latency against the header stamp (same machine, same clock). Calls and waits
raise ``TimeoutError`` with a sentence saying what did not happen.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from rclpy.client import Client

NODE_NAME = "zsp_node"


class ZspClient:
    """Client node in ``namespace`` (where zsp_node runs), named ``name``."""

    def __init__(self, *, namespace: str = "/", name: str = "zsp_client", node_name: str = NODE_NAME) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node

        self.namespace = namespace if namespace.startswith("/") else "/" + namespace
        self.node_path = f"{self.namespace.rstrip('/')}/{node_name}"
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node(name, namespace=self.namespace, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self._callbacks: dict[str, list[Callable[[float, Any], None]]] = {}
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._spin, name="zsp-client-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    # ------------------------------------------------------------------ topics
    def subscribe(self, topic: str, msg_type: Any, qos: Any = 10, *,
                  on_message: Callable[[float, Any], None] | None = None, keep: bool = True) -> None:
        """Record every message on ``topic`` (relative to the namespace unless absolute).

        on_message: also called as ``on_message(arrival_time_s, msg)`` on the spinning thread.
        keep: False = do not store messages (only call ``on_message``).
        """
        self.received.setdefault(topic, [])
        if on_message is not None:
            self._callbacks.setdefault(topic, []).append(on_message)

        def handle(msg: Any) -> None:
            now = time.time()
            for callback in self._callbacks.get(topic, []):
                callback(now, msg)
            if keep:
                with self._cond:
                    self.received[topic].append((now, msg))
                    self._cond.notify_all()

        self.node.create_subscription(msg_type, topic, handle, qos)

    def messages(self, topic: str) -> list[Any]:
        """The messages received on ``topic`` so far, oldest first."""
        with self._cond:
            return [m for _, m in self.received.get(topic, [])]

    def wait_for(self, topic: str, predicate: Callable[[Any], bool] = lambda m: True, *,
                 timeout: float = 60.0, after: int = 0) -> Any:
        """The first message on ``topic`` (index >= ``after``) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for _, msg in self.received.get(topic, [])[after:]:
                    if predicate(msg):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching message on {topic!r} within {timeout:.0f} s "
                                       f"({len(self.received.get(topic, []))} received)")
                self._cond.wait(timeout=min(left, 0.5))

    # ------------------------------------------------------------------ services
    def call(self, srv_type: Any, name: str, request: Any, *, timeout: float = 60.0) -> Any:
        """Call service ``name``; its response, or TimeoutError saying which step timed out."""
        client: Client[Any, Any] = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name!r} not available within {timeout:.0f} s")
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            if not done.wait(timeout):
                raise TimeoutError(f"no response from {name!r} within {timeout:.0f} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def change_state(self, transition: str, *, timeout: float = 120.0) -> bool:
        """Ask zsp_node for a lifecycle transition by label ("configure", "activate", ...)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(label=transition))
        return bool(self.call(ChangeState, f"{self.node_path}/change_state", request, timeout=timeout).success)

    def get_state(self, *, timeout: float = 60.0) -> str:
        """zsp_node's lifecycle state label ("unconfigured", "inactive", "active", ...)."""
        from lifecycle_msgs.srv import GetState

        label: str = self.call(GetState, f"{self.node_path}/get_state", GetState.Request(),
                               timeout=timeout).current_state.label
        return label

    def set_parameter(self, name: str, value: Any, *, timeout: float = 60.0) -> Any:
        """Set one parameter of zsp_node; rcl_interfaces/SetParametersResult (successful, reason)."""
        from rcl_interfaces.msg import Parameter as ParameterMsg
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        msg = ParameterMsg(name=name, value=Parameter(name, value=value).get_parameter_value())
        return self.call(SetParameters, f"{self.node_path}/set_parameters",
                         SetParameters.Request(parameters=[msg]), timeout=timeout).results[0]

    def add_categories(self, names: list[str], isthing: list[bool] | None = None, *,
                       timeout: float = 120.0) -> Any:
        from zsp_msgs.srv import AddCategories
        return self.call(AddCategories, "add_categories",
                         AddCategories.Request(names=list(names), isthing=list(isthing or [])), timeout=timeout)

    def remove_categories(self, names: Sequence[str] = (), ids: Sequence[int] = (), *,
                          timeout: float = 120.0) -> Any:
        from zsp_msgs.srv import RemoveCategories
        return self.call(RemoveCategories, "remove_categories",
                         RemoveCategories.Request(names=list(names), ids=list(ids)), timeout=timeout)

    def list_categories(self, *, timeout: float = 60.0) -> Any:
        from zsp_msgs.srv import ListCategories
        return self.call(ListCategories, "list_categories", ListCategories.Request(), timeout=timeout)

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        """Stop spinning, destroy the node, shut the context down. Idempotent."""
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> ZspClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
