"""`zsp bench node --out results/node.json`: zsp_node's end-to-end latency over DDS against the bare
model forward, its sustainable rate, and its behaviour at twice that rate.

1. **in-process forward** (this process, node not yet started): the kit's Segmenter on one
   synthetic-world camera frame (``--width`` x ``--height``, default 640 x 480): the backend's
   network call alone (the Segmenter's "model" stage) and the whole ``segment`` call.
2. **closed loop** (zsp_node as its own process, autostarted): publish one Image, wait for its
   PanopticSegmentation, repeat. ``e2e_ms`` = publish -> result received (this process's clock);
   ``forward_ms`` = the bare network forward the node reports in each of those results
   (``model_ms``: same process, same moments). ``e2e_over_forward`` = e2e p50 / forward p50
   (goal <= 1.10).
3. **overload**: publish at twice the sustainable rate (1000 / e2e p50) for ``--overload-s``
   seconds; ``achieved_rate_hz`` = results per second, ``drop_fraction`` = frames without a result
   (the node keeps the newest frame only, so latency stays bounded: ``overload_e2e_ms_p50``).
4. **flood**: publish as fast as this process can (at most ``--flood-hz``) for ``--flood-s`` seconds;
   ``achieved_rate_hz`` = results per second, against the sustainable rate (``flood_over_sustainable``,
   goal near 1: the one-slot mailbox must keep the model busy whatever the input rate); also the share
   of the time the node spent segmenting (``node_busy_fraction``) and its model time meanwhile
   (``node_model_ms_p50``; on a small machine the flood's publisher and transport slow the model itself).
5. **frames during adds**: publish at ``--adds-input-hz`` (at most 0.8 x the sustainable rate) for
   ``--adds-s`` seconds without category changes, then as long again while ``--add-clients`` clients
   each add a name and remove it again, back to back (every request refits the head). ``out_over_in`` =
   results / frames sent in each window; ``frames_during_adds_ratio`` = with adds / without (goal >= 0.9);
   also the results per second (median, min) of each window.
6. **memory**: the node process's resident set (``rss_mb``) and peak (``peak_rss_mb``).
7. **transport** (same run, in turn with each closed-loop frame): a round trip of the same payloads
   through a bare rclpy echo in its own process (zsp_ros.node.transport_echo: same input and QoS, the
   node's 16UC1 id image back, nothing else) -> ``transport_ms_p50``; ``node_overhead_ms`` = e2e -
   forward - transport (p50s): what the node adds beyond the network and the transport floor, and
   ``node_overhead_over_forward`` (goal <= 0.10); ``node_overhead_paired_ms`` takes e2e - forward per
   frame first (a loaded machine's forward noise cancels).
8. **delivery** (``--delivery-frames``): frames of the camera size published at 10 Hz to a bare echo, for
   each reliability pairing (publisher / subscriber): the share that arrives (the image QoS default).
9. **variants** (``--variants``): closed loop and transport only, at the kit's own network size and at
   the camera size, idle and with a busy neighbour (a ``while True: pass`` process): e2e, forward,
   transport, overhead for each.

``--threads`` 0 is the node's automatic rule (zsp_ros.utils.cpu_threads), in this process and the node;
``--busy`` keeps a busy neighbour running through the whole benchmark. Runs sequentially so the
processes never compete for the CPU during a measurement (but for the neighbour, on purpose). The JSON
holds the machine, versions and the command (zsp_ros.utils.provenance).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from zsp_ros.data.synth_render import render_scene
from zsp_ros.data.synth_world import world_categories
from zsp_ros.inference.preprocess import preprocess
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import MANIFEST
from zsp_ros.node.client import ZspClient
from zsp_ros.node.launcher import ChildProgram, ros_args, stop_process_group
from zsp_ros.node.output_size import network_hw
from zsp_ros.node.raw_image import numpy_to_image
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.utils.cpu_threads import apply_threads
from zsp_ros.utils.provenance import provenance, write_json

GOAL_OVERHEAD_OVER_FORWARD = 0.10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="results/node.json", help="JSON file to write")
    parser.add_argument("--kit", default="", help="model kit (default: the embedded kit)")
    parser.add_argument("--width", type=int, default=640, help="camera frame width (pixels)")
    parser.add_argument("--height", type=int, default=480, help="camera frame height (pixels)")
    parser.add_argument("--short-side", type=int, default=0,
                        help="network input short side (pixels); 0 = the kit's resize rule")
    parser.add_argument("--max-long-side", type=int, default=0,
                        help="network input long-side cap (pixels); 0 = the kit's resize rule")
    parser.add_argument("--frames", type=int, default=30, help="closed-loop frames timed")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames first")
    parser.add_argument("--overload-s", type=float, default=10.0, help="seconds at 2x the sustainable rate")
    parser.add_argument("--input-reliability", choices=("reliable", "best_effort"), default="reliable",
                        help="the node's image QoS (default reliable: on a loaded host, best-effort UDP loses "
                             "fragments of 1 MB frames, which would measure the transport, not the node)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in this process and the node's threads parameter (0 = automatic, "
                             "zsp_ros.utils.cpu_threads)")
    parser.add_argument("--busy", action="store_true",
                        help="keep a busy neighbour process (while True: pass) running through the benchmark")
    parser.add_argument("--output-resolution", choices=("input", "network"), default="input",
                        help="the node's output_resolution (the echo answers with the same id image size)")
    parser.add_argument("--delivery-frames", type=int, default=0,
                        help="frames per reliability pairing in the delivery phase (0 = skip)")
    parser.add_argument("--variants", action="store_true",
                        help="also closed loop + transport at the kit's size and the camera size, idle and busy")
    parser.add_argument("--flood-s", type=float, default=5.0, help="seconds of the flood phase")
    parser.add_argument("--flood-hz", type=float, default=500.0, help="highest publishing rate of the flood phase")
    parser.add_argument("--adds-s", type=float, default=10.0,
                        help="seconds of each window of the frames-during-adds phase (0 = skip the phase)")
    parser.add_argument("--adds-input-hz", type=float, default=10.0,
                        help="frame rate of the frames-during-adds phase (at most 0.8 x the sustainable rate)")
    parser.add_argument("--add-clients", type=int, default=4, help="clients adding names at once")
    parser.add_argument("--seed", type=int, default=0)


def _frame(width: int, height: int, seed: int) -> np.ndarray:

    cats = world_categories()
    scene = render_scene(np.random.default_rng(seed), height=height, width=width,
                         things=[c for c in cats if c["isthing"]], stuff=[c for c in cats if not c["isthing"]])
    return scene.image


def _cpu_model() -> str:
    """The CPU's model name (lscpu's "Model name", from /proc/cpuinfo); "" when unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{q}": round(float(np.percentile(arr, q)), 2) for q in (50, 90, 99)}


