"""A stand-in camera: publishes a fixed list of pictures as sensor_msgs/Image (rgb8) at a steady rate.

    python -m zsp_ros.node.synthetic_camera --scenes scenes.npz --rate 5 [--ros-args -r __ns:=/demo]

``scenes.npz`` holds ``images`` uint8 [N,H,W,3] RGB (e.g. synthetic-world scenes written by
`zsp demo`). Frame k shows picture k mod N, stamped with the ROS clock at publication. Publishing
starts once the topic has a subscriber (so no frame is sent into the void) and runs until SIGINT
or ``--duration``. For each frame the program prints ``SENT <sec> <nanosec> <picture index>`` on
stdout, so a recorder can tell which picture a result belongs to.

The publisher is reliable with KEEP_LAST depth 1: it matches both best-effort and reliable
subscribers and never queues old frames.
"""
from __future__ import annotations

import argparse
import sys
import time

from zsp_ros.node.raw_image import numpy_to_image
from zsp_ros.node.spin_until_shutdown import spin_until_shutdown


def main(args: list[str] | None = None) -> int:
    import numpy as np
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.utilities import remove_ros_args
    from sensor_msgs.msg import Image


    argv = sys.argv if args is None else ["synthetic_camera", *args]
    parser = argparse.ArgumentParser(prog="synthetic_camera", description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", required=True, help="npz file with images uint8 [N,H,W,3]")
    parser.add_argument("--rate", type=float, default=5.0, help="frames per second (default 5)")
    parser.add_argument("--frame-id", default="synthetic_camera", help="header.frame_id")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds; 0 = never")
    opts = parser.parse_args(remove_ros_args(argv)[1:])
    if not opts.rate > 0:
        parser.error(f"--rate must be > 0, got {opts.rate}")
    with np.load(opts.scenes) as data:
        images = np.asarray(data["images"])
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or len(images) == 0:
        parser.error(f"{opts.scenes}: images must be uint8 [N,H,W,3] with N >= 1, got {images.dtype} {images.shape}")

    with rclpy.init(args=argv):
        node = Node("synthetic_camera")
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(Image, "image", qos)
        messages = [numpy_to_image(image, "rgb8") for image in images]
        frame = 0
        started: float | None = None

        def tick() -> None:
            nonlocal frame, started
            if pub.get_subscription_count() == 0 and started is None:
                return
            started = started or time.monotonic()
            index = frame % len(messages)
            msg = messages[index]
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = opts.frame_id
            pub.publish(msg)
            print(f"SENT {msg.header.stamp.sec} {msg.header.stamp.nanosec} {index}", flush=True)
            frame += 1

        node.create_timer(1.0 / opts.rate, tick)
        node.get_logger().info(f"{len(messages)} pictures {images.shape[2]}x{images.shape[1]} at {opts.rate:g} Hz "
                               f"on {pub.topic_name}, waiting for a subscriber")
        try:
            spin_until_shutdown(node, duration_s=opts.duration)
        finally:
            node.destroy_node()
    return 0


if __name__ == "__main__":
    sys.exit(main())
