"""Counters and latency windows of the node's frame pipeline, read by the /diagnostics timer.

Thread-safe: the subscription callbacks, the inference thread and the diagnostics timer run on
different threads. Latencies are kept in windows of the last ``window`` frames (milliseconds);
the processing rate is measured over the last ``rate_window_s`` seconds.
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
    """Frame counters (received, processed, dropped, malformed per cause, failed) and latencies."""

    def __init__(self, *, window: int = 200, rate_window_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.rate_window_s = float(rate_window_s)
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.failed = 0
        self.malformed: dict[str, int] = {}
        self._latency: dict[str, deque[float]] = {stage: deque(maxlen=window) for stage in STAGES}
        self._done_at: deque[float] = deque(maxlen=4096)

    def on_received(self, *, replaced: bool) -> None:
        """A frame arrived; ``replaced``: it replaced one that was never processed (a drop)."""
        with self._lock:
            self.received += 1
            self.dropped += int(replaced)

    def on_malformed(self, cause: str) -> None:
        with self._lock:
            self.malformed[cause] = self.malformed.get(cause, 0) + 1

    def on_failed(self) -> None:
        """Inference or publishing raised on a well-formed frame."""
        with self._lock:
            self.failed += 1

    def on_processed(self, latencies_ms: dict[str, float]) -> None:
        """A frame was published; ``latencies_ms`` holds some of STAGES (milliseconds)."""
        with self._lock:
            self.processed += 1
            self._done_at.append(self._clock())
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

    def snapshot(self) -> dict[str, Any]:
        """Flat dict: counters, malformed_<cause>, rate_hz, latency_<stage>_ms_p50 / _p90."""
        rate = self.rate_hz()
        with self._lock:
            out: dict[str, Any] = {"rate_hz": rate, "frames_received": self.received,
                                   "frames_processed": self.processed, "frames_dropped": self.dropped,
                                   "frames_malformed": sum(self.malformed.values()),
                                   "frames_failed": self.failed}
            for cause in sorted(self.malformed):
                out[f"malformed_{cause}"] = self.malformed[cause]
            for stage, values in self._latency.items():
                if values:
                    p50, p90 = np.percentile(np.fromiter(values, dtype=np.float64), [50, 90])
                    out[f"latency_{stage}_ms_p50"] = float(p50)
                    out[f"latency_{stage}_ms_p90"] = float(p90)
        return out