def _node_diagnostics(client: Any, *, processed_at_least: int = 0) -> dict[str, str]:
    """The node's latest /diagnostics values (its own counters and per-stage latencies), waiting
    for one published after now (the node publishes every diagnostics_period_s) that counts at least
    ``processed_at_least`` processed frames (the node counts a frame just after publishing its result,
    so a report sent in between lags by one); after 10 s, the newest report published after now."""
    def values(msg: Any) -> dict[str, str]:
        return {kv.key: kv.value for kv in msg.status[0].values}

    count = len(client.messages("/diagnostics"))
    try:
        msg = client.wait_for("/diagnostics", lambda m: int(values(m).get("frames_processed", 0)) >= processed_at_least,
                              timeout=10.0, after=count)
    except TimeoutError:
        fresh = client.messages("/diagnostics")[count:]
        if not fresh:
            return {}
        msg = fresh[-1]
    return values(msg)


def measure_forward(kit: Path, image: np.ndarray, *, short_side: int, max_long_side: int = 0, frames: int,
                    warmup: int) -> dict[str, Any]:
    """In-process Segmenter timings (ms) on ``image``."""

    with Segmenter.from_kit(kit, short_side=short_side or None, max_long_side=max_long_side or None,
                            semantic=False) as segmenter:
        for _ in range(warmup):
            segmenter.segment(image)
        timings = [segmenter.segment(image).timings_ms for _ in range(frames)]
        _, geometry = preprocess(image, short_side=segmenter.short_side, max_long_side=segmenter.max_long_side,
                                 size_divisibility=segmenter.size_divisibility, fixed_hw=segmenter.fixed_hw)
        resized = network_hw(image.shape[0], image.shape[1], segmenter)
    return {"forward_ms": _percentiles([t["model"] for t in timings]),
            "segment_ms": _percentiles([t["total"] for t in timings]),
            "network_input_hw": list(geometry.padded_hw), "network_resized_hw": list(resized)}


