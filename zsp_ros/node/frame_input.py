"""The node's input side: a newest-frame mailbox, and how bad frames are named and logged.

`LatestFrame` sits between the image subscription callbacks (which only ``put``) and the
inference thread (which ``take``s): it holds one frame, so a slow model always gets the newest
frame and never a queue of stale ones; a ``put`` that replaces a frame nobody took is a dropped
frame, and counted. (The callbacks are cheap, so the subscription's own KEEP_LAST depth-1 history
rarely overwrites a frame before its callback runs; such DDS-level losses are invisible to the node
and show up only as frames a sender published without a result.)

Frames whose header is malformed (`image_conversion.check_picture`) are rejected in the callback
and never enter the mailbox; only what needs decoding to be found bad (a corrupt JPEG) is found by
the inference thread, and so can be replaced before it is looked at.

`malformed_cause` maps an `ImageConversionError` to a short cause key ("encoding", "empty",
"step", "size", "compressed"), the unit in which malformed frames are counted and logged.
`CauseThrottle` decides when a cause may be logged again: the first time at once, then at most
once per period (with the count of frames skipped since).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

MALFORMED_CAUSES = ("encoding", "empty", "step", "size", "compressed", "other")

# (fragment of the ImageConversionError message, cause); the first match wins.
_CAUSE_PATTERNS: tuple[tuple[str, str], ...] = (
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


def malformed_cause(error: BaseException) -> str:
    """The cause key (one of MALFORMED_CAUSES) of an image conversion error, from its message."""
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
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        """The newest item (removing it), or None after ``timeout`` seconds or once closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout=timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        """Wake any waiter; later ``take`` calls return None."""
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


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
