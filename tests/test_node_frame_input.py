"""The node's input side without ROS processes: malformed-frame causes from the real converter's
errors, the newest-frame mailbox, the per-cause log throttle, and the frame statistics."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from zsp_ros.node.frame_input import MALFORMED_CAUSES, CauseThrottle, LatestFrame, malformed_cause
from zsp_ros.node.frame_stats import FrameStats
from zsp_ros.node.image_conversion import check_picture, to_rgb8
from zsp_ros.node.image_encodings import ImageConversionError
from zsp_ros.node.raw_image import numpy_to_image


def _image(**fields):
    msg = numpy_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


def _compressed(fmt, data):
    from sensor_msgs.msg import CompressedImage
    return CompressedImage(format=fmt, data=list(data))


def _truncated_jpeg():
    """A JPEG whose headers are whole but whose scan data stops half way."""
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    return _compressed("jpeg", data[: len(data) // 2])


# (message, cause, found by the header check alone)
MALFORMED = [
    (lambda: _image(encoding="yuv422_weird"), "encoding", True),
    (lambda: _image(encoding="32FC1", step=24, data=[0] * 96), "not_picture", True),  # depth: refused by policy
    (lambda: _image(height=0, width=0, step=0, data=[]), "empty", True),
    (lambda: _image(step=5), "step", True),
    (lambda: _image(data=[0] * 10), "size", True),
    (lambda: _compressed("jpeg", b""), "empty", True),
    (lambda: _compressed("jpeg", b"\xff\xd8garbage"), "compressed", True),         # the header walk tells
    (lambda: _truncated_jpeg(), "compressed", False),                              # only decoding tells
    (lambda: _compressed("tiff", b"II*\x00"), "compressed", True),
    (lambda: _compressed("", b"nothing"), "compressed", True),
    (lambda: _compressed("16UC1; compressedDepth png", b"\x89PNG"), "compressed", True),
]


@pytest.mark.parametrize("msg, cause", [(m, c) for m, c, _ in MALFORMED])
def test_every_malformed_frame_kind_has_its_cause(msg, cause):
    with pytest.raises(ImageConversionError) as info:
        to_rgb8(msg())
    assert malformed_cause(info.value) == cause, str(info.value)


@pytest.mark.parametrize("msg, cause", [(m, c) for m, c, by_header in MALFORMED if by_header])
def test_header_check_rejects_what_conversion_rejects_with_the_same_cause(msg, cause):
    """The node's callback-side check: same error text (so the same cause) as the full conversion."""
    with pytest.raises(ImageConversionError) as checked:
        check_picture(msg())
    with pytest.raises(ImageConversionError) as converted:
        to_rgb8(msg())
    assert malformed_cause(checked.value) == cause and str(checked.value) == str(converted.value)


@pytest.mark.parametrize("msg", [
    lambda: _image(),
    lambda: _image(step=20, data=[0] * 80),                                   # padded rows
    lambda: numpy_to_image(np.zeros((3, 5), np.uint8), "mono8"),
    lambda: _truncated_jpeg(),                                                # only decoding tells
])
def test_header_check_passes_well_formed_headers(msg):
    check_picture(msg())


def test_unknown_messages_fall_back_to_other():
    assert malformed_cause(ImageConversionError("cosmic ray")) == "other"
    assert set(MALFORMED_CAUSES) >= {"encoding", "empty", "step", "size", "compressed", "other"}


def test_latest_frame_keeps_the_newest_and_counts_replacements():
    slot = LatestFrame()
    assert slot.take(timeout=0.01) is None
    assert slot.put("a") is False
    assert slot.put("b") is True          # "a" was never taken: dropped
    assert slot.take(timeout=0.01) == "b"
    assert slot.take(timeout=0.01) is None
    got = []
    waiter = threading.Thread(target=lambda: got.append(slot.take(timeout=5.0)))
    waiter.start()
    slot.put("c")
    waiter.join(timeout=5.0)
    assert got == ["c"]
    slot.put("d")
    slot.close()
    assert slot.take(timeout=0.01) is None
    closer = threading.Thread(target=lambda: got.append(slot.take(timeout=5.0)))
    closer.start()
    closer.join(timeout=5.0)
    assert got[-1] is None and not closer.is_alive()