def _publish_at(publish: Callable[[], tuple[tuple[int, int], float]], rate_hz: float,
                seconds: float) -> tuple[list[tuple[int, int]], dict[tuple[int, int], float], float]:
    """Publish at ``rate_hz`` for ``seconds`` (as fast as possible when this process cannot keep up);
    the keys sent, their send times (time.time) and the window's start (time.time)."""
    keys, sent_at = [], {}
    start, wall = time.monotonic(), time.time()
    k = 0
    while time.monotonic() - start < seconds:
        delay = start + k / rate_hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        key, sent = publish()
        keys.append(key)
        sent_at[key] = sent
        k += 1
    return keys, sent_at, wall


def _window_stats(keys: list[tuple[int, int]], arrivals: dict[tuple[int, int], tuple[float, Any]], start: float,
                  seconds: float) -> dict[str, Any]:
    """Frames sent / received in a publishing window and the results per whole second of it."""
    got = [key for key in keys if key in arrivals]
    per_second = np.zeros(max(int(seconds), 1), dtype=np.int64)
    for key in got:
        k = int(arrivals[key][0] - start)
        if 0 <= k < len(per_second):
            per_second[k] += 1
    return {"frames_sent": len(keys), "frames_received": len(got),
            "out_over_in": round(len(got) / max(len(keys), 1), 3),
            "results_per_s_median": float(np.median(per_second)), "results_per_s_min": int(per_second.min()),
            "achieved_rate_hz": round(len(got) / seconds, 2)}


def _add_candidates(kit: Path) -> list[str]:
    """Names to add in the frames-during-adds phase: the synthetic world's categories the kit lacks
    (accepted by the MiniLM and the attribute text encoders alike)."""
    have = {c["name"] for c in json.loads((kit / MANIFEST).read_text())["categories"]}
    return [c["name"] for c in world_categories() if c["name"] not in have]


def _churn(client: Any, name: str, stop: threading.Event, log: list[dict[str, Any]]) -> None:
    """Add ``name`` and remove it again until ``stop``; each answer's outcome and duration into ``log``."""
    while not stop.is_set():
        for verb in ("add", "remove"):
            t0 = time.monotonic()
            try:
                reply = client.add_categories([name], timeout=120.0) if verb == "add" else \
                    client.remove_categories([name], timeout=120.0)
                log.append({"verb": verb, "ok": bool(reply.success), "s": time.monotonic() - t0,
                            "message": "" if reply.success else reply.message})
            except TimeoutError as exc:
                log.append({"verb": verb, "ok": False, "s": time.monotonic() - t0, "message": str(exc)})


@contextlib.contextmanager
def busy_neighbour(enabled: bool = True) -> Iterator[int | None]:
    """A process spinning one core (``python -c 'while True: pass'``) while the block runs; its pid."""
    if not enabled:
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        yield proc.pid
    finally:
        stop_process_group(proc, grace_s=2.0)


