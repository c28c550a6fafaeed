"""Entry point of the node: ``zsp_node [--ros-args ...]`` and ``zsp node [--ros-args ...]``.

As ros2/demos: ``rclpy.init`` (its signal handlers turn SIGINT and SIGTERM into a context
shutdown), spin a MultiThreadedExecutor, and on the way out release the model and destroy the
node. With ``-p autostart:=true`` the node configures and activates itself; otherwise a lifecycle
manager (the launch file, or any client of the lifecycle services) does.

Exit codes: 0 after a clean shutdown, 1 when the node could not be created (bad parameter
overrides: the reason is printed) or autostart failed (the reason is logged).
"""
from __future__ import annotations

import sys

from zsp_ros.node.parameters import PARAMETERS, default_config_path, load_defaults
from zsp_ros.node.zsp_node import ZspNode

EXECUTOR_THREADS = 4   # lifecycle + image callbacks, category writes, list, diagnostics


def usage() -> str:
    """This module's help and every parameter with its default (from config/zsp.yaml)."""

    defaults = load_defaults()
    lines = [__doc__.strip(), "", "usage: zsp_node [--ros-args -p NAME:=VALUE ... | --params-file FILE]", "",
             f"parameters (defaults from {default_config_path()}):"]
    for p in PARAMETERS:
        lines.append(f"  {p.name} = {defaults[p.name]!r}  [{p.applies}; {p.constraints}]\n      {p.description}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown. ``args``: the command line (default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if args is None else list(args)
    ours = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in ours or "--help" in ours:
        print(usage())
        return 0

    import rclpy
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor


    code = 0
    with rclpy.init(args=["zsp_node", *argv]):
        try:
            node = ZspNode()
        except (InvalidParameterTypeException, InvalidParameterValueException, ValueError,
                FileNotFoundError) as exc:
            print(f"zsp_node: cannot start: {exc}", file=sys.stderr, flush=True)
            return 1
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        executor.add_node(node)
        try:
            if node.get_parameter("autostart").value and not node.autostart():
                node.get_logger().error("autostart failed (reason above): exiting")
                code = 1
            else:
                executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            try:
                node.release()
            except Exception as exc:  # shutting down: report, do not mask the exit
                print(f"zsp_node: while releasing: {type(exc).__name__}: {exc}", file=sys.stderr)
            executor.shutdown(timeout_sec=2.0)
            node.destroy_node()
    return code


if __name__ == "__main__":
    sys.exit(main())
