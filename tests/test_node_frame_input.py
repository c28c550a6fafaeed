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


# (message, cause, found by the header check alone)
MALFORMED = [
    (lambda: _image(encoding="yuv422_weird"), "encoding", True),
    (lambda: _image(encoding="32FC1", step=24, data=[0] * 96), "encoding", True),    # not a picture
    (lambda: _image(height=0, width=0, step=0, data=[]), "empty", True),
    (lambda: _image(step=5), "step", True),
    (lambda: _image(data=[0] * 10), "size", True),
    (lambda: _compressed("jpeg", b""), "empty", True),
    (lambda: _compressed("jpeg", b"\xff\xd8garbage"), "compressed", False),        # only decoding tells
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
    lambda: numpy_to_image(np.zeros((3, 5), np.uint16), "mono16"),
    lambda: _compressed("jpeg", b"\xff\xd8garbage"),                          # only decoding tells
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
    stats.on_failed()
    for k in range(6):                                      # 6 frames, 0.5 s apart
        now[0] = 100.0 + 0.5 * k
        stats.on_processed({"model": 10.0 * (k + 1), "node": 1.0, "unknown": 5.0})
    snap = stats.snapshot()
    assert snap["frames_received"] == 2 and snap["frames_dropped"] == 1 and snap["frames_processed"] == 6
    assert snap["frames_malformed"] == 3 and snap["malformed_step"] == 2 and snap["malformed_size"] == 1
    assert snap["frames_failed"] == 1
    assert snap["rate_hz"] == pytest.approx(2.0)
    assert snap["latency_model_ms_p50"] == pytest.approx(45.0)      # window of 4: 30, 40, 50, 60
    now[0] = 200.0
    assert stats.snapshot()["rate_hz"] == 0.0                        # nothing recent