def test_cause_throttle_logs_first_then_once_per_period_with_counts():
    now = [0.0]
    throttle = CauseThrottle(period_s=10.0, clock=lambda: now[0])
    assert throttle.should_log("step") == 1
    assert throttle.should_log("encoding") == 1           # causes are independent
    for t in (1.0, 2.0, 9.0):
        now[0] = t
        assert throttle.should_log("step") is None
    now[0] = 10.5
    assert throttle.should_log("step") == 4                 # 3 quiet ones + this
    assert throttle.should_log("step") is None


def test_frame_stats_snapshot():
    now = [100.0]
    stats = FrameStats(window=4, rate_window_s=5.0, clock=lambda: now[0])
    assert stats.snapshot()["rate_hz"] == 0.0 and "latency_model_ms_p50" not in stats.snapshot()
    stats.on_received(replaced=False)
    stats.on_received(replaced=True)
    stats.on_malformed("step")
    stats.on_malformed("step")
    stats.on_malformed("size")
    stats.on_failed("RuntimeError")
    stats.on_failed("RuntimeError")
    stats.on_failed("OSError")
    for k in range(6):                                      # 6 frames, 0.5 s apart
        now[0] = 100.0 + 0.5 * k
        stats.on_processed({"model": 10.0 * (k + 1), "node": 1.0, "unknown": 5.0})
    snap = stats.snapshot()
    assert snap["frames_received"] == 2 and snap["frames_dropped"] == 1 and snap["frames_processed"] == 6
    assert snap["frames_malformed"] == 3 and snap["malformed_step"] == 2 and snap["malformed_size"] == 1
    assert snap["frames_failed"] == 3 and snap["failed_RuntimeError"] == 2 and snap["failed_OSError"] == 1
    assert snap["rate_hz"] == pytest.approx(2.0)
    assert snap["latency_model_ms_p50"] == pytest.approx(45.0)      # window of 4: 30, 40, 50, 60
    now[0] = 200.0
    assert stats.snapshot()["rate_hz"] == 0.0                        # nothing recent


def test_heartbeat_counts_a_stall_only_while_a_received_frame_waits():
    now = [0.0]
    stats = FrameStats(clock=lambda: now[0])
    assert stats.heartbeat() == (None, 0.0)                  # nothing yet: no age, no stall
    now[0] = 10.0
    assert stats.heartbeat() == (None, 0.0)                  # an idle camera is not a stall
    stats.on_received(replaced=False)
    now[0] = 13.0
    assert stats.heartbeat() == (None, 3.0)
    stats.on_received(replaced=True)                         # later frames do not restart the clock
    now[0] = 14.0
    assert stats.heartbeat() == (None, 4.0)
    stats.on_processed({}, received=13.0)                    # the newest frame answered: nothing waits
    now[0] = 20.0
    assert stats.heartbeat() == (6.0, 0.0)
    stats.on_received(replaced=False)                        # at 20
    now[0] = 21.0
    stats.on_received(replaced=False)                        # at 21, while the one of 20 is processed
    now[0] = 22.0
    stats.on_processed({}, received=20.0)                    # the frame of 21 still waits, from now
    now[0] = 25.0
    assert stats.heartbeat() == (3.0, 3.0)


