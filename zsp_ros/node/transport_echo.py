"""The transport floor of zsp_node: a bare rclpy node that answers each image with the node's output
payload and does nothing else (``zsp bench node`` times it next to the real node).

    python -m zsp_ros.node.transport_echo --ros-args -r __ns:=/bench -p input_reliability:=reliable

Subscribes ``image`` (sensor_msgs/Image, KEEP_LAST 1, the reliability given, as zsp_node) and
publishes on ``panoptic`` a zsp_msgs/PanopticSegmentation with the input's header and a 16UC1 id
image of the input's size, or ``output_height`` x ``output_width`` when set (zsp_node's size at
output_resolution network) (zeros, from a reused buffer, like zsp_node's), no segments. So a round
trip through it costs what zsp_node's costs minus the model, pre/post-processing and message
building: DDS, serialisation and rclpy on both sides, for the same payloads and QoS.
"""
from __future__ import annotations

import sys
from typing import Any

from zsp_ros.node import topics
from zsp_ros.node.output_buffers import OutputBuffers
from zsp_ros.node.spin_until_shutdown import spin_until_shutdown


def main(args: list[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean shutdown."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from zsp_msgs.msg import PanopticSegmentation

    argv = sys.argv[1:] if args is None else list(args)
    with rclpy.init(args=["transport_echo", *argv]):
        node = rclpy.create_node("transport_echo")
        reliability = str(node.declare_parameter("input_reliability", "reliable").value)
        out_h = int(node.declare_parameter("output_height", 0).value)
        out_w = int(node.declare_parameter("output_width", 0).value)
        qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.VOLATILE,
                            reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                            else ReliabilityPolicy.BEST_EFFORT)
        qos_out = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(PanopticSegmentation, topics.PANOPTIC, qos_out)
        buffers = OutputBuffers()

        def answer(msg: Any) -> None:
            out = PanopticSegmentation(header=msg.header)
            out.id_image, _ = buffers.image("id_image", height=out_h or msg.height, width=out_w or msg.width,
                                            encoding="16UC1", header=msg.header)
            pub.publish(out)

        node.create_subscription(Image, topics.IMAGE, answer, qos_in)
        node.get_logger().info(f"echoing {node.resolve_topic_name(topics.IMAGE)} ({reliability}) to "
                               f"{node.resolve_topic_name(topics.PANOPTIC)}")
        try:
            spin_until_shutdown(node)
        finally:
            node.destroy_node()
    return 0


if __name__ == "__main__":
    sys.exit(main())
