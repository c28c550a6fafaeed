"""Why no frame arrives: the node's no-frames check as pure functions over what rclpy reports.

After activation the node watches its one image subscription. When no frame has arrived for
``no_frames_warn_s`` it asks rclpy who publishes on the resolved topic
(``Node.get_publishers_info_by_topic``) and which topics carry its message type
(``get_topic_names_and_types``), turns those into `Endpoint` records, and `explain_silence` names
the likely cause in one sentence for the log and /diagnostics:

==================  ==============================================================================
cause               meaning and what to set
==================  ==============================================================================
no_publisher        nobody publishes the topic: a remap or namespace points elsewhere (topics of
                    the wanted type are listed)
wrong_type          the publishers send another type (CompressedImage on the raw topic, ...):
                    set image_transport, or remap
qos_incompatible    the publisher is best-effort and the node reliable: DDS never connects them;
                    set input_reliability:=best_effort (or make the publisher reliable)
best_effort_large   the node or the publisher is best-effort: frames larger than a UDP datagram
                    travel in fragments and one lost fragment loses the frame (measured here:
                    about 1 in 10 640x480 rgb8 frames arrived); use reliable on both sides
not_publishing      publishers match in type and QoS, yet nothing arrives: the camera is not
                    sending (stopped, lazy, or waiting for a trigger)
==================  ==============================================================================

Needs nothing but the standard library.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

CAUSES = ("no_publisher", "wrong_type", "qos_incompatible", "best_effort_large", "not_publishing")


@dataclass(frozen=True)
class Endpoint:
    """One publisher of a topic: its node's full name, message type ("sensor_msgs/msg/Image"),
    reliability ("reliable" | "best_effort" | other rmw names) and durability ("volatile", ...)."""
    node: str
    type: str
    reliability: str
    durability: str

    def describe(self) -> str:
        return f"{self.node} ({self.type}, {self.reliability}, {self.durability})"


def policy_name(policy: Any) -> str:
    """A QoS policy enum (rclpy ReliabilityPolicy.RELIABLE, ...) or int as a lower-case name ("reliable")."""
    name = getattr(policy, "name", None)
    return str(name).lower() if name is not None else str(policy).lower()


def endpoint_from_info(info: Any) -> Endpoint:
    """An `Endpoint` from rclpy's TopicEndpointInfo (node_name, node_namespace, topic_type, qos_profile)."""
    namespace = str(getattr(info, "node_namespace", "") or "/")
    node = f"{namespace.rstrip('/')}/{info.node_name}"
    qos = info.qos_profile
    return Endpoint(node=node, type=str(info.topic_type), reliability=policy_name(qos.reliability),
                    durability=policy_name(qos.durability))


def explain_silence(*, topic: str, want_type: str, reliability: str, publishers: Sequence[Endpoint],
                    same_type_topics: Sequence[str] = ()) -> tuple[str, str]:
    """(cause, sentence) for a subscription that received nothing (causes: module docstring).

    Args:
        topic: the subscription's resolved topic name.
        want_type: its message type, e.g. "sensor_msgs/msg/Image".
        reliability: the subscription's reliability, "reliable" or "best_effort".
        publishers: the topic's publishers, as rclpy reports them.
        same_type_topics: other topics that carry ``want_type`` (suggestions for a remap).
    """
    if not publishers:
        others = [t for t in same_type_topics if t != topic]
        hint = (f"; topics of that type: {', '.join(sorted(others)[:8])}" if others else
                f"; no topic carries {want_type} at all (is the camera running, in this ROS_DOMAIN_ID?)")
        return "no_publisher", (f"nobody publishes {topic}: check the remap (-r image:=<camera topic>) and the "
                                f"namespace{hint}")
    matching = [p for p in publishers if p.type == want_type]
    if not matching:
        types = sorted({p.type for p in publishers})
        return "wrong_type", (f"{topic} carries {', '.join(types)}, the node subscribes {want_type}: set "
                              f"image_transport (raw = Image, compressed = CompressedImage on <image>/compressed) "
                              f"or remap image to the right topic")
    if reliability == "reliable" and all(p.reliability == "best_effort" for p in matching):
        return "qos_incompatible", ("QoS mismatch: the publishers are best_effort and the node requests reliable, "
                                    "so DDS never connects them; set input_reliability:=best_effort (large frames "
                                    "may then be lost) or make the publisher reliable")
    if reliability == "best_effort" or all(p.reliability == "best_effort" for p in matching):
        return "best_effort_large", ("best-effort delivery: frames larger than a UDP datagram (~64 KB) travel in "
                                     "fragments and one lost fragment loses the frame, so large images may never "
                                     "arrive; set input_reliability:=reliable"
                                     + ("" if all(p.reliability == "reliable" for p in matching)
                                        else " and make the publisher reliable"))
    return "not_publishing", ("publishers match in type and QoS but sent nothing: the camera is not publishing "
                              "(stopped, lazy, or waiting for a subscriber of another topic)")


def silence_report(*, topic: str, silent_s: float, since_activation: bool, want_type: str, reliability: str,
                   publishers: Sequence[Endpoint], cause: str, why: str) -> str:
    """The one-line WARN: topic, how long, the publishers with their QoS against ours, the cause."""
    pubs = "; ".join(p.describe() for p in publishers) or "none"
    since = "since activation" if since_activation else "since the last one"
    return (f"no frame on {topic} for {silent_s:.1f} s ({since}); node subscribes {want_type} {reliability} "
            f"volatile; publishers: {pubs}; likely cause ({cause}): {why}")
