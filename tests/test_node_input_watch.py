"""input_watch: the likely cause of a silent image subscription from its publishers and QoS (pure),
and the deprecated subscribe_compressed alias of image_transport."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from zsp_ros.node import parameters as params
from zsp_ros.node.input_watch import Endpoint, endpoint_from_info, explain_silence, silence_report

IMAGE = "sensor_msgs/msg/Image"


def pub(reliability="reliable", type_=IMAGE):
    return Endpoint(node="/cam/driver", type=type_, reliability=reliability, durability="volatile")


@pytest.mark.parametrize("publishers, ours, cause, fragment", [
    ([], "reliable", "no_publisher", "topics of that type: /other/image_raw"),
    ([pub(type_="sensor_msgs/msg/CompressedImage")], "reliable", "wrong_type", "set image_transport"),
    ([pub("best_effort")], "reliable", "qos_incompatible", "input_reliability:=best_effort"),
    ([pub("reliable")], "best_effort", "best_effort_large", "set input_reliability:=reliable"),
    ([pub("best_effort")], "best_effort", "best_effort_large", "make the publisher reliable"),
    ([pub("reliable")], "reliable", "not_publishing", "not publishing"),
    ([pub("best_effort"), pub("reliable")], "reliable", "not_publishing", "not publishing"),
])
def test_each_cause(publishers, ours, cause, fragment):
    got, why = explain_silence(topic="/cam/image_raw", want_type=IMAGE, reliability=ours, publishers=publishers,
                               same_type_topics=["/cam/image_raw", "/other/image_raw"])
    assert got == cause and fragment in why, why


def test_no_topic_of_the_type_at_all_and_the_report_line():
    cause, why = explain_silence(topic="/x", want_type=IMAGE, reliability="reliable", publishers=[])
    assert cause == "no_publisher" and "no topic carries sensor_msgs/msg/Image" in why
    line = silence_report(topic="/x", silent_s=5.04, since_activation=True, want_type=IMAGE, reliability="reliable",
                          publishers=[pub("best_effort")], cause="qos_incompatible", why="QoS mismatch")
    assert line == ("no frame on /x for 5.0 s (since activation); node subscribes sensor_msgs/msg/Image reliable "
                    "volatile; publishers: /cam/driver (sensor_msgs/msg/Image, best_effort, volatile); likely cause "
                    "(qos_incompatible): QoS mismatch")


def test_endpoint_from_rclpy_info():
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    info = SimpleNamespace(node_name="driver", node_namespace="/cam", topic_type=IMAGE,
                           qos_profile=QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                                                  durability=DurabilityPolicy.TRANSIENT_LOCAL))
    assert endpoint_from_info(info) == Endpoint("/cam/driver", IMAGE, "best_effort", "transient_local")
    root = SimpleNamespace(**{**vars(info), "node_namespace": "/"})
    assert endpoint_from_info(root).node == "/driver"


def test_subscribe_compressed_is_a_deprecated_alias():
    values = params.load_defaults()
    assert params.image_transport(values) == ("raw", None)
    transport, warning = params.image_transport({**values, "subscribe_compressed": True})
    assert transport == "compressed" and "deprecated" in warning and "image_transport:=compressed" in warning
    assert params.check_value("image_transport", "theora") == "image_transport: must be one of raw, compressed; got 'theora'"
    assert params.check_value("depth_encoding_policy", "clip").startswith("depth_encoding_policy: must be one of")
    assert params.check_value("threads", -1) is not None and params.check_value("threads", 0) is None
    assert values["input_reliability"] == "reliable" and values["id_image_encoding"] == "16UC1"