def _stamp_publisher(pub: Any, msg: Any, failures: list[int]) -> Callable[[], tuple[tuple[int, int], float]]:
    """publish(): stamp ``msg`` with the wall clock, publish it, return (stamp key, send time)."""
    def publish() -> tuple[tuple[int, int], float]:
        now = time.time()
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
        try:
            pub.publish(msg)
        except Exception:           # Fast DDS refuses a reliable write when its history is full (floods)
            failures[0] += 1
        return (msg.header.stamp.sec, msg.header.stamp.nanosec), now
    return publish


Loop = tuple[Callable[[], tuple[tuple[int, int], float]], dict[tuple[int, int], tuple[float, Any]], Callable[[], str]]


def _round_trip(publish: Callable[[], tuple[tuple[int, int], float]], arrivals: dict[tuple[int, int], tuple[float, Any]],
                what: Callable[[], str]) -> tuple[float, Any]:
    """Publish one frame and wait for its answer: (milliseconds, answer)."""
    for _attempt in range(3):              # a frame lost in discovery's first moments is re-sent
        key, sent = publish()
        end = time.monotonic() + 30
        while key not in arrivals and time.monotonic() < end:
            time.sleep(0.0005)
        if key in arrivals:
            arrival, answer = arrivals[key]
            return (arrival - sent) * 1e3, answer
    raise RuntimeError(f"no answer for 3 frames in a row:\n{what()}")


def _closed_loop(publish: Callable[[], tuple[tuple[int, int], float]], arrivals: dict[tuple[int, int], tuple[float, Any]],
                 *, frames: int, warmup: int, what: Callable[[], str],
                 interleaved: Loop | None = None) -> tuple[list[float], list[Any], list[float]]:
    """Publish, wait for the answer, repeat: (round trips in ms, answers) of the timed frames, and the round
    trips of ``interleaved`` (another (publish, arrivals, what), e.g. the transport echo), timed in turn
    with each frame so both see the same moments of a shared machine."""
    times, answers, other = [], [], []
    for i in range(warmup + frames):
        if interleaved is not None:
            ms, _ = _round_trip(*interleaved)
            if i >= warmup:
                other.append(ms)
        ms, answer = _round_trip(publish, arrivals, what)
        if i >= warmup:
            times.append(ms)
            answers.append(answer)
    return times, answers, other


def _wait_subscribed(pub: Any, child: ChildProgram, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while pub.get_subscription_count() < 1:
        if not child.alive or time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} did not subscribe:\n{child.log_tail()}")
        time.sleep(0.1)


def _image_qos(reliability: str) -> Any:
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE
                      if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT)


def measure_delivery(image: np.ndarray, *, frames: int, workdir: Path, rate_hz: float = 10.0) -> dict[str, Any]:
    """Share of ``frames`` camera frames published at ``rate_hz`` that reach a bare echo, per reliability
    pairing "publisher/subscriber" (reliable/reliable, reliable/best_effort, best_effort/best_effort)."""
    from sensor_msgs.msg import Image
    from zsp_msgs.msg import PanopticSegmentation

    out: dict[str, Any] = {"frame_hw": list(image.shape[:2]), "rate_hz": rate_hz, "frames": frames}
    for sub_rel in ("reliable", "best_effort"):
        namespace = f"/zsp_bench_delivery_{os.getpid()}_{sub_rel}"
        with ChildProgram(name="transport_echo", module="zsp_ros.node.transport_echo",
                          args=ros_args(namespace, {"input_reliability": sub_rel}),
                          log_path=workdir / f"delivery_{sub_rel}.log") as echo, \
                ZspClient(namespace=namespace, name="zsp_bench_delivery_client") as client:
            got: set[tuple[int, int]] = set()
            client.subscribe("panoptic", PanopticSegmentation, keep=False, on_message=lambda t, m: got.add(
                (m.header.stamp.sec, m.header.stamp.nanosec)))
            for pub_rel in ("reliable", "best_effort") if sub_rel == "best_effort" else ("reliable",):
                pub = client.node.create_publisher(Image, "image", _image_qos(pub_rel))
                _wait_subscribed(pub, echo)
                time.sleep(0.5)
                publish = _stamp_publisher(pub, numpy_to_image(image, "rgb8"), [0])
                keys, _, _ = _publish_at(publish, rate_hz, frames / rate_hz)
                time.sleep(1.0)
                out[f"{pub_rel}/{sub_rel}"] = round(len(got & set(keys)) / max(len(keys), 1), 3)
                client.node.destroy_publisher(pub)
    return out