@pytest.mark.parametrize("kwargs, level, fragment", [
    ({}, "ok", ""),
    ({"stalled_s": 4.9}, "ok", ""),
    ({"stalled_s": 5.1}, "warn", "none was processed for 5.1 s"),
    ({"stalled_s": 15.1}, "error", "none was processed for 15.1 s"),
    ({"stalled_s": 15.1, "max_rate_hz": 0.1}, "warn", "none was processed"),      # one capped interval of slack
    ({"stalled_s": 5.1, "max_rate_hz": 0.1}, "ok", ""),
    ({"thread_alive": False}, "error", "not running"),
    ({"died": "KeyboardInterrupt: "}, "error", "died (KeyboardInterrupt: ) and was restarted"),
    ({"new_problems": 2}, "warn", "2 malformed, refused or failed frames"),
    ({"silence": "no frame on /cam for 5.0 s", "new_problems": 2}, "warn", "no frame on /cam"),
    ({"silence": "no frame on /cam for 5.0 s", "stalled_s": 15.1}, "error", "none was processed"),
])
def test_health_levels(kwargs, level, fragment):
    from zsp_ros.node.frame_stats import health

    args = {"thread_alive": True, "stalled_s": 0.0, "warn_s": 5.0, "error_s": 15.0, **kwargs}
    got, why = health(**args)
    assert got == level and fragment in why and (why == "") == (level == "ok")


def test_latest_frame_wait_taken_returns_when_taken_replaced_closed_or_timed_out():
    import time

    slot = LatestFrame()
    item = ("frame", 1)
    slot.put(item)
    t0 = time.monotonic()
    assert slot.wait_taken(item, timeout=0.05) is False and time.monotonic() - t0 >= 0.04   # nobody took it
    taker = threading.Timer(0.05, lambda: slot.take(timeout=1.0))
    taker.start()
    assert slot.wait_taken(item, timeout=5.0) is True                                       # taken
    newer = ("frame", 2)
    slot.put(newer)
    assert slot.put(("frame", 3)) is True and slot.wait_taken(newer, timeout=0.01) is True  # replaced
    waiting = ("frame", 3)
    slot.put(waiting)
    threading.Timer(0.05, slot.close).start()
    assert slot.wait_taken(waiting, timeout=5.0) is True                                    # closed


def test_sequence_gaps_count_frames_never_taken_per_publisher():
    from zsp_ros.node.frame_input import SequenceGaps, message_origin

    gaps = SequenceGaps(max_publishers=2)
    assert gaps.skipped(b"a", 1) == 0                    # first frame of a publisher
    assert gaps.skipped(b"a", 2) == 0
    assert gaps.skipped(b"a", 7) == 4                    # 3, 4, 5, 6 never taken
    assert gaps.skipped(b"b", 100) == 0 and gaps.skipped(b"b", 102) == 1
    assert gaps.skipped(b"a", 5) == 0                    # out of order: no negative counts
    assert gaps.skipped(None, 9) == 0 and gaps.skipped(b"a", None) == 0
    gaps.skipped(b"c", 1)                                # three publishers: the least recent ("b") goes
    assert gaps.skipped(b"b", 110) == 0
    info = {"publisher_gid": {"implementation_identifier": "rmw_fastrtps_cpp", "data": b"\x01\x02"},
            "publication_sequence_number": 12, "reception_sequence_number": None}
    assert message_origin(info) == (b"\x01\x02", 12)
    assert message_origin({}) == (None, None) and message_origin(None) == (None, None)


def test_frame_stats_counts_skipped_frames_as_dropped():
    stats = FrameStats()
    stats.on_received(replaced=False, skipped=3)
    stats.on_received(replaced=True, skipped=1)
    assert stats.snapshot()["frames_dropped"] == 5 and stats.snapshot()["frames_received"] == 2


def test_intake_refresh_is_half_the_processing_time_within_bounds():
    from zsp_ros.node.frame_input import INTAKE_REFRESH_MAX_S, INTAKE_REFRESH_MIN_S, intake_refresh_s

    assert intake_refresh_s(0.0) == INTAKE_REFRESH_MIN_S == 0.05
    assert intake_refresh_s(0.2) == pytest.approx(0.1)
    assert intake_refresh_s(30.0) == INTAKE_REFRESH_MAX_S == 0.25
