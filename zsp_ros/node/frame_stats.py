"""Counters and latency windows of the node's frame pipeline, read by the /diagnostics timer.

Thread-safe: the subscription callbacks, the inference thread and the diagnostics timer run on
different threads. Latencies are kept in windows of the last ``window`` frames (milliseconds);
the processing rate is measured over the last ``rate_window_s`` seconds.

Failed frames (decode, inference or publishing raised something other than a conversion error) are
counted per cause, the exception's type name (``failed_RuntimeError``). The heartbeat (`heartbeat`)
says how long ago a frame was last processed and for how long a received frame has been waiting
without any frame being processed since (``stalled_s``; 0 while every received frame was answered,
so an idle camera is not a stall). Frames refused by policy (a depth image while
``depth_encoding_policy`` is refuse) are counted apart from malformed ones (``refused_<cause>``).
`silence_s` says how long no frame has arrived (since the last one, or since these statistics
began, i.e. activation), for the node's no-frames warning.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np

STAGES = ("preprocess", "model", "postprocess", "publish", "node")
"""Latency stages: the Segmenter's three, message building + publishing, and receipt -> published."""


class FrameStats:
    """Frame counters (received, processed, dropped, malformed and failed per cause), latencies, heartbeat."""

    def __init__(self, *, window: int = 200, rate_window_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.rate_window_s = float(rate_window_s)
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.malformed: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self._started = clock()
        self._last_received: float | None = None
        self._last_processed: float | None = None
        self._pending_since: float | None = None     # first frame received after the last processed one
        self._latency: dict[str, deque[float]] = {stage: deque(maxlen=window) for stage in STAGES}
        self._done_at: deque[float] = deque(maxlen=4096)

    def on_received(self, *, replaced: bool, skipped: int = 0) -> None:
        """A frame arrived; ``replaced``: it replaced one that was never processed (a drop);
        ``skipped``: frames its publisher sent before it that the node never took (drops too)."""
        now = self._clock()
        with self._lock:
            self.received += 1
            self.dropped += int(replaced) + int(skipped)
            self._last_received = now
            if self._pending_since is None:
                self._pending_since = now

    def on_malformed(self, cause: str) -> None:
        with self._lock:
            self.malformed[cause] = self.malformed.get(cause, 0) + 1

    def on_refused(self, cause: str) -> None:
        """A well-formed frame the node will not segment (``cause``: e.g. "not_picture")."""
        with self._lock:
            self.refused[cause] = self.refused.get(cause, 0) + 1

    def silence_s(self) -> float:
        """Seconds since the last frame arrived, or since this object was made when none did."""
        now = self._clock()
        with self._lock:
            return now - (self._started if self._last_received is None else self._last_received)

    def on_failed(self, cause: str) -> None:
        """Decoding, inference or publishing raised (not a conversion error); ``cause``: the exception's type name."""
        with self._lock:
            self.failed[cause] = self.failed.get(cause, 0) + 1

    def on_processed(self, latencies_ms: dict[str, float], *, received: float | None = None) -> None:
        """A frame was published; ``latencies_ms`` holds some of STAGES (milliseconds).

        ``received``: when that frame was received (this object's clock); a frame received later is
        still waiting, and the stall clock restarts now for it. None: nothing is left waiting.
        """
        now = self._clock()
        with self._lock:
            self.processed += 1
            self._done_at.append(now)
            self._last_processed = now
            waiting = received is not None and self._last_received is not None and self._last_received > received
            self._pending_since = now if waiting else None
            for stage, value in latencies_ms.items():
                if stage in self._latency:
                    self._latency[stage].append(float(value))

    def rate_hz(self) -> float:
        """Frames processed per second over the last ``rate_window_s`` seconds."""
        now = self._clock()
        with self._lock:
            recent = [t for t in self._done_at if now - t <= self.rate_window_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(now - recent[0], 1e-9)   # decays once frames stop

    def heartbeat(self) -> tuple[float | None, float]:
        """(seconds since a frame was last processed, None if none yet; seconds a received frame has
        waited with no frame processed since, 0 if none waits)."""
        now = self._clock()
        with self._lock:
            age = None if self._last_processed is None else now - self._last_processed
            stalled = 0.0 if self._pending_since is None else now - self._pending_since
        return age, stalled

    def snapshot(self) -> dict[str, Any]:
        """Flat dict: counters, malformed_<cause>, refused_<cause>, failed_<exception type>, rate_hz,
        latency_<stage>_ms_p50 / _p90."""
        rate = self.rate_hz()
        with self._lock:
            out: dict[str, Any] = {"rate_hz": rate, "frames_received": self.received,
                                   "frames_processed": self.processed, "frames_dropped": self.dropped,
                                   "frames_malformed": sum(self.malformed.values()),
                                   "frames_refused": sum(self.refused.values()),
                                   "frames_failed": sum(self.failed.values())}
            for cause in sorted(self.malformed):
                out[f"malformed_{cause}"] = self.malformed[cause]
            for cause in sorted(self.refused):
                out[f"refused_{cause}"] = self.refused[cause]
            for cause in sorted(self.failed):
                out[f"failed_{cause}"] = self.failed[cause]
            for stage, values in self._latency.items():
                if values:
                    p50, p90 = np.percentile(np.fromiter(values, dtype=np.float64), [50, 90])
                    out[f"latency_{stage}_ms_p50"] = float(p50)
                    out[f"latency_{stage}_ms_p90"] = float(p90)
        return out


def health(*, thread_alive: bool, stalled_s: float, warn_s: float, error_s: float, max_rate_hz: float = 0.0,
           died: str | None = None, new_problems: int = 0, silence: str | None = None) -> tuple[str, str]:
    """The node's diagnostic level ("ok", "warn", "error") and the reason ("" when ok).

    Args:
        thread_alive: the inference thread is running.
        stalled_s: `FrameStats.heartbeat`'s second value (a received frame waiting, nothing processed since).
        warn_s, error_s: stall thresholds (parameters stall_warn_s, stall_error_s); with a capped rate
            (``max_rate_hz`` > 0) one frame interval, 1 / max_rate_hz, is added to both.
        died: why the inference thread died since the last report (it was restarted), or None.
        new_problems: malformed, refused and failed frames since the last report.
        silence: why no frame arrives (the node's no-frames check), or None while frames arrive.
    """
    slack = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
    if died is not None:
        return "error", f"the inference thread died ({died}) and was restarted"
    if not thread_alive:
        return "error", "the inference thread is not running"
    if stalled_s > error_s + slack:
        return "error", f"frames arrive but none was processed for {stalled_s:.1f} s"
    if stalled_s > warn_s + slack:
        return "warn", f"frames arrive but none was processed for {stalled_s:.1f} s"
    if silence is not None:
        return "warn", silence
    if new_problems > 0:
        return "warn", (f"{new_problems} malformed, refused or failed frame{'s' if new_problems > 1 else ''} "
                        f"since the last report")
    return "ok", ""