def measure_node(kit: Path, image: np.ndarray, *, short_side: int, max_long_side: int = 0, frames: int, warmup: int,
                 overload_s: float, workdir: Path, reliability: str = "reliable", threads: int = 0,
                 flood_s: float = 0.0, flood_hz: float = 500.0, adds_s: float = 0.0, adds_input_hz: float = 10.0,
                 add_clients: int = 4, output_resolution: str = "input",
                 echo_hw: tuple[int, int] | None = None) -> dict[str, Any]:
    """Closed-loop, overload, flood and frames-during-adds runs against zsp_node in its own process.

    The closed loop alternates with round trips through zsp_ros.node.transport_echo (its own process,
    answering with an id image of ``echo_hw``, default the image's size): ``transport_ms``.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from zsp_msgs.msg import PanopticSegmentation


    namespace = f"/zsp_bench_{os.getpid()}"
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    params = {"kit": str(kit.resolve()), "autostart": True, "input_short_side": short_side,
              "input_max_long_side": max_long_side, "threads": threads, "output_resolution": output_resolution,
              "publish_semantic": False, "publish_overlay": False, "publish_color_mask": False,
              "input_reliability": reliability}
    arrivals: dict[tuple[int, int], tuple[float, Any]] = {}
    echoed: dict[tuple[int, int], tuple[float, Any]] = {}
    echo_ns = f"{namespace}_echo"
    echo_params = {"input_reliability": reliability, "output_height": int(echo_hw[0]) if echo_hw else 0,
                   "output_width": int(echo_hw[1]) if echo_hw else 0}
    with ChildProgram(name="zsp_node", module="zsp_ros.node.main", args=ros_args(namespace, params),
                      log_path=workdir / f"node_{time.monotonic_ns()}.log") as node, \
            ChildProgram(name="transport_echo", module="zsp_ros.node.transport_echo", args=ros_args(echo_ns, echo_params),
                         log_path=workdir / f"echo_{time.monotonic_ns()}.log") as echo, \
            ZspClient(namespace=namespace, name="zsp_bench_client") as client:
        client.subscribe(f"{echo_ns}/panoptic", PanopticSegmentation, keep=False,
                         on_message=lambda t, m: echoed.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), (t, m)))
        echo_pub = client.node.create_publisher(Image, f"{echo_ns}/image", _image_qos("reliable"))
        _wait_subscribed(echo_pub, echo)
        client.subscribe("panoptic", PanopticSegmentation, keep=False, on_message=lambda t, m: arrivals.__setitem__(
            (m.header.stamp.sec, m.header.stamp.nanosec), (t, m)))
        client.subscribe("/diagnostics", DiagnosticArray)
        pub = client.node.create_publisher(Image, "image", _image_qos("reliable"))
        msg = numpy_to_image(image, "rgb8")
        _wait_subscribed(pub, node)
        publish_failures = [0]
        publish = _stamp_publisher(pub, msg, publish_failures)
        closed, results, transport = _closed_loop(
            publish, arrivals, frames=frames, warmup=warmup, what=node.log_tail,
            interleaved=(_stamp_publisher(echo_pub, numpy_to_image(image, "rgb8"), [0]), echoed, echo.log_tail))
        node_model = [r.model_ms for r in results]
        output_hw = [results[-1].id_image.height, results[-1].id_image.width]
        id_encoding = results[-1].id_image.encoding
        in_node = _node_diagnostics(client, processed_at_least=warmup + frames)   # before the overload
        e2e_p50 = float(np.percentile(closed, 50))
        sustainable_hz = 1000.0 / e2e_p50
        rate = 2.0 * sustainable_hz
        drain_s = max(2.0, 3 * e2e_p50 / 1e3)
        sent_keys, sent_at, _ = _publish_at(publish, rate, overload_s) if overload_s > 0 else ([], {}, 0.0)
        time.sleep(drain_s if overload_s > 0 else 0.0)
        got = [key for key in sent_keys if key in arrivals]
        overload = [(arrivals[key][0] - sent_at[key]) * 1e3 for key in got]
        after_overload = _node_diagnostics(client) if overload_s > 0 else {}

        flood: dict[str, Any] = {}
        if flood_s > 0:
            failed_before = publish_failures[0]
            keys, _, start = _publish_at(publish, flood_hz, flood_s)
            flood = {**_window_stats(keys, arrivals, start, flood_s),
                     "input_rate_hz": round(len(keys) / flood_s, 1), "seconds": flood_s,
                     "publish_failures": publish_failures[0] - failed_before}
            flood["over_sustainable"] = round(flood["achieved_rate_hz"] / sustainable_hz, 3)
            done = [arrivals[key][1] for key in keys if key in arrivals]
            flood["node_model_ms_p50"] = _percentiles([m.model_ms for m in done])["p50"]
            flood["node_busy_fraction"] = round(sum(m.preprocess_ms + m.model_ms + m.postprocess_ms
                                                    for m in done) / (1e3 * flood_s), 3)
            time.sleep(drain_s)

        adds: dict[str, Any] = {}
        names = _add_candidates(kit)[:add_clients]
        if adds_s > 0 and names:
            adds_rate = min(adds_input_hz, 0.8 * sustainable_hz)
            keys, _, start = _publish_at(publish, adds_rate, adds_s)
            time.sleep(drain_s)
            quiet = _window_stats(keys, arrivals, start, adds_s)
            stop, log = threading.Event(), []
            churners = [threading.Thread(target=_churn, args=(client, n, stop, log), daemon=True) for n in names]
            for t in churners:
                t.start()
            keys, _, start = _publish_at(publish, adds_rate, adds_s)
            stop.set()
            for t in churners:
                t.join(timeout=300.0)
            time.sleep(drain_s)
            busy = _window_stats(keys, arrivals, start, adds_s)
            done = [entry for entry in log if entry["ok"]]
            busy.update({"changes_ok": len(done), "changes_failed": len(log) - len(done),
                         "change_s": _percentiles([entry["s"] for entry in done]),
                         "failures": sorted({entry["message"] for entry in log if not entry["ok"]})[:5]})
            adds = {"input_rate_hz": round(adds_rate, 2), "seconds": adds_s, "clients": len(names), "names": names,
                    "no_adds": quiet, "with_adds": busy,
                    "ratio": round(busy["out_over_in"] / max(quiet["out_over_in"], 1e-9), 3), "goal": 0.9}
        memory = node.memory_mb()
        code = node.stop()
    paired = [e - m for e, m in zip(closed, node_model)]        # per frame: the forward's noise cancels
    return {"e2e_ms": _percentiles(closed), "node_model_ms": _percentiles(node_model), "output_hw": output_hw,
            "transport_ms": _percentiles(transport),
            "e2e_minus_forward_ms": _percentiles(paired),
            "id_image_encoding": id_encoding,
            "node_diagnostics_closed_loop": in_node, "node_diagnostics_after_overload": after_overload,
            "sustainable_rate_hz": round(sustainable_hz, 2),
            "overload": {"input_rate_hz": round(rate, 2), "seconds": overload_s, "frames_sent": len(sent_keys),
                         "frames_received": len(got), "drop_fraction": round(1 - len(got) / len(sent_keys), 3) if sent_keys else None,
                         "achieved_rate_hz": round(len(got) / max(overload_s, 1e-9), 2),
                         "e2e_ms": _percentiles(overload)},
            "flood": flood, "adds": adds, "publish_failures": publish_failures[0], **memory, "node_exit_code": code}


def _overhead(e2e_p50: float, forward_p50: float, transport_p50: float, paired_p50: float) -> dict[str, float]:
    """node_overhead_ms = e2e - forward - transport (p50s) and its ratio to the forward; the same from the
    per-frame differences e2e - forward (``paired_p50``), which a busy machine's forward noise does not swamp."""
    overhead = e2e_p50 - forward_p50 - transport_p50
    paired = paired_p50 - transport_p50
    return {"e2e_ms_p50": e2e_p50, "forward_ms_p50": forward_p50, "transport_ms_p50": transport_p50,
            "node_overhead_ms": round(overhead, 2), "node_overhead_over_forward": round(overhead / forward_p50, 3),
            "node_overhead_paired_ms": round(paired, 2),
            "node_overhead_paired_over_forward": round(paired / forward_p50, 3),
            "e2e_over_forward": round(e2e_p50 / forward_p50, 3)}


