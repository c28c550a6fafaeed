"""What the demo's client saw, and how a result is matched to the frame and phase it belongs to.

Contract:

- `Recording`: ``sent`` maps a camera frame's stamp (sec, nanosec) to its scene index (from the
  camera's log); ``results`` holds (arrival time.time() s, zsp_msgs/PanopticSegmentation) oldest
  first; ``overlays`` maps a stamp to the node's sensor_msgs/Image overlay of that frame.
- `parse_camera_log(text)`: the camera's ``SENT sec nanosec index`` lines -> ``sent``.
- `stamp(msg)`: a message's header stamp as the (sec, nanosec) key of ``sent``.
- `phase(version, version_after)`: ``"after"`` for a result labelled by the category set made by
  the add (version >= version_after), else ``"before"``.
- `scenes_covered(recording, sent, version_ok)`: scene indices with at least one recorded result
  whose category-set version passes ``version_ok``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Recording:
    """What the client saw. ``sent``: (sec, nanosec) -> scene index, from the camera's log."""
    sent: dict[tuple[int, int], int] = field(default_factory=dict)
    results: list[tuple[float, Any]] = field(default_factory=list)      # (arrival s, PanopticSegmentation)
    overlays: dict[tuple[int, int], Any] = field(default_factory=dict)  # stamp -> overlay Image


def parse_camera_log(text: str) -> dict[tuple[int, int], int]:
    """``SENT sec nanosec index`` lines -> {(sec, nanosec): index}."""
    sent = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "SENT":
            sent[(int(parts[1]), int(parts[2]))] = int(parts[3])
    return sent


def stamp(msg: Any) -> tuple[int, int]:
    """The header stamp of a ROS message as (sec, nanosec)."""
    return (msg.header.stamp.sec, msg.header.stamp.nanosec)


def phase(version: int, version_after: int) -> str:
    """``"after"`` when the category-set version is that of the add (or later), else ``"before"``."""
    return "after" if version >= version_after else "before"


def scenes_covered(recording: Recording, sent: dict[tuple[int, int], int],
                   version_ok: Callable[[int], bool]) -> set[int]:
    """Scene indices with a recorded result of a sent frame whose version passes ``version_ok``."""
    return {sent[stamp(m)] for _, m in list(recording.results)
            if stamp(m) in sent and version_ok(m.category_set_version)}
