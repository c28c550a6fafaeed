"""zsp_node's input as a robot sees it, through real processes over DDS (the quadrant kit of
tests/node_fixtures.py):

- node A: image_transport raw, ``-r image:=/<cam A>/image_raw``, autostarted. Before any frame it
  WARNs that nothing publishes the topic; only the raw topic is subscribed (a compressed publisher
  finds no subscriber) and one frame gives one result; a 16UC1 depth frame is refused and counted
  until depth_encoding_policy says normalise; a best-effort publisher is reported as a QoS mismatch.
- node B: image_transport compressed, ``-r image:=/<cam B>/image_raw`` (so the node subscribes
  /<cam B>/image_raw/compressed), not autostarted: it logs that it waits unconfigured, then is
  configured and activated by the client; raw frames find no subscriber.
- both runs paint the same category in the same colour on ``color_mask`` (a fixed palette).
"""
from __future__ import annotations

import numpy as np
import pytest
from node_fixtures import NODE_PROGRAM, TESTS_DIR, make_quadrant_kit, node_args
from ros_helpers import spawn_python, unique_namespace

TIMEOUT_S = 90.0
pytestmark = pytest.mark.timeout(400)
H, W = 48, 64
IMAGE = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
BASE = {"backend": "quadrant-test", "object_mask_threshold": 0.5, "diagnostics_period_s": 0.25}


def start(namespace: str, kit, camera: str, **params):
    args = node_args(namespace, kit=str(kit), **BASE, **params) + ["-r", f"image:={camera}"]
    return spawn_python(name="zsp_node", source=NODE_PROGRAM, args=args, env_extra={"ZSP_TEST_DIR": str(TESTS_DIR)})


def wait_subscribed(publisher, timeout: float = TIMEOUT_S) -> None:
    import time

    deadline = time.monotonic() + timeout
    while publisher.get_subscription_count() < 1:
        assert time.monotonic() < deadline, "the node never subscribed"
        time.sleep(0.05)


def diag_values(msg) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.status[0].values}


def result_of(client, publisher, msg, stamp: int, tries: int = 5):
    """Publish ``msg`` with header.stamp.sec = ``stamp`` until its panoptic result arrives."""
    msg.header.stamp.sec = stamp
    for _ in range(tries):
        publisher.publish(msg)
        try:
            return client.wait_for("panoptic", lambda m: m.header.stamp.sec == stamp, timeout=TIMEOUT_S / tries)
        except TimeoutError:
            continue
    raise AssertionError(f"no result for frame {stamp}")


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    return make_quadrant_kit(tmp_path_factory.mktemp("transport"))


@pytest.fixture(scope="module")
def masks():
    """Colour masks of IMAGE from each node run (compared by the last test)."""
    return {}


