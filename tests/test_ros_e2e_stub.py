"""End to end through real ROS 2: two rclpy processes talk over Fast DDS.

Process "server" (test code, a stub of the real category service that comes later) offers
``add_categories`` (zsp_msgs/AddCategories) and subscribes to ``panoptic``
(zsp_msgs/PanopticSegmentation), printing every received message as base64 CDR.
Process "client" waits until its publisher matches the subscriber, publishes one
PanopticSegmentation whose id image is built by zsp_ros.node.raw_image, calls the
service with a good and a bad request, and prints the responses as JSON.
This test deserialises what crossed DDS and checks every field, decoding the 32SC1 id
image with the project's converter.
"""
from __future__ import annotations

import base64
import json
from contextlib import ExitStack

import numpy as np
import pytest
from ros_helpers import spawn_python, unique_namespace

TIMEOUT_S = 60.0          # per step; discovery can take seconds on a loaded 2-core machine
CHILD_LIFETIME_S = 150.0  # children exit by themselves after this, whatever happens

SERVER = r'''
import base64, json, sys, time
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.serialization import serialize_message
from zsp_msgs.msg import PanopticSegmentation
from zsp_msgs.srv import AddCategories


class StubCategoryServer(Node):
    """AddCategories stub: new ids from 1001 in request order; version + 1 per success."""

    def __init__(self):
        super().__init__("stub_category_server")
        self.version = 0
        self.next_id = 1001
        self.create_service(AddCategories, "add_categories", self.on_add)
        self.create_subscription(PanopticSegmentation, "panoptic", self.on_panoptic, 10)

    def on_add(self, request, response):
        names, isthing = list(request.names), list(request.isthing)
        response.version = self.version
        if not names or any(not n.strip() for n in names):
            response.success, response.message = False, "names must be non-empty strings"
        elif isthing and len(isthing) != len(names):
            response.success = False
            response.message = f"isthing has {len(isthing)} entries but names has {len(names)}"
        else:
            response.category_ids = list(range(self.next_id, self.next_id + len(names)))
            self.next_id += len(names)
            self.version += 1
            response.success, response.version = True, self.version
            response.message = "added " + ", ".join(names)
        print("REQUEST", json.dumps({"names": names, "isthing": isthing}), flush=True)
        return response

    def on_panoptic(self, msg):
        print("PANOPTIC", base64.b64encode(serialize_message(msg)).decode(), flush=True)


def main():
    deadline = time.monotonic() + float(sys.argv[1])
    rclpy.init(args=sys.argv)
    node = StubCategoryServer()
    print("READY", node.get_fully_qualified_name(), flush=True)
    try:
        while rclpy.ok() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


main()
'''

CLIENT = r'''
import json, sys, threading, time
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import Header
from zsp_msgs.msg import PanopticSegmentation, Segment
from zsp_msgs.srv import AddCategories
from zsp_ros.node.raw_image import numpy_to_image


def build_message(spec):
    header = Header(frame_id=spec["frame_id"])
    header.stamp.sec, header.stamp.nanosec = spec["stamp"]
    msg = PanopticSegmentation(header=header)
    msg.id_image = numpy_to_image(np.asarray(spec["id_image"], dtype=np.int32), "32SC1",
                                  header=header)
    msg.segments = [Segment(**s) for s in spec["segments"]]
    msg.category_set_version = spec["category_set_version"]
    msg.preprocess_ms, msg.model_ms, msg.postprocess_ms = spec["latency_ms"]
    return msg


def call(node, client, timeout, **fields):
    future = client.call_async(AddCategories.Request(**fields))
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done():
        print("FAIL no AddCategories response within", timeout, "s", flush=True)
        sys.exit(3)
    r = future.result()
    return {"success": r.success, "message": r.message,
            "category_ids": list(r.category_ids), "version": r.version}


def main():
    lifetime, step_timeout, spec = float(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
    deadline = time.monotonic() + lifetime
    stop = threading.Event()
    # The test writes STOP (or closes stdin, e.g. when it dies) to end this process.
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    rclpy.init(args=sys.argv)
    node = Node("stub_client")
    try:
        pub = node.create_publisher(PanopticSegmentation, "panoptic", 10)
        t0 = time.monotonic()
        while pub.get_subscription_count() < 1:
            if time.monotonic() - t0 > step_timeout:
                print("FAIL no subscriber matched within", step_timeout, "s", flush=True)
                sys.exit(2)
            rclpy.spin_once(node, timeout_sec=0.05)
        print("MATCHED", round(time.monotonic() - t0, 3), flush=True)
        msg = build_message(spec)
        pub.publish(msg)
        published = 1
        print("PUBLISHED", published, flush=True)

        client = node.create_client(AddCategories, "add_categories")
        if not client.wait_for_service(timeout_sec=step_timeout):
            print("FAIL add_categories not available within", step_timeout, "s", flush=True)
            sys.exit(2)
        t1 = time.monotonic()
        good = call(node, client, step_timeout, names=["purple star", "orange ring"],
                    isthing=[True, False])
        good["round_trip_ms"] = round(1e3 * (time.monotonic() - t1), 2)
        print("RESPONSE", json.dumps(good), flush=True)
        bad = call(node, client, step_timeout, names=["teal moon"], isthing=[True, False])
        print("RESPONSE", json.dumps(bad), flush=True)

        # Belt and braces: republish once a second until told to stop, in case the first
        # sample was dropped before the subscriber's side of the match completed.
        next_publish = time.monotonic() + 1.0
        while not stop.is_set() and time.monotonic() < deadline and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
            if time.monotonic() >= next_publish:
                pub.publish(msg)
                published += 1
                next_publish += 1.0
                print("PUBLISHED", published, flush=True)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


main()
'''

