"""The demo's processes: the node and camera children, the recording client, and waiting on them.

Contract:

- `ros_environment()`: the demo's namespace (``/zsp_demo_<pid>``, so parallel demos do not meet)
  and the environment the children get; it pins ROS discovery to this machine (LOCALHOST unless
  ``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set) in this process too.
- `start_node(...)` / `start_camera(...)`: zsp_node (``publish_overlay`` on, ``publish_semantic``
  off) and the synthetic camera as `ChildProgram` children, output in their log files; use them
  with ``with`` so they are stopped (SIGINT first) whatever happens.
- `open_client(namespace, recording)`: a `ZspClient` that appends every ``panoptic`` result and
  ``overlay`` image to ``recording`` and keeps the latched ``category_set``; close it (``with``).
- `wait_until(predicate, timeout=, what=, node=)`: polls every 0.1 s; ``DemoFailure`` naming
  ``what`` on timeout, or with the node's log tail when the node exits first.

ROS message packages are imported inside the functions (this module imports without a ROS install).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from zsp_ros.demo.failure import DemoFailure
from zsp_ros.demo.recording import Recording, stamp
from zsp_ros.node import topics
from zsp_ros.node.client import ZspClient
from zsp_ros.node.launcher import ChildProgram, ros_args


def ros_environment() -> tuple[str, dict[str, str]]:
    """(namespace, environment for the children); discovery stays on localhost here too."""
    namespace = f"/zsp_demo_{os.getpid()}"
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")}
    os.environ.update(env)
    return namespace, env


def start_node(*, namespace: str, kit_dir: Path, state_dir: Path, log_path: Path, env: dict[str, str],
               threads: int = 0) -> ChildProgram:
    """zsp_node on ``kit_dir`` (unconfigured: the client drives its lifecycle), publishing overlays, with
    ``threads`` torch threads (0 = the node's automatic rule)."""
    params = {"kit": str(kit_dir.resolve()), "state_dir": str(state_dir), "publish_overlay": True,
              "publish_semantic": False, "threads": int(threads)}
    return ChildProgram(name="zsp_node", module="zsp_ros.node.main", args=ros_args(namespace, params),
                        log_path=log_path, env_extra=env)


def start_camera(*, namespace: str, scenes_path: Path, rate: float, log_path: Path, env: dict[str, str]
                 ) -> ChildProgram:
    """The synthetic camera cycling through ``scenes_path`` (npz ``images``) at ``rate`` Hz."""
    return ChildProgram(name="camera", module="zsp_ros.node.synthetic_camera",
                        args=["--scenes", str(scenes_path), "--rate", str(rate), *ros_args(namespace)],
                        log_path=log_path, env_extra=env)


def open_client(namespace: str, recording: Recording) -> ZspClient:
    """A client of the node in ``namespace`` recording results and overlays into ``recording``."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from zsp_msgs.msg import CategorySet, PanopticSegmentation

    client = ZspClient(namespace=namespace, name="zsp_demo_client")
    try:
        client.subscribe("panoptic", PanopticSegmentation, keep=False,
                         on_message=lambda t, m: recording.results.append((t, m)))
        client.subscribe("overlay", Image, keep=False,
                         on_message=lambda t, m: recording.overlays.__setitem__(stamp(m), m))
        client.subscribe(topics.CATEGORY_SET, CategorySet, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                                durability=DurabilityPolicy.TRANSIENT_LOCAL))
    except BaseException:
        client.close()
        raise
    return client


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, node: Any = None) -> None:
    """Return once ``predicate()`` holds; DemoFailure on timeout or when ``node`` exits first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if node is not None and not node.alive:
            raise DemoFailure(f"the node exited while waiting for {what}:\n{node.log_tail()}")
        if time.monotonic() > deadline:
            raise DemoFailure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