def test_raw_node_warns_of_silence_refuses_depth_and_subscribes_one_topic(kit, masks):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from zsp_msgs.msg import PanopticSegmentation

    from zsp_ros.node.client import ZspClient
    from zsp_ros.node.raw_image import image_to_numpy, numpy_to_image

    namespace = unique_namespace("zsp_transport_raw")
    camera = f"/{namespace.strip('/')}_cam/image_raw"
    with start(namespace, kit, camera, autostart=True, no_frames_warn_s=1.0) as node, \
            ZspClient(namespace=namespace, name="zsp_transport_client_a") as client:
        client.subscribe("panoptic", PanopticSegmentation)
        client.subscribe("color_mask", Image)
        client.subscribe("/diagnostics", DiagnosticArray)
        line = node.wait_for_line("[WARN]", timeout=TIMEOUT_S)
        while "no frame on" not in line:
            line = node.wait_for_line("[WARN]", timeout=TIMEOUT_S)
        assert f"no frame on {camera} " in line and "since activation" in line
        assert "publishers: none" in line and "likely cause (no_publisher)" in line and "-r image:=" in line
        assert "node subscribes sensor_msgs/msg/Image reliable" in line

        raw = client.node.create_publisher(Image, camera, 10)
        compressed = client.node.create_publisher(CompressedImage, camera + "/compressed", 10)
        wait_subscribed(raw)
        result = result_of(client, raw, numpy_to_image(IMAGE, "rgb8"), stamp=1)
        assert {s.label for s in result.segments} >= {"red circle", "grass"}
        assert compressed.get_subscription_count() == 0                # one transport at a time
        mask = client.wait_for("color_mask", lambda m: m.header.stamp.sec == 1, timeout=TIMEOUT_S)
        masks["raw run"] = (image_to_numpy(mask).copy(), {s.category_id for s in result.segments})
        assert len([m for m in client.messages("panoptic") if m.header.stamp.sec == 1]) == 1

        depth = numpy_to_image((np.arange(H * W, dtype=np.uint16).reshape(H, W) % 4000) + 500, "16UC1")
        depth.header.stamp.sec = 2
        for _ in range(10):
            raw.publish(depth)
            try:
                report = client.wait_for("/diagnostics", lambda m: int(diag_values(m).get("refused_not_picture", 0)) >= 1,
                                         timeout=TIMEOUT_S / 10)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the depth frame was never counted as refused")
        values = diag_values(report)
        assert int(values["frames_refused"]) >= 1 and int(values["frames_malformed"]) == 0
        assert "refused" in report.status[0].message
        assert not [m for m in client.messages("panoptic") if m.header.stamp.sec == 2]
        assert "refusing frame (not_picture): encoding '16UC1' holds measurements" in node.transcript
        assert "depth_encoding_policy:=normalise" in node.transcript
        assert client.set_parameter("depth_encoding_policy", "normalise", timeout=TIMEOUT_S).successful
        assert result_of(client, raw, depth, stamp=3).id_image.width == W

        best_effort = client.node.create_publisher(
            Image, camera, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        line = node.wait_for_line("[WARN]", timeout=TIMEOUT_S)
        while "offers a QoS incompatible" not in line:
            line = node.wait_for_line("[WARN]", timeout=TIMEOUT_S)
        assert "policy RELIABILITY" in line and "input_reliability:=best_effort" in line
        client.node.destroy_publisher(best_effort)


def test_compressed_node_follows_the_remap_and_logs_while_unconfigured(kit, masks):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage, Image
    from zsp_msgs.msg import PanopticSegmentation

    from zsp_ros.node.client import ZspClient
    from zsp_ros.node.compressed_image import numpy_to_compressed
    from zsp_ros.node.raw_image import image_to_numpy

    namespace = unique_namespace("zsp_transport_compressed")
    camera = f"/{namespace.strip('/')}_cam/image_raw"
    with start(namespace, kit, camera, image_transport="compressed", unconfigured_warn_s=0.5,
               no_frames_warn_s=0.0) as node, ZspClient(namespace=namespace, name="zsp_transport_client_b") as client:
        line = node.wait_for_line("[WARN]", timeout=TIMEOUT_S)
        assert "still unconfigured 0.5 s after start-up" in line
        assert "autostart:=true" in line and "ros2 lifecycle set" in line
        client.subscribe("panoptic", PanopticSegmentation)
        client.subscribe("color_mask", Image)
        client.subscribe("/diagnostics", DiagnosticArray)
        assert client.change_state("configure", timeout=TIMEOUT_S) and client.change_state("activate", timeout=TIMEOUT_S)
        active = node.wait_for_line("[INFO]", timeout=TIMEOUT_S)
        while "active: subscribed to" not in active:
            active = node.wait_for_line("[INFO]", timeout=TIMEOUT_S)
        assert f"subscribed to {camera}/compressed (sensor_msgs/msg/CompressedImage, reliable)" in active

        compressed = client.node.create_publisher(CompressedImage, camera + "/compressed", 10)
        raw = client.node.create_publisher(Image, camera, 10)
        wait_subscribed(compressed)
        result = result_of(client, compressed, numpy_to_compressed(IMAGE, "rgb8", format="png"), stamp=1)
        assert {s.label for s in result.segments} >= {"red circle", "grass"}
        assert raw.get_subscription_count() == 0                      # one transport at a time
        mask = client.wait_for("color_mask", lambda m: m.header.stamp.sec == 1, timeout=TIMEOUT_S)
        masks["compressed run"] = (image_to_numpy(mask).copy(), {s.category_id for s in result.segments})

        broken = CompressedImage(format="jpeg", data=list(b"\xff\xd8 not really a jpeg"))
        for _ in range(10):
            compressed.publish(broken)
            try:
                client.wait_for("/diagnostics", lambda m: int(diag_values(m).get("malformed_compressed", 0)) >= 1,
                                timeout=TIMEOUT_S / 10)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("malformed_compressed never counted")
        assert "no frame on" not in node.transcript                  # no_frames_warn_s 0: never


def test_color_mask_palette_is_the_same_in_both_runs(masks):
    from zsp_ros.drawing.palette import category_color

    (first, first_ids), (second, second_ids) = masks["raw run"], masks["compressed run"]
    assert first_ids == second_ids and len(first_ids) >= 2
    np.testing.assert_array_equal(first, second)
    for category_id in first_ids:
        assert (first == category_color(category_id)).all(axis=2).any(), category_id
    assert len({tuple(px) for px in first.reshape(-1, 3)}) <= len(first_ids) + 1     # palette colours (+ void) only
