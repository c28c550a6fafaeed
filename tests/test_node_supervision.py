"""zsp_node keeps working and says how it is: a supervised inference thread, a heartbeat in
/diagnostics, a rate cap that reacts at once, service queues that serve bursts, and categories that
survive cleanup -> configure without a state directory. The node runs as its own process (the quadrant
kit of tests/node_fixtures.py); its network is poisoned through a file (ZSP_TEST_POISON)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from node_fixtures import NODE_PROGRAM, TESTS_DIR, make_quadrant_kit, node_args
from ros_helpers import spawn_python, unique_namespace

TIMEOUT_S = 90.0
pytestmark = pytest.mark.timeout(400)
IMAGE = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
FAST_FIT = {"optimizer": "adam", "steps": 30, "lr": 0.02}
# max_rate_hz:=0 is an integer on purpose: a double parameter must accept it (the node would not start).
NODE_PARAMS = {"backend": "quadrant-test", "object_mask_threshold": 0.5, "diagnostics_period_s": 0.25,
               "stall_warn_s": 1.0, "stall_error_s": 3.0, "max_rate_hz": 0, "autostart": True,
               "image_transport": "compressed"}      # the camera below sends PNGs: bombs come the same way
OK, WARN, ERROR = 0, 1, 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage
    from zsp_msgs.msg import PanopticSegmentation

    from zsp_ros.node.client import ZspClient

    root = tmp_path_factory.mktemp("supervision")
    kit = make_quadrant_kit(root, fit_kwargs=FAST_FIT)
    poison = root / "poison"
    namespace = unique_namespace("zsp_node_supervision")
    node = spawn_python(name="zsp_node", source=NODE_PROGRAM, args=node_args(namespace, kit=str(kit), **NODE_PARAMS),
                        env_extra={"ZSP_TEST_DIR": str(TESTS_DIR), "ZSP_TEST_POISON": str(poison)})
    client = ZspClient(namespace=namespace, name="zsp_supervision_client")
    camera = Camera(client.node.create_publisher(CompressedImage, "image/compressed", 10))
    try:
        client.subscribe("panoptic", PanopticSegmentation)
        client.subscribe("/diagnostics", DiagnosticArray)
        node.wait_for_line("[INFO]", timeout=TIMEOUT_S)
        yield {"node": node, "client": client, "camera": camera, "poison": poison}
    finally:
        camera.stop()
        poison.unlink(missing_ok=True)
        client.close()
        node.stop()


class Camera:
    """Publishes IMAGE (as a PNG CompressedImage) at ``rate_hz`` from a thread while running; stamps sec = a counter."""

    def __init__(self, publisher) -> None:
        from zsp_ros.node.compressed_image import numpy_to_compressed

        self.publisher, self.msg, self.stamp = publisher, numpy_to_compressed(IMAGE, "rgb8", format="png"), 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self) -> int:
        self.stamp += 1
        self.msg.header.stamp.sec = self.stamp
        self.publisher.publish(self.msg)
        return self.stamp

    def start(self, rate_hz: float = 10.0) -> None:
        self._stop.clear()

        def run():
            while not self._stop.wait(1.0 / rate_hz):
                self.send()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None


def level_of(status) -> int:
    level = status.level
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


def diagnostics(world, predicate, *, timeout=TIMEOUT_S):
    """The first /diagnostics report from now on whose (level, values, message) satisfies ``predicate``."""
    client = world["client"]
    after = len(client.messages("/diagnostics"))

    def check(msg):
        status = msg.status[0]
        return predicate(level_of(status), {kv.key: kv.value for kv in status.values}, status.message)
    msg = client.wait_for("/diagnostics", check, timeout=timeout, after=after)
    status = msg.status[0]
    return level_of(status), {kv.key: kv.value for kv in status.values}, status.message


def results_after(world, t: float) -> list:
    return [m for at, m in world["client"].received["panoptic"] if at > t]


def wait_results(world, since: float, count: int = 1, *, timeout=TIMEOUT_S) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = results_after(world, since)
        if len(got) >= count:
            return got
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} results after {since}")


def healthy(world, *, timeout=TIMEOUT_S):
    """Camera running; wait for an OK report counting a processed frame; return its values."""
    return diagnostics(world, lambda lvl, v, m: lvl == OK and float(v["last_processed_age_s"]) >= 0
                       and v["inference_thread_alive"] == "True", timeout=timeout)[1]


# ---------------------------------------------------------------------------------------- tests

def test_node_took_an_integer_for_a_double_parameter_and_processes_frames(world):
    world["camera"].start()
    try:
        t0 = time.time()
        wait_results(world, t0)
        values = healthy(world)
        assert values["inference_thread_restarts"] == "0" and float(values["stalled_s"]) < 1.0
        for name, value in (("max_rate_hz", 0), ("stall_warn_s", 1), ("stall_error_s", 3)):   # ints, at runtime
            result = world["client"].set_parameter(name, value, timeout=TIMEOUT_S)
            assert result.successful, (name, result.reason)
    finally:
        world["camera"].stop()


def test_failing_frames_turn_the_status_warn_then_error_and_it_recovers(world):
    camera, poison = world["camera"], world["poison"]
    camera.start()
    try:
        healthy(world)
        poison.write_text("raise")
        level, values, message = diagnostics(world, lambda lvl, v, m: lvl == ERROR)
        assert int(values["failed_RuntimeError"]) >= 1 and float(values["stalled_s"]) > 3.0, values
        assert "none was processed" in message and values["inference_thread_alive"] == "True"
        poison.unlink()
        t_clear = time.time()
        values = healthy(world)
        assert wait_results(world, t_clear)
        assert float(values["stalled_s"]) < 1.0
    finally:
        camera.stop()
        poison.unlink(missing_ok=True)
    log = world["node"].transcript
    assert 1 <= log.count("frame failed in segment: RuntimeError: poisoned by the test") <= 3   # throttled


def test_a_hung_model_shows_as_a_stall_with_the_thread_alive(world):
    camera, poison = world["camera"], world["poison"]
    camera.start()
    try:
        healthy(world)
        poison.write_text("sleep 5")
        level, values, message = diagnostics(world, lambda lvl, v, m: lvl == WARN and "none was processed" in m)
        assert values["inference_thread_alive"] == "True"
        poison.unlink()
        healthy(world)
    finally:
        camera.stop()
        poison.unlink(missing_ok=True)


def test_a_dead_inference_thread_is_restarted(world):
    camera, poison = world["camera"], world["poison"]
    camera.start()
    try:
        healthy(world)
        poison.write_text("die")
        level, values, message = diagnostics(world, lambda lvl, v, m: lvl == ERROR and "died" in m)
        assert "PoisonPill" in message and int(values["inference_thread_restarts"]) >= 1
        poison.unlink()
        t_clear = time.time()
        values = healthy(world)
        assert wait_results(world, t_clear) and int(values["inference_thread_restarts"]) >= 1
    finally:
        camera.stop()
        poison.unlink(missing_ok=True)
    assert "the inference thread died (PoisonPill: the test ends the inference thread); restarting it" \
        in world["node"].transcript


def test_bombs_and_broken_frames_are_refused_and_the_node_keeps_processing(world):
    """Frames over the size limits are refused from their header (cause too_large), a stream broken past
    its header fails in the inference thread (cause compressed); the thread lives on, no restart."""
    from compressed_samples import encode, message, png, png_chunk, png_of_zeros, sample_rgb, zlib_of_zeros
    from sensor_msgs.msg import CompressedImage

    client, camera = world["client"], world["camera"]
    compressed = client.node.create_publisher(CompressedImage, "image/compressed", 10)
    jpeg = encode(sample_rgb(64, 64), "jpeg")
    before = diagnostics(world, lambda lvl, v, m: True)[1]
    bad = {
        "too_large": [message(png_of_zeros(20000, 20000), "png"),                     # 388 KB -> 400 MB
                      message(png(8, 8, zlib_of_zeros(8 * 9), extra=png_chunk(
                          b"zTXt", b"Comment\x00\x00" + zlib_of_zeros(4 << 20))), "png")],     # 4 MB of text
        "compressed": [message(jpeg[: len(jpeg) // 2], "jpeg")],                      # whole header, half a scan
    }
    for cause, messages in bad.items():
        want = int(before.get(f"malformed_{cause}", 0)) + len(messages)
        for _attempt in range(10):
            for msg in messages:
                compressed.publish(msg)
            try:
                diagnostics(world, lambda lvl, v, m, key=f"malformed_{cause}", want=want: int(v.get(key, 0)) >= want,
                            timeout=5.0)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError(f"malformed_{cause} never counted")
    assert client.set_parameter("max_input_pixels", 1000, timeout=TIMEOUT_S).successful   # the camera's 3072 px: too many
    stamp = camera.send()
    want = int(before.get("malformed_too_large", 0)) + 3
    diagnostics(world, lambda lvl, v, m: int(v.get("malformed_too_large", 0)) >= want)
    assert client.set_parameter("max_input_pixels", 16777216, timeout=TIMEOUT_S).successful
    camera.start()
    try:
        t0 = time.time()
        assert wait_results(world, t0)
        values = healthy(world)
        assert values["inference_thread_restarts"] == before["inference_thread_restarts"]
        assert values["frames_failed"] == before["frames_failed"] and values["inference_thread_alive"] == "True"
    finally:
        camera.stop()
    assert stamp not in {m.header.stamp.sec for m in client.messages("panoptic")}      # the refused frame


def test_a_rate_cap_change_applies_within_a_second(world):
    client, camera = world["client"], world["camera"]
    camera.start(rate_hz=20.0)
    try:
        wait_results(world, time.time())
        assert client.set_parameter("max_rate_hz", 0.01, timeout=TIMEOUT_S).successful
        time.sleep(1.0)                                  # the frame in flight, if any, comes back
        t_capped = time.time()
        time.sleep(2.0)
        assert len(results_after(world, t_capped)) <= 1   # one frame per 100 s
        level, _, _ = diagnostics(world, lambda lvl, v, m: True)
        assert level == OK                               # a capped rate is not a stall
        assert client.set_parameter("max_rate_hz", 0, timeout=TIMEOUT_S).successful    # an int again
        t_uncapped = time.time()
        first = wait_results(world, t_uncapped, timeout=10.0)
        arrived = next(at for at, m in client.received["panoptic"] if m is first[0])
        print(f"first result {arrived - t_uncapped:.2f} s after max_rate_hz went back to 0")
        assert arrived - t_uncapped < 1.0
    finally:
        camera.stop()


def test_bursts_of_service_requests_are_all_answered(world):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from zsp_msgs.srv import AddCategories, ListCategories

    node = world["client"].node
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE)
    lister = node.create_client(ListCategories, "list_categories", qos_profile=qos)
    adder = node.create_client(AddCategories, "add_categories", qos_profile=qos)
    assert lister.wait_for_service(timeout_sec=TIMEOUT_S) and adder.wait_for_service(timeout_sec=TIMEOUT_S)
    version = world["client"].list_categories(timeout=TIMEOUT_S).category_set.version

    def gather(futures, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(f.done() for f in futures):
            time.sleep(0.05)
        return [f.result() for f in futures if f.done()]

    t0 = time.monotonic()
    lists = gather([lister.call_async(ListCategories.Request()) for _ in range(100)], 60.0)
    print(f"100 list_categories answered in {time.monotonic() - t0:.2f} s")
    assert len(lists) == 100 and all(r.success and r.category_set.version == version for r in lists)

    names = [f"burst {chr(ord('a') + k)}" for k in range(24)]
    t0 = time.monotonic()
    adds = gather([adder.call_async(AddCategories.Request(names=[n])) for n in names], 240.0)
    print(f"24 add_categories answered in {time.monotonic() - t0:.2f} s")
    assert len(adds) == 24 and all(r.success for r in adds), [r.message for r in adds if not r.success]
    assert sorted(r.version for r in adds) == list(range(version + 1, version + 25))
    assert len({r.category_ids[0] for r in adds}) == 24
    node.destroy_client(lister)
    node.destroy_client(adder)


def test_without_state_dir_cleanup_and_configure_keep_version_and_never_reuse_ids(world):
    client = world["client"]

    def restart():
        for transition in ("deactivate", "cleanup", "configure", "activate"):
            assert client.change_state(transition, timeout=TIMEOUT_S), transition

    before = client.list_categories(timeout=TIMEOUT_S)
    added = client.add_categories(["orange ring"], timeout=TIMEOUT_S)
    assert added.success and added.version == before.category_set.version + 1
    ring_id = added.category_ids[0]
    assert ring_id > max(c.id for c in before.category_set.categories)

    restart()
    after = client.list_categories(timeout=TIMEOUT_S)
    assert after.category_set.version == added.version
    assert [c.name for c in after.category_set.categories][-1] == "orange ring"
    removed = client.remove_categories(["orange ring"], timeout=TIMEOUT_S)
    assert removed.success and removed.version == added.version + 1

    restart()
    again = client.add_categories(["orange ring"], timeout=TIMEOUT_S)
    assert again.success and again.version == removed.version + 1
    assert again.category_ids[0] == ring_id + 1                 # a fresh id, never the removed one
    assert "state in memory (kept across cleanup)" in world["node"].transcript