SPEC = {
    "frame_id": "camera_optical",
    "stamp": [1_700_000_123, 456_789_000],
    # 4 x 6 id image: 0 void, 1 and 2 "things", 3 "stuff" (full int32 range exercised by 3).
    "id_image": [[0, 1, 1, 0, 3, 3],
                 [0, 1, 1, 0, 3, 3],
                 [2, 2, 0, 0, 3, 3],
                 [2, 2, 0, 0, 0, 0]],
    "segments": [
        {"id": 1, "category_id": 11, "label": "red circle", "score": 0.75, "isthing": True,
         "area": 4, "bbox_x": 1, "bbox_y": 0, "bbox_width": 2, "bbox_height": 2},
        {"id": 2, "category_id": 1002, "label": "purple star", "score": 0.5, "isthing": True,
         "area": 4, "bbox_x": 0, "bbox_y": 2, "bbox_width": 2, "bbox_height": 2},
        {"id": 3, "category_id": 200, "label": "grass", "score": 0.25, "isthing": False,
         "area": 6, "bbox_x": 4, "bbox_y": 0, "bbox_width": 2, "bbox_height": 3},
    ],
    "category_set_version": 7,
    "latency_ms": [1.5, 20.25, 3.0],
}


@pytest.mark.timeout(240)
def test_panoptic_message_and_add_categories_between_two_processes():
    from rclpy.serialization import deserialize_message
    from zsp_msgs.msg import PanopticSegmentation

    from zsp_ros.node.raw_image import image_to_numpy

    ns_args = ["--ros-args", "-r", f"__ns:={unique_namespace('zsp_e2e')}"]
    with ExitStack() as stack:                 # stops (SIGINT/TERM/KILL) both children on exit
        server = stack.enter_context(spawn_python(
            name="server", source=SERVER, args=[str(CHILD_LIFETIME_S), *ns_args]))
        server.wait_for_line("READY", timeout=TIMEOUT_S)
        client = stack.enter_context(spawn_python(
            name="client", source=CLIENT,
            args=[str(CHILD_LIFETIME_S), str(TIMEOUT_S), json.dumps(SPEC), *ns_args]))
        client.wait_for_line("MATCHED", timeout=TIMEOUT_S + 30)

        good = json.loads(client.wait_for_line("RESPONSE", timeout=2 * TIMEOUT_S))
        bad = json.loads(client.wait_for_line("RESPONSE", timeout=TIMEOUT_S))
        cdr = server.wait_for_line("PANOPTIC", timeout=TIMEOUT_S)
        client.send_line("STOP")
        assert client.wait_exit(timeout=TIMEOUT_S) == 0, client.transcript
        requests = [json.loads(r) for r in server.lines_starting_with("REQUEST")]

    # The service: both requests reached the stub intact; responses came back.
    assert requests == [{"names": ["purple star", "orange ring"], "isthing": [True, False]},
                        {"names": ["teal moon"], "isthing": [True, False]}]
    assert good["success"] is True
    assert good["category_ids"] == [1001, 1002] and good["version"] == 1
    assert good["message"] == "added purple star, orange ring"
    assert bad["success"] is False and bad["category_ids"] == [] and bad["version"] == 1
    assert "isthing has 2 entries but names has 1" in bad["message"]

    # The topic: what crossed DDS, field by field.
    msg = deserialize_message(base64.b64decode(cdr), PanopticSegmentation)
    assert msg.header.frame_id == SPEC["frame_id"]
    assert [msg.header.stamp.sec, msg.header.stamp.nanosec] == SPEC["stamp"]
    assert msg.id_image.header == msg.header
    assert msg.id_image.encoding == "32SC1"
    assert (msg.id_image.height, msg.id_image.width, msg.id_image.step) == (4, 6, 24)
    ids = image_to_numpy(msg.id_image)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, np.asarray(SPEC["id_image"], np.int32))
    got_segments = [{k: getattr(s, k) for k in spec} for s, spec in zip(msg.segments, SPEC["segments"])]
    assert got_segments == SPEC["segments"]     # scores are exact in float32 (k/4)
    for seg in msg.segments:                    # the segments describe the id image
        assert seg.area == int((ids == seg.id).sum())
        ys, xs = np.nonzero(ids == seg.id)
        assert (seg.bbox_x, seg.bbox_y) == (xs.min(), ys.min())
        assert (seg.bbox_width, seg.bbox_height) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert msg.category_set_version == SPEC["category_set_version"]
    assert [msg.preprocess_ms, msg.model_ms, msg.postprocess_ms] == SPEC["latency_ms"]