def measure_variants(kit: Path, args: argparse.Namespace, workdir: Path, kit_hw: tuple[int, int]) -> list[dict[str, Any]]:
    """Closed loop + transport at the kit's network size and at the camera size, idle and busy."""
    rows = []
    for label, (height, width) in (("kit size", kit_hw), ("camera size", (args.height, args.width))):
        image = _frame(width, height, args.seed)
        for busy in (False, True):
            with busy_neighbour(busy):
                node = measure_node(kit, image, short_side=args.short_side, max_long_side=args.max_long_side,
                                    frames=args.frames, warmup=args.warmup, overload_s=0.0, workdir=workdir,
                                    reliability=args.input_reliability, threads=args.threads)
            rows.append({"size": label, "frame_hw": [height, width], "busy_neighbour": busy,
                         **_overhead(node["e2e_ms"]["p50"], node["node_model_ms"]["p50"],
                                     node["transport_ms"]["p50"], node["e2e_minus_forward_ms"]["p50"]),
                         "load_average_1min": round(os.getloadavg()[0], 2)})
    return rows


def run(args: argparse.Namespace) -> int:
    kit = resolve_kit(args.kit)
    if not kit.is_dir():
        print(f"zsp bench node: kit {kit} not found" + ("" if args.kit else " (embedded kit not installed; pass --kit)"))
        return 1
    threads = apply_threads(args.threads)
    image = _frame(args.width, args.height, args.seed)
    with busy_neighbour(args.busy), tempfile.TemporaryDirectory(prefix="zsp_bench_node_") as tmp:
        forward = measure_forward(kit, image, short_side=args.short_side, max_long_side=args.max_long_side,
                                  frames=args.frames, warmup=args.warmup)
        kit_hw = tuple(forward["network_resized_hw"])
        answer_hw = kit_hw if args.output_resolution == "network" else None
        delivery = measure_delivery(image, frames=args.delivery_frames, workdir=Path(tmp)) \
            if args.delivery_frames > 0 else {}
        node = measure_node(kit, image, short_side=args.short_side, max_long_side=args.max_long_side,
                            frames=args.frames, warmup=args.warmup,
                            overload_s=args.overload_s, workdir=Path(tmp), reliability=args.input_reliability,
                            threads=args.threads, flood_s=args.flood_s, flood_hz=args.flood_hz, adds_s=args.adds_s,
                            adds_input_hz=args.adds_input_hz, add_clients=args.add_clients,
                            output_resolution=args.output_resolution, echo_hw=answer_hw)
    with tempfile.TemporaryDirectory(prefix="zsp_bench_node_") as tmp:
        variants = measure_variants(kit, args, Path(tmp), kit_hw) if args.variants else []
    # The bare forward is the node's own "model" stage on the very frames whose end-to-end time was
    # measured: the same process and moment, so a busy neighbour cannot skew the ratio. The forward
    # measured in this process beforehand is kept as a cross-check.
    e2e_p50, forward_p50 = node["e2e_ms"]["p50"], node["node_model_ms"]["p50"]
    overhead = _overhead(e2e_p50, forward_p50, node["transport_ms"]["p50"], node["e2e_minus_forward_ms"]["p50"])
    result = {
        **overhead, "goal_node_overhead_over_forward": GOAL_OVERHEAD_OVER_FORWARD,
        "forward_inprocess_ms_p50": forward["forward_ms"]["p50"], "segment_inprocess_ms_p50": forward["segment_ms"]["p50"],
        "rss_mb": node.get("rss_mb"), "peak_rss_mb": node.get("peak_rss_mb"),
        "achieved_rate_hz": node["overload"]["achieved_rate_hz"],
        "drops_at_2x": node["overload"]["drop_fraction"],
        "flood_over_sustainable": node["flood"].get("over_sustainable"),
        "frames_during_adds_ratio": node["adds"].get("ratio"), "goal_frames_during_adds_ratio": 0.9,
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "busy_neighbour": bool(args.busy),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "goal_e2e_over_forward": 1.10,
        "frame_hw": [args.height, args.width], "input_reliability": args.input_reliability,
        "network_input_hw": forward["network_input_hw"], "output_resolution": args.output_resolution,
        "output_hw": node["output_hw"], "id_image_encoding": node["id_image_encoding"],
        "kit": str(kit), "torch_threads": threads,
        "transport_ms": node["transport_ms"], "delivery": delivery, "variants": variants,
        "forward": forward, "node": node,
        "provenance": provenance(["zsp", "bench", "node", *[f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()]]),
    }
    write_json(args.out, result)
    print(f"zsp bench node: e2e p50 {e2e_p50} ms = forward {forward_p50} + transport {overhead['transport_ms_p50']} "
          f"+ node {overhead['node_overhead_ms']} ms (node / forward {overhead['node_overhead_over_forward']}, goal <= "
          f"{GOAL_OVERHEAD_OVER_FORWARD}; per-frame pairs: node {overhead['node_overhead_paired_ms']} ms, "
          f"{overhead['node_overhead_paired_over_forward']}); e2e / forward {result['e2e_over_forward']}; network input "
          f"{forward['network_input_hw']}, {threads} thread(s){', busy neighbour' if args.busy else ''}; "
          f"at 2x ({node['overload']['input_rate_hz']} Hz): {node['overload']['achieved_rate_hz']} Hz out, "
          f"{node['overload']['drop_fraction']} dropped; flood {node['flood'].get('input_rate_hz')} Hz in: "
          f"{node['flood'].get('achieved_rate_hz')} Hz out; frames during adds: {result['frames_during_adds_ratio']} "
          f"of the no-add rate (goal >= 0.9); delivery {delivery or 'not measured'}; node RSS {node.get('rss_mb')} MB "
          f"-> {args.out}")
    for row in variants:
        print(f"  {row['size']} {row['frame_hw']}{' busy' if row['busy_neighbour'] else ' idle'}: e2e {row['e2e_ms_p50']} "
              f"forward {row['forward_ms_p50']} transport {row['transport_ms_p50']} node {row['node_overhead_ms']} ms "
              f"({row['node_overhead_over_forward']} of forward; per-frame pairs {row['node_overhead_paired_ms']} ms, "
              f"{row['node_overhead_paired_over_forward']}); load {row['load_average_1min']}")
    return 0
