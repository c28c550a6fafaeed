"""The node's input side: a newest-frame mailbox, and how bad frames are named and logged.

`LatestFrame` sits between the image subscription callbacks (which ``put``) and the inference
thread (which ``take``s): it holds one frame, so a slow model always gets the newest frame and never
a queue of stale ones; a ``put`` that replaces a frame nobody took is a dropped frame, and counted.
Bounded intake: after a ``put`` the callback waits (`LatestFrame.wait_taken`) until the inference
thread has taken that frame, or at most `intake_refresh_s` (half the recent processing time, within
[INTAKE_REFRESH_MIN_S, INTAKE_REFRESH_MAX_S]). Meanwhile the executor takes no image message at all (the
image callbacks share one mutually exclusive callback group) and the subscription's KEEP_LAST depth-1
history keeps only the newest frame. So under a flood of any rate the node deserialises one frame per
processed frame plus one per refresh time (at most 3 per processed frame for models up to 0.5 s a frame,
at most 20 a second for any) instead of every frame (at 500 Hz of 640x480, rclpy's executor took a
quarter of a core from the model), while the frame waiting for the model is never more than that refresh
time older than the newest one, and is ready the moment the model is. The frames DDS overwrote meanwhile are counted as dropped from the publishers'
sequence numbers (`SequenceGaps`).

Frames whose header is malformed (`image_conversion.check_picture`) are rejected in the callback
and never enter the mailbox; only what needs decoding to be found bad (a corrupt JPEG) is found by
the inference thread, and so can be replaced before it is looked at.

`malformed_cause` maps an `ImageConversionError` to a short cause key ("encoding", "empty",
"step", "size", "compressed", "too_large"; "not_picture" for a well-formed depth frame refused by policy,
which the node counts as refused, not malformed), the unit in which malformed frames are counted and
logged: the error's own ``cause`` when it carries a known one, else read from its message.
`CauseThrottle` decides when a cause may be logged again: the first time at once, then at most
once per period (with the count of frames skipped since).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

INTAKE_REFRESH_MIN_S = 0.05  # a frame waiting in the mailbox is replaced by a newer one at most this often ...
INTAKE_REFRESH_MAX_S = 0.25  # ... and at least this often (frame_input's docstring)
MALFORMED_CAUSES = ("encoding", "empty", "step", "size", "compressed", "too_large", "not_picture", "other")

# (fragment of the ImageConversionError message, cause); the first match wins.
_CAUSE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("image too large", "too_large"),
    ("compresseddepth", "compressed"),
    ("not a valid", "compressed"),
    ("names no supported codec", "compressed"),
    ("signature", "compressed"),
    ("is not supported", "encoding"),
    ("cannot be shown as rgb", "encoding"),
    ("original encoding", "encoding"),
    ("empty", "empty"),
    ("step=", "step"),
    ("bytes but height x step", "size"),
    ("byte buffer", "size"),
)


def intake_refresh_s(processing_s: float) -> float:
    """How long an image callback waits for its frame to be taken before letting a newer one replace it:
    half the recent per-frame processing time ``processing_s``, within [INTAKE_REFRESH_MIN_S, INTAKE_REFRESH_MAX_S]."""
    return min(max(0.5 * processing_s, INTAKE_REFRESH_MIN_S), INTAKE_REFRESH_MAX_S)


def malformed_cause(error: BaseException) -> str:
    """The cause key (one of MALFORMED_CAUSES) of an image conversion error: its ``cause`` attribute
    when that is one of them (and not "other"), else found in its message."""
    given = getattr(error, "cause", None)
    if given in MALFORMED_CAUSES and given != "other":
        return str(given)
    text = str(error).lower()
    for fragment, cause in _CAUSE_PATTERNS:
        if fragment in text:
            return cause
    return "other"


class LatestFrame:
    """A one-slot mailbox: ``put`` replaces, ``take`` waits for a frame. Thread-safe.

    Items are whatever the producer puts (here: (message, receive time)).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when it replaced an item nobody took (a dropped frame)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify_all()          # the consumer, and producers in wait_taken
            return replaced

    def take(self, timeout: float) -> Any:
        """The newest item (removing it), or None after ``timeout`` seconds or once closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout=timeout)
            item, self._item = self._item, None
            if item is not None:
                self._cond.notify_all()      # a producer waiting in wait_taken
            return None if self._closed else item

    def wait_taken(self, item: Any, timeout: float) -> bool:
        """Block until ``item`` (put before) is no longer waiting (taken or replaced) or the mailbox is
        closed: True; False when it still waits after ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or self._item is not item, timeout=timeout)

    def close(self) -> None:
        """Wake any waiter; later ``take`` calls return None."""
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class SequenceGaps:
    """Frames a publisher sent that the node never took, from publication sequence numbers.

    ``skipped(publisher, sequence)`` -> how many of that publisher's frames lie between its previous
    frame taken and this one (0 for its first frame, and when the middleware gives no sequence number).
    Remembers at most ``max_publishers`` publishers (the least recently seen is forgotten). Thread-safe.
    """

    def __init__(self, *, max_publishers: int = 64) -> None:
        self.max_publishers = int(max_publishers)
        self._last: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def skipped(self, publisher: bytes | None, sequence: int | None) -> int:
        if publisher is None or sequence is None:
            return 0
        with self._lock:
            last = self._last.pop(publisher, None)     # re-inserted last: the dict is in recency order
            self._last[publisher] = int(sequence) if last is None else max(last, int(sequence))
            while len(self._last) > self.max_publishers:
                self._last.pop(next(iter(self._last)))
        return 0 if last is None else max(int(sequence) - last - 1, 0)


def message_origin(info: Any) -> tuple[bytes | None, int | None]:
    """(publisher gid bytes, publication sequence number) of rclpy's MessageInfo, None where absent."""
    try:
        gid = info.get("publisher_gid") or {}
        data = gid.get("data")
        sequence = info.get("publication_sequence_number")
        return (bytes(data) if data is not None else None), (int(sequence) if sequence is not None else None)
    except (AttributeError, TypeError, ValueError):
        return None, None


class CauseThrottle:
    """Log each cause at once the first time, then at most once per ``period_s`` seconds.

    ``should_log(cause)`` returns None (stay quiet) or the number of occurrences since the last
    logged one (1 the first time), which the caller writes into the log line.
    """

    def __init__(self, *, period_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = float(period_s)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}
        self._lock = threading.Lock()

    def should_log(self, cause: str) -> int | None:
        now = self._clock()
        with self._lock:
            self._since[cause] = self._since.get(cause, 0) + 1
            last = self._last.get(cause)
            if last is not None and now - last < self.period_s:
                return None
            self._last[cause] = now
            count, self._since[cause] = self._since[cause], 0
            return count
