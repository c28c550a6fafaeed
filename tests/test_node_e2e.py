"""zsp_node end to end: the node runs as its own process; this test talks to it over DDS.

One node process serves the module's tests in order (lifecycle → frames → categories → bad input
→ fuzz); the last test stops it and starts a second one on the same state directory (autostart)
to check that added categories persist (that one through `zsp node`). The kit is the "quadrant kit" of tests/node_fixtures.py,
so the expected labels are known exactly.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from node_fixtures import NODE_PROGRAM, TESTS_DIR, make_quadrant_kit, node_args
from ros_helpers import spawn_python, unique_namespace

TIMEOUT_S = 90.0          # per step; generous: 2 shared cores
pytestmark = pytest.mark.timeout(300)

H, W = 48, 64
IMAGE = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
NODE_PARAMS = {"backend": "quadrant-test", "object_mask_threshold": 0.5, "diagnostics_period_s": 0.5}


def start_node(namespace: str, kit, state_dir, *, entry: str = "zsp_node", **extra):
    return spawn_python(name="zsp_node", source=NODE_PROGRAM,
                        args=node_args(namespace, kit=str(kit), state_dir=str(state_dir), **NODE_PARAMS, **extra),
                        env_extra={"ZSP_TEST_DIR": str(TESTS_DIR), "ZSP_TEST_ENTRY": entry})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(kit dir, state dir, namespace, node process, client) shared by the module's tests."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from zsp_msgs.msg import CategorySet, PanopticSegmentation

    root = tmp_path_factory.mktemp("node")
    kit = make_quadrant_kit(root)
    state_dir = root / "state"
    namespace = unique_namespace("zsp_node_e2e")
    node = start_node(namespace, kit, state_dir)
    from zsp_ros.node.client import ZspClient

    client = ZspClient(namespace=namespace, name="zsp_test_client")
    try:
        for topic, msg_type in (("panoptic", PanopticSegmentation), ("semantic", Image), ("overlay", Image),
                                ("color_mask", Image),
                                ("/diagnostics", DiagnosticArray)):
            client.subscribe(topic, msg_type)
        client.subscribe("category_set", CategorySet,
                         QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.TRANSIENT_LOCAL))
        yield {"kit": kit, "state_dir": state_dir, "ns": namespace, "node": node, "client": client,
               "pub": client.node.create_publisher(Image, "image", 10)}
    finally:
        client.close()
        node.stop()


_stamp = iter(range(1, 10**6))


def send(world, image=IMAGE, *, encoding="rgb8", mutate=None) -> int:
    """Publish one Image with a fresh stamp (sec = a counter); return that stamp."""
    from zsp_ros.node.raw_image import numpy_to_image

    msg = numpy_to_image(image, encoding)
    msg.header.stamp.sec, msg.header.frame_id = next(_stamp), "camera_optical"
    if mutate is not None:
        mutate(msg)
    world["pub"].publish(msg)
    return msg.header.stamp.sec


def result_for(world, stamp: int, *, timeout: float = TIMEOUT_S):
    """The panoptic result of frame ``stamp``, re-sending nothing (the subscription is best effort,
    so callers retry via `segment`)."""
    return world["client"].wait_for("panoptic", lambda m: m.header.stamp.sec == stamp, timeout=timeout)


def segment(world, image=IMAGE, *, tries: int = 5):
    """Send a frame until its result comes back (best-effort input may drop a frame); return it."""
    for attempt in range(tries):
        stamp = send(world, image)
        try:
            return result_for(world, stamp, timeout=TIMEOUT_S / tries if attempt < tries - 1 else TIMEOUT_S)
        except TimeoutError:
            continue
    raise AssertionError("no panoptic result")


def change_state(world, label: str) -> bool:
    return world["client"].change_state(label, timeout=TIMEOUT_S)


def get_state(world) -> str:
    return world["client"].get_state(timeout=TIMEOUT_S)


def set_param(world, name: str, value):
    return world["client"].set_parameter(name, value, timeout=TIMEOUT_S)


def add(world, names, isthing=()):
    return world["client"].add_categories(list(names), list(isthing), timeout=TIMEOUT_S)


def remove(world, names=(), ids=()):
    return world["client"].remove_categories(list(names), list(ids), timeout=TIMEOUT_S)


def listing(world):
    return world["client"].list_categories(timeout=TIMEOUT_S)


def names_of(response) -> list[str]:
    return [c.name for c in response.category_set.categories]


# ---------------------------------------------------------------------------------------- tests

def test_lifecycle_transitions_and_parameter_checks(world):
    assert get_state(world) == "unconfigured"
    before = listing(world)
    assert not before.success and "unconfigured" in before.message and "configure" in before.message
    assert not add(world, ["purple star"]).success

    bad = set_param(world, "device", "gpu0")
    assert not bad.successful and "device" in bad.reason and "cuda:N" in bad.reason
    bad = set_param(world, "input_reliability", "sometimes")
    assert not bad.successful and "best_effort, reliable" in bad.reason

    assert change_state(world, "configure") and get_state(world) == "inactive"
    refused = set_param(world, "backend", "torch")
    assert not refused.successful and "read at configure" in refused.reason
    assert set_param(world, "publish_semantic", False).successful      # live parameters may change
    assert set_param(world, "publish_semantic", True).successful
    assert change_state(world, "activate") and get_state(world) == "active"
    info = world["client"].wait_for("category_set", timeout=TIMEOUT_S)   # transient local: late joiners get it
    assert info.version == 1 and [c.name for c in info.categories] == ["red circle", "green square",
                                                                         "blue star", "grass"]


def test_image_in_panoptic_out_with_same_header_and_consistent_segments(world):
    from zsp_ros.drawing.palette import category_color
    from zsp_ros.node.messages import panoptic_from_message, segments_consistent
    from zsp_ros.node.raw_image import image_to_numpy

    result = segment(world)
    assert result.header.frame_id == "camera_optical"
    assert result.id_image.header == result.header
    ids, segments = panoptic_from_message(result)
    assert ids.shape == (H, W) and result.id_image.encoding == "16UC1"
    assert segments_consistent(ids, segments) == []
    assert sorted(s["label"] for s in segments) == ["blue star", "grass", "red circle"]
    top_left = next(s for s in segments if s["label"] == "red circle")
    assert ids[0, 0] == top_left["id"] and top_left["isthing"]
    assert result.category_set_version == 1 and result.model_ms > 0

    stamp = result.header.stamp.sec
    client = world["client"]
    overlay = client.wait_for("overlay", lambda m: m.header.stamp.sec == stamp, timeout=TIMEOUT_S)
    semantic = client.wait_for("semantic", lambda m: m.header.stamp.sec == stamp, timeout=TIMEOUT_S)
    assert overlay.encoding == "rgb8" and image_to_numpy(overlay).shape == (10 * H, 10 * W, 3)   # overlay_min_side 480
    mask = client.wait_for("color_mask", lambda m: m.header.stamp.sec == stamp, timeout=TIMEOUT_S)
    colours = image_to_numpy(mask)
    assert mask.encoding == "rgb8" and colours.shape == (H, W, 3)
    assert (colours[0, 0] == category_color(top_left["category_id"])).all()
    assert semantic.encoding == "16UC1"
    sem = image_to_numpy(semantic)
    assert sem[0, 0] == top_left["category_id"] and sem[-1, 0] == 7      # 7 = grass


def test_add_category_bumps_category_set_and_appears_while_frames_flow(world):
    client = world["client"]
    answer: dict = {}
    thread = threading.Thread(target=lambda: answer.update(r=add(world, ["purple star"], [True])))
    t_start = time.time()
    thread.start()
    while thread.is_alive():                   # keep the camera running while the head is refitted
        send(world)
        time.sleep(0.05)
    thread.join()
    t_end = time.time()
    response = answer["r"]
    assert response.success, response.message
    assert response.version == 2 and len(response.category_ids) == 1
    new_id = response.category_ids[0]
    assert new_id == 8 and "purple star" in response.message     # max(kit ids)=7, so 8
    during = [m for t, m in client.received["panoptic"] if t_start < t < t_end]
    print(f"add took {t_end - t_start:.2f} s; {len(during)} results during it")
    assert len(during) >= 2, f"{len(during)} frames came back during the {t_end - t_start:.2f} s add"
    assert {m.category_set_version for m in during} <= {1, 2}

    info = client.wait_for("category_set", lambda m: m.version == 2, timeout=TIMEOUT_S)
    added = [c for c in info.categories if c.name == "purple star"]
    assert len(added) == 1 and added[0].id == new_id and added[0].origin == added[0].ORIGIN_ADDED

    result = segment(world)
    assert result.category_set_version == 2
    labels = {s.label: s.category_id for s in result.segments}
    assert labels.get("purple star") == new_id and "blue star" not in labels


def test_malformed_images_are_counted_logged_once_and_skipped(world):
    """Every kind of bad frame is counted under its cause, logged once per cause (not per frame), and
    the node keeps segmenting. Bad raw frames are rejected in the subscription callback; a compressed
    frame that does not decode is found by the inference thread, so a newer frame may replace it
    before it is looked at (by design: newest frame wins) - hence each cause is re-sent until counted."""
    from zsp_ros.node.zsp_node import LOG_PERIOD_S

    def set_(**fields):
        return lambda m: [setattr(m, k, v) for k, v in fields.items()]

    bad = {"encoding": lambda: send(world, mutate=set_(encoding="yuv-unknown")),
           "step": lambda: send(world, mutate=set_(step=7)),
           "size": lambda: send(world, mutate=lambda m: setattr(m, "data", m.data[: len(m.data) // 2])),
           "empty": lambda: send(world, mutate=set_(height=0, width=0, step=0, data=[]))}   # compressed: test_node_transport

    def counts(msg):
        return {kv.key: kv.value for kv in msg.status[0].values}

    client = world["client"]
    started = time.monotonic()
    for cause, publish in bad.items():
        for _ in range(3):                                   # a burst: one log line, three counts
            publish()
            time.sleep(0.05)
        for _attempt in range(10):
            try:
                client.wait_for("/diagnostics", lambda m, cause=cause: int(counts(m).get(f"malformed_{cause}", 0)) >= 1,
                                timeout=TIMEOUT_S / 10, after=0)
                break
            except TimeoutError:
                publish()
        else:
            raise AssertionError(f"malformed_{cause} never counted")
    elapsed = time.monotonic() - started

    good = segment(world)                                   # the node still works
    assert {s.label for s in good.segments} >= {"red circle", "grass"}
    diag = client.wait_for("/diagnostics", lambda m: int(counts(m).get("frames_processed", 0)) >= 1
                           and all(int(counts(m).get(f"malformed_{c}", 0)) >= 1 for c in bad), timeout=TIMEOUT_S)
    values = counts(diag)
    assert int(values["frames_malformed"]) >= 4 and int(values["category_set_version"]) == 2
    assert float(values["latency_model_ms_p50"]) > 0 and "rate_hz" in values
    log = world["node"].transcript
    allowed = 1 + int(elapsed // LOG_PERIOD_S)              # once per cause per log period
    for cause in bad:
        lines = log.count(f"skipping malformed image ({cause})")
        assert 1 <= lines <= allowed, (cause, lines, log)


def test_service_fuzz_fails_clearly_and_keeps_state(world):
    before = listing(world)
    assert before.success and before.category_set.version == 2

    cases = {
        "empty list": ([], "no names given"),
        "empty name": ([""], "is empty"),
        "blank name": (["   "], "is empty"),
        "duplicate in request": (["pink moon", "Pink Moon"], "more than once"),
        "already a category": (["red circle"], "already a category"),
        "10,000 characters": (["x" * 10_000], "10000 characters long"),
        "control character": (["bad\u0007name"], "non-printable"),
    }
    for what, (names, expected) in cases.items():
        r = add(world, names)
        assert not r.success and expected in r.message, (what, r.message)
        assert list(r.category_ids) == [] and r.version == 2, what
    r = add(world, ["orange ring", "white cross"], [True])
    assert not r.success and "isthing has 1 values for 2 names" in r.message

    for names, ids, expected in ((["no such thing"], [], "unknown category 'no such thing'"),
                                 ([], [9999], "unknown category id 9999"), ([], [], "no categories given")):
        r = remove(world, names, ids)
        assert not r.success and expected in r.message and r.version == 2

    after = listing(world)
    assert names_of(after) == names_of(before) and after.category_set.version == 2

    # Non-ASCII printable names are names like any other.
    r = add(world, ["grüner stern"])
    assert r.success, r.message
    assert r.version == 3

    # Concurrent calls: every one is answered; the valid ones get distinct ids; versions advance.
    requests = [["orange ring"], ["white cross"], ["orange ring"], [""], ["yellow star"]]
    answers: list = [None] * len(requests)
    threads = [threading.Thread(target=lambda i=i, n=n: answers.__setitem__(i, add(world, n)))
               for i, n in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3 * TIMEOUT_S)
    assert all(a is not None for a in answers)
    ok = [a for a in answers if a.success]
    assert len(ok) == 3, [a.message for a in answers]       # one "orange ring" loses, "" fails
    assert len({a.category_ids[0] for a in ok}) == 3 and sorted(a.version for a in ok) == [4, 5, 6]
    losers = [a.message for a in answers if not a.success]
    assert any("already a category" in m for m in losers) and any("is empty" in m for m in losers)

    r = remove(world, ["grüner stern"])
    assert r.success and r.version == 7 and len(r.removed_ids) == 1
    final = listing(world)
    assert names_of(final)[:5] == ["red circle", "green square", "blue star", "grass", "purple star"]
    assert sorted(names_of(final)[5:]) == ["orange ring", "white cross", "yellow star"]
    assert final.category_set.version == 7
    assert world["node"].proc.poll() is None                 # alive throughout
    assert segment(world).category_set_version == 7


def test_deactivate_cleanup_and_restart_keep_added_categories(world):
    expected = names_of(listing(world))
    assert change_state(world, "deactivate") and get_state(world) == "inactive"
    stamp = send(world)
    with pytest.raises(TimeoutError):
        result_for(world, stamp, timeout=3.0)               # inactive: no outputs
    assert change_state(world, "cleanup") and get_state(world) == "unconfigured"
    assert not listing(world).success

    assert set_param(world, "kit", "/nonexistent/kit").successful
    assert not change_state(world, "configure") and get_state(world) == "unconfigured"
    assert "cannot load model kit /nonexistent/kit" in world["node"].wait_for_line("[ERROR]", timeout=TIMEOUT_S)

    code = world["node"].stop(grace_s=30.0)                 # SIGINT: clean exit (slow on a loaded 2-core host)
    assert code == 0, f"exit code {code}; node output:\n{world['node'].transcript[-4000:]}"
    with start_node(world["ns"], world["kit"], world["state_dir"], entry="cli", autostart=True) as node:
        world["node"] = node
        node.wait_for_line("[INFO]", timeout=TIMEOUT_S)
        restored = listing(world)
        assert restored.success and names_of(restored) == expected and restored.category_set.version == 7
        result = segment(world)
        assert "purple star" in {s.label for s in result.segments}
        info = world["client"].wait_for("category_set", lambda m: m.version == 7, timeout=TIMEOUT_S)
        assert json.dumps(sorted(c.name for c in info.categories)) == json.dumps(sorted(expected))
