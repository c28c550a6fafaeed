# Over 400 lines: the lifecycle transitions, the supervised frame path and the diagnostics share one node's state.
"""zsp_node: zero-shot panoptic segmentation as a ROS 2 LifecycleNode (a thin layer over the runtime).

Lifecycle (each callback returns FAILURE with a logged reason instead of raising):
- constructor: declares the parameters (zsp_ros.node.parameters; defaults from config/zsp.yaml)
  and offers the category services, which answer "not configured" until configure. A node still
  unconfigured ``unconfigured_warn_s`` after start-up says so in a WARN (nothing configured it).
- configure: validates every parameter, sets the CPU threads (``threads``, utils.cpu_threads), loads
  the model kit and the category registry (`Segmenter.from_kit`), runs one warm-up frame.
- activate: creates the publishers, the image subscription, the inference thread and the
  diagnostics timer; publishes the category set.
- deactivate: stops and destroys all of that. cleanup: releases the model and the state directory.

Topics (relative names in zsp_ros.node.topics, remap them): subscribes ONE of ``image``
(sensor_msgs/Image, ``image_transport`` raw) or ``<resolved image>/compressed`` (CompressedImage,
``image_transport`` compressed; so ``-r image:=/cam/image_raw`` gives /cam/image_raw/compressed),
KEEP_LAST depth 1 with ``input_reliability`` (reliable by default). Publishes ``panoptic``
(zsp_msgs/PanopticSegmentation, header of the input, id image 16UC1), ``semantic`` (16UC1 category
ids), ``color_mask`` (rgb8, a fixed colour per category id), ``overlay`` (rgb8, enlarged for small
frames), ``category_set`` (zsp_msgs/CategorySet, transient local, republished on every change) and
``/diagnostics``; at the input's size, or the network's (``output_resolution``). The id image,
semantic map and colour mask are written into reused messages (output_buffers.py).

No silent loss: a frame whose encoding is not a picture (depth) is refused and counted
(``refused_not_picture``) unless ``depth_encoding_policy`` maps it; an incompatible publisher QoS
is logged when DDS reports it; and when no frame has arrived for ``no_frames_warn_s`` after
activation, a WARN in the log (once per silence) and in /diagnostics names the topic, its
publishers with their QoS against ours, and the likely cause (input_watch.py).

Services: ``add_categories``, ``remove_categories``, ``list_categories`` (zsp_msgs), with a request
queue of SERVICE_QUEUE_DEPTH (bursts of that many concurrent requests are all answered). Every failure
is ``success=false`` with a message saying why; no exception leaves a callback.

Threads: subscription callbacks (one mutually exclusive group) check the header and drop the message
into a one-slot mailbox (`LatestFrame`), then wait until it is taken or for half a frame's processing
time (0.05..0.25 s), so the model always gets a frame at most that much older than the newest, and a
flood costs a few deserialised messages per processed frame, not one per frame sent (frame_input.py); frames replaced or never taken are counted
as dropped (publisher sequence numbers). Frames over the size limits (``max_input_pixels`` ...,
zsp_ros.node.input_limits) are refused from their header, before decoding. One inference thread takes
frames from the mailbox (honouring ``max_rate_hz``, re-read every 0.1 s while it waits) and publishes. It never stops on a bad frame: a conversion error counts the frame as malformed,
any other exception (decode, segment, publish) as failed under its exception type; both are logged at
most once per LOG_PERIOD_S per cause. Should the thread still die (a BaseException), the diagnostics
timer finds it dead, restarts it and counts the restart. /diagnostics carries a heartbeat (age of the
last processed frame, thread alive, restarts) and turns WARN / ERROR when frames arrive but none is
processed for ``stall_warn_s`` / ``stall_error_s`` (`frame_stats.health`). Category writes run in
their own callback group of a MultiThreadedExecutor; the runtime's registry swaps its head
atomically, so frames keep flowing while a category is being added.
"""
from __future__ import annotations

import gc
import threading
import time
import traceback
from typing import Any

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from zsp_ros.export.on_demand import build_backend_with_artifacts
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import KitError
from zsp_ros.node import parameters as params
from zsp_ros.node import topics
from zsp_ros.node.category_services import CategoryServices
from zsp_ros.node.frame_input import (
    CauseThrottle,
    LatestFrame,
    SequenceGaps,
    intake_refresh_s,
    malformed_cause,
    message_origin,
)
from zsp_ros.node.frame_stats import FrameStats, health
from zsp_ros.node.image_conversion import check_picture, to_rgb8
from zsp_ros.node.image_encodings import ImageConversionError
from zsp_ros.node.input_limits import PARAMETER_FIELDS
from zsp_ros.node.input_watch import endpoint_from_info, explain_silence, silence_report
from zsp_ros.node.messages import (
    category_set_message,
    color_mask_message,
    diagnostic_message,
    overlay_message,
    panoptic_message,
    semantic_message,
)
from zsp_ros.node.output_buffers import OutputBuffers
from zsp_ros.node.output_size import network_sized
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.runtime.state_store import MemoryStateStore, StateDirError
from zsp_ros.utils.cpu_threads import apply_threads

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE
LOG_PERIOD_S = 10.0          # a repeated problem (same cause) is logged at most this often
SERVICE_QUEUE_DEPTH = 256    # queued requests per category service (rclpy's default, 10, loses bursts)
RATE_SLICE_S = 0.1           # the rate limiter re-reads max_rate_hz at least this often while it waits


class ZspNode(LifecycleNode):
    """The segmentation node. Keyword arguments go to rclpy's LifecycleNode (namespace, ...).

    Args:
        node_name: the ROS node name.
        defaults: parameter defaults (default: read from config/zsp.yaml).
    """

    def __init__(self, node_name: str = params.NODE_NAME, *, defaults: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        defaults = params.load_defaults() if defaults is None else defaults
        overrides = getattr(self, "_parameter_overrides", {})     # rclpy's parsed -p / --params-file values
        for spec in params.PARAMETERS:          # an override of the other number type is converted when exact
            given = overrides.get(spec.name)
            value = None if given is None else params.coerce(spec.name, given.value)
            if type(value) is spec.type:        # (rclpy takes the declared type from the value passed here)
                self.declare_parameter(spec.name, value, params.descriptor(spec), ignore_override=True)
            else:                               # no override, or one rclpy refuses with its own reason
                self.declare_parameter(spec.name, defaults[spec.name], params.descriptor(spec))
        self.add_pre_set_parameters_callback(_coerce_changes)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._limits = params.input_limits(self._values())      # frame size limits, kept current
        self._depth_policy = str(self.get_parameter("depth_encoding_policy").value)   # kept current too
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self._input: dict[str, str] = {}     # the subscription: topic, type, reliability (while active)
        self._silence_logged = -1            # frames received when the no-frames WARN was last logged
        self._buffers = OutputBuffers()      # the inference thread's reused output messages
        self._wide_ids_logged = False
        self._unconfigured_timer: Any = None
        wait = float(self.get_parameter("unconfigured_warn_s").value)
        if wait > 0:
            self._unconfigured_timer = self.create_timer(wait, self._warn_unconfigured)

        self._segmenter: Any = None          # zsp_ros.runtime.segmenter.Segmenter while configured
        self._memory_store = MemoryStateStore()  # without state_dir: categories, version and ids survive cleanup
        self._kit_dir = ""
        self._registry_lock = threading.Lock()   # category writes vs. cleanup
        self._io_lock = threading.Lock()         # publishers vs. transitions
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._timer: Any = None
        self._slot: LatestFrame | None = None
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()     # (re)starting the worker vs. stopping it
        self._worker_death: str | None = None    # why the worker died, until the supervisor reports it
        self._restarts = 0
        self._stop = threading.Event()
        self._stats = FrameStats()
        self._throttle = CauseThrottle(period_s=LOG_PERIOD_S)
        self._last_problems = 0

        self._input_group = MutuallyExclusiveCallbackGroup()   # one image callback at a time (pull, see _on_frame)
        self._gaps = SequenceGaps()
        self._processing_s = 0.0             # recent seconds per processed frame (moving average)
        self._write_group = MutuallyExclusiveCallbackGroup()
        self._read_group = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        from zsp_msgs.srv import AddCategories, ListCategories, RemoveCategories
        services = CategoryServices(segmenter=lambda: self._segmenter, lock=self._registry_lock,
                                    logger=self.get_logger(), lifecycle_state=self.lifecycle_state,
                                    stamp=self._stamp, on_changed=self._publish_category_set)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=SERVICE_QUEUE_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.create_service(AddCategories, "add_categories", services.on_add, qos_profile=qos,
                            callback_group=self._write_group)
        self.create_service(RemoveCategories, "remove_categories", services.on_remove, qos_profile=qos,
                            callback_group=self._write_group)
        self.create_service(ListCategories, "list_categories", services.on_list, qos_profile=qos,
                            callback_group=self._read_group)

    # ------------------------------------------------------------------ parameters
    def _values(self) -> dict[str, Any]:
        return {spec.name: self.get_parameter(spec.name).value for spec in params.PARAMETERS}

    def _on_set_parameters(self, changes: list[Any]) -> SetParametersResult:
        """Refuse bad values, and configure-time parameters while configured (reason says which)."""
        problems = []
        for change in changes:
            spec = params.SPECS.get(change.name)
            if spec is None:
                continue                      # rclpy's own (use_sim_time, ...)
            problem = params.check_value(change.name, change.value)
            if problem is None and spec.applies == "configure" and self._segmenter is not None:
                problem = (f"{change.name}: read at configure and the node is configured; deactivate and "
                           f"clean up the node, set it, then configure again")
            if problem:
                problems.append(problem)
        if problems:
            self.get_logger().warning("parameter change refused: " + "; ".join(problems))
        return SetParametersResult(successful=not problems, reason="; ".join(problems))

    def _after_set_parameters(self, changes: list[Any]) -> None:
        if any(change.name in PARAMETER_FIELDS for change in changes):
            self._limits = params.input_limits(self._values())
        if any(change.name == "depth_encoding_policy" for change in changes):
            self._depth_policy = str(self.get_parameter("depth_encoding_policy").value)

    def _warn_unconfigured(self) -> None:
        """One-shot timer: WARN when nothing has configured the node ``unconfigured_warn_s`` after start-up."""
        timer, self._unconfigured_timer = self._unconfigured_timer, None
        if timer is not None:
            self.destroy_timer(timer)
        if self.lifecycle_state() == "unconfigured":
            name = self.get_fully_qualified_name()
            self.get_logger().warning(
                f"still unconfigured {float(self.get_parameter('unconfigured_warn_s').value):g} s after start-up: "
                f"nothing has configured this lifecycle node, so it subscribes to nothing. Configure and activate "
                f"it (ros2 lifecycle set {name} configure, then activate; or the launch file with autostart:=true), "
                f"or start it with -p autostart:=true")

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the kit and the category registry. SUCCESS: ready to activate. FAILURE: bad
        parameters or an unloadable kit / backend / state directory (logged); nothing is held."""
        values = self._values()
        problems = params.check_all(values)
        problems = problems or params.check_backend_files(values)
        if problems:
            self.get_logger().error("configure refused: " + "; ".join(problems))
            return FAILURE
        try:
            kit = resolve_kit(values["kit"])
        except KitError as exc:
            self.get_logger().error(f"configure failed: {exc} (set the 'kit' parameter)")
            return FAILURE
        t0 = time.perf_counter()
        try:
            threads = apply_threads(values["threads"])
        except (ValueError, RuntimeError) as exc:
            self.get_logger().error(f"configure refused: threads: {exc}")
            return FAILURE
        transport, deprecated = params.image_transport(values)
        if deprecated:
            self.get_logger().warning(deprecated)
        state_dir = values["state_dir"] or None
        try:
            segmenter = Segmenter.from_kit(
                kit, backend=values["backend"], device=values["device"], precision=values["precision"],
                state_dir=state_dir, store=None if state_dir else self._memory_store, allow_read_only=True,
                short_side=values["input_short_side"] or None,
                max_long_side=values["input_max_long_side"] or None,
                object_mask_threshold=_threshold_or_kit(values["object_mask_threshold"]),
                overlap_threshold=_threshold_or_kit(values["overlap_threshold"]), semantic=values["publish_semantic"],
                backend_options=params.backend_options(values), backend_factory=build_backend_with_artifacts)
        except StateDirError as exc:       # the directory's fault, not the kit's (a file, a locked one, ...)
            self.get_logger().error(f"configure failed: {exc} (fix it, or set the 'state_dir' parameter)")
            return FAILURE
        except Exception as exc:
            hint = " (set the 'kit' parameter)" if not values["kit"] and not kit.is_dir() else ""
            self.get_logger().error(f"configure failed: cannot load model kit {kit} with backend "
                                    f"{values['backend']}{hint}: {type(exc).__name__}: {exc}")
            return FAILURE
        try:                     # warm-up: the first frame and the first add pay one-off costs here
            side = segmenter.short_side
            segmenter.segment(np.zeros((side, side, 3), dtype=np.uint8))
            segmenter.registry.warm_up()
        except Exception as exc:
            segmenter.close()
            self.get_logger().error(f"configure failed: a warm-up frame through kit {kit} failed: "
                                    f"{type(exc).__name__}: {exc}")
            return FAILURE
        registry = segmenter.registry
        if registry.load_problem:
            self.get_logger().warning(registry.load_problem)
        read_only = registry.read_only_reason
        if read_only:
            self.get_logger().warning(f"{read_only}: running read-only; add_categories and remove_categories "
                                      f"will be refused "
                                      f"(make state_dir {state_dir} writable, or choose another, and configure again)")
        self._segmenter, self._kit_dir = segmenter, str(kit)
        cats = registry.list()
        fixed = segmenter.fixed_hw
        size = f"fixed {fixed[0]}x{fixed[1]}" if fixed else "resized per frame"
        self.get_logger().info(
            f"configured in {time.perf_counter() - t0:.1f} s: kit {kit}, backend {values['backend']} on "
            f"{values['device']} (network input {size}, {threads} CPU thread{'s' if threads > 1 else ''}), "
            f"image transport {transport} ({values['input_reliability']}), {len(cats)} categories (version {cats.version}, "
            f"{sum(c.origin == 'added' for c in cats)} added), state "
            f"{(state_dir + (' (read-only)' if read_only else '')) if state_dir else 'in memory (kept across cleanup)'}")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create publishers, subscriptions, the inference thread and the diagnostics timer.
        SUCCESS: frames are processed. FAILURE: something could not be created (logged, all undone)."""
        try:
            self._open_io(self._values())
        except Exception as exc:
            self._close_io()
            self.get_logger().error(f"activate failed: {type(exc).__name__}: {exc}")
            return FAILURE
        self._publish_category_set()
        self.get_logger().info(f"active: subscribed to {self._input['topic']} ({self._input['type']}, "
                               f"{self._input['reliability']})")
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the inference thread; destroy subscriptions, publishers and the timer. Always SUCCESS."""
        self._close_io()
        self.get_logger().info("inactive")
        return SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model and the state directory. Always SUCCESS."""
        self._close_io()
        self._release_model()
        self.get_logger().info("unconfigured: model released")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything from any state. Always SUCCESS."""
        self.release()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything; SUCCESS returns the node to unconfigured."""
        self.get_logger().error(f"error while in {state.label}: releasing everything")
        self.release()
        return SUCCESS

    def release(self) -> None:
        """Stop I/O and free the model, whatever the state (used by shutdown paths). Idempotent."""
        self._close_io()
        self._release_model()

    def autostart(self) -> bool:
        """Configure and activate now; True when the node ended up active."""
        if self.trigger_configure() != SUCCESS:
            return False
        return self.trigger_activate() == SUCCESS

    def lifecycle_state(self) -> str:
        """The current state's label ("unconfigured", "inactive", "active", "finalized", ...)."""
        return self._state_machine.current_state[1]

    # ------------------------------------------------------------------ I/O
    def _open_io(self, values: dict[str, Any]) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.event_handler import SubscriptionEventCallbacks
        from sensor_msgs.msg import CompressedImage, Image
        from zsp_msgs.msg import CategorySet, PanopticSegmentation

        reliability = ReliabilityPolicy.RELIABLE if values["input_reliability"] == "reliable" \
            else ReliabilityPolicy.BEST_EFFORT
        qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                            durability=DurabilityPolicy.VOLATILE)
        qos_out = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        qos_latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
        with self._io_lock:
            self._pubs = {
                "panoptic": self.create_publisher(PanopticSegmentation, topics.PANOPTIC, qos_out),
                "semantic": self.create_publisher(Image, topics.SEMANTIC, qos_out),
                "color_mask": self.create_publisher(Image, topics.COLOR_MASK, qos_out),
                "overlay": self.create_publisher(Image, topics.OVERLAY, qos_out),
                "category_set": self.create_publisher(CategorySet, topics.CATEGORY_SET, qos_latched),
                "diagnostics": self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10),
            }
        self._stats = FrameStats()
        self._last_problems = 0
        self._silence_logged = -1
        self._slot = LatestFrame()
        self._stop.clear()
        with self._worker_lock:
            self._restarts, self._worker_death = 0, None
            self._worker = self._start_worker(self._slot)
        self._timer = self.create_timer(values["diagnostics_period_s"], self._publish_diagnostics,
                                        callback_group=self._timer_group)
        transport, _ = params.image_transport(values)
        image_topic = self.resolve_topic_name(topics.IMAGE)          # remaps applied: -r image:=/cam/image_raw
        msg_type, topic = (CompressedImage, image_topic + topics.COMPRESSED_SUFFIX) if transport == "compressed" \
            else (Image, image_topic)
        self._input = {"topic": topic, "type": f"sensor_msgs/msg/{msg_type.__name__}",
                       "reliability": values["input_reliability"]}
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self._subs = [self.create_subscription(msg_type, topic, self._on_frame, qos_in, event_callbacks=events,
                                               callback_group=self._input_group)]

    def _close_io(self) -> None:
        """Stop the inference thread first, then destroy subscriptions, timer and publishers. Idempotent."""
        self._stop.set()
        with self._worker_lock:              # the supervisor cannot start a new worker from here on
            if self._slot is not None:
                self._slot.close()
            if self._worker is not None:
                self._worker.join()
            self._worker, self._slot = None, None
        subs, self._subs = self._subs, []
        timer, self._timer = self._timer, None
        with self._io_lock:
            pubs, self._pubs = self._pubs, {}
        for sub in subs:
            self.destroy_subscription(sub)
        if timer is not None:
            self.destroy_timer(timer)
        for pub in pubs.values():
            self.destroy_publisher(pub)

    def _on_incompatible_qos(self, info: Any) -> None:
        """DDS found a publisher whose QoS cannot serve the image subscription: say which policy, and what to set."""
        from rclpy.qos import qos_policy_name_from_kind

        try:
            policy = qos_policy_name_from_kind(info.last_policy_kind)
        except Exception:                  # an unknown kind: its number
            policy = str(getattr(info, "last_policy_kind", "?"))
        self._log_throttled("incompatible_qos", (
            f"a publisher of {self._input.get('topic', 'the image topic')} offers a QoS incompatible with this "
            f"subscription ({self._input.get('reliability', '?')}, volatile): policy {policy}, "
            f"{getattr(info, 'total_count', '?')} such publisher(s); "
            + ("the publisher is best_effort: set input_reliability:=best_effort (large frames may then be lost) "
               "or make the publisher reliable" if policy == "RELIABILITY" else
               "compare the publisher's QoS (ros2 topic info -v) with the subscription's")))

    def _release_model(self) -> None:
        with self._registry_lock:
            segmenter, self._segmenter = self._segmenter, None
        if segmenter is not None:
            segmenter.close()
            del segmenter
            gc.collect()

    # ------------------------------------------------------------------ frames
    def _on_frame(self, msg: Any, info: Any) -> None:
        """Subscription callback: reject what is malformed on its face, else put into the mailbox and
        wait until the inference thread has taken it, or `intake_refresh_s` (half a frame's processing time).

        The header check costs no decode and no copy. While this callback waits, its mutually exclusive
        callback group keeps the executor from taking image messages and DDS keeps only the newest
        (KEEP_LAST 1): the intake costs one message per processed frame plus one per refresh time
        (at most 20 a second), whatever the input rate (frame_input's docstring). ``info``: rclpy's
        MessageInfo; publisher sequence gaps count the frames the node never took as dropped.
        """
        slot = self._slot
        if slot is None:
            return
        publisher, sequence = message_origin(info)
        skipped = self._gaps.skipped(publisher, sequence)
        try:
            check_picture(msg, limits=self._limits, depth_policy=self._depth_policy)
        except ImageConversionError as exc:
            self._stats.on_received(replaced=False, skipped=skipped)
            self._skip_malformed(exc)
            return
        except Exception as exc:                      # a checker bug must not stop the subscription
            self._stats.on_received(replaced=False, skipped=skipped)
            self._count_failed("check", exc)
            return
        item = (msg, time.monotonic())
        self._stats.on_received(replaced=slot.put(item), skipped=skipped)
        slot.wait_taken(item, timeout=intake_refresh_s(self._processing_s))

    # ------------------------------------------------------------------ the inference thread
    def _start_worker(self, slot: LatestFrame) -> threading.Thread:
        worker = threading.Thread(target=self._inference_main, args=(slot,), name="zsp-inference", daemon=True)
        worker.start()
        return worker

    def _inference_main(self, slot: LatestFrame) -> None:
        """The worker's body: the loop, and a record of why it ended if it ended by an exception."""
        try:
            self._inference_loop(slot)
        except BaseException as exc:        # only BaseExceptions get here; the supervisor restarts the thread
            self._worker_death = f"{type(exc).__name__}: {exc}"
            raise

    def _inference_loop(self, slot: LatestFrame) -> None:
        """Take the newest frame, process it, wait out the rate cap; until stopped. An exception in
        one round is counted and logged, and the loop goes on."""
        started: float | None = None
        while not self._stop.is_set():
            try:
                if started is not None and self._wait_for_rate(started):
                    break
                item = slot.take(timeout=0.25)
                if item is None:
                    continue
                started = time.monotonic()
                self._process(*item)
                self._processing_s += 0.2 * (time.monotonic() - started - self._processing_s)
            except Exception as exc:
                self._count_failed("loop", exc)
                self._stop.wait(0.01)               # never spin on a persistent fault

    def _wait_for_rate(self, started: float) -> bool:
        """Sleep until 1 / max_rate_hz after ``started``, re-reading the rate every RATE_SLICE_S, so a
        change applies at once. True when the node is stopping."""
        while True:
            rate = float(self.get_parameter("max_rate_hz").value)
            left = (started + 1.0 / rate - time.monotonic()) if rate > 0 else 0.0
            if left <= 0:
                return self._stop.is_set()
            if self._stop.wait(min(left, RATE_SLICE_S)):
                return True

    def _process(self, msg: Any, received: float) -> None:
        """Segment one frame and publish; a malformed or failing frame is counted, logged, skipped.

        ``received``: when the frame arrived (time.monotonic). Raises nothing (but BaseException)."""
        segmenter, pubs = self._segmenter, self._pubs
        if segmenter is None or not pubs:
            return
        try:
            rgb = to_rgb8(msg, limits=self._limits, depth_policy=self._depth_policy)
        except ImageConversionError as exc:            # e.g. compressed bytes that do not decode
            self._skip_malformed(exc)
            return
        except Exception as exc:                       # a decoder's own error: a failed frame, not a dead thread
            self._count_failed("decode", exc)
            return
        stage = "segment"
        try:
            values = {name: self.get_parameter(name).value for name in
                      ("object_mask_threshold", "overlap_threshold", "publish_semantic", "publish_overlay",
                       "publish_color_mask", "id_image_encoding", "output_resolution", "overlay_min_side")}
            want_semantic = values["publish_semantic"] and pubs["semantic"].get_subscription_count() > 0
            want_overlay = values["publish_overlay"] and pubs["overlay"].get_subscription_count() > 0
            want_mask = values["publish_color_mask"] and pubs["color_mask"].get_subscription_count() > 0
            if values["output_resolution"] == "network":      # the resize the network input gets anyway, done first
                rgb = network_sized(rgb, segmenter)
            result = segmenter.segment(                       # thresholds -1: the kit's (the Segmenter's own)
                rgb, object_mask_threshold=_threshold_or_kit(values["object_mask_threshold"]),
                overlap_threshold=_threshold_or_kit(values["overlap_threshold"]), semantic=bool(want_semantic))
            stage = "publish"
            t_publish = time.monotonic()
            buffers = self._buffers
            panoptic = panoptic_message(result, msg.header, encoding=values["id_image_encoding"], buffers=buffers)
            if panoptic.id_image.encoding != values["id_image_encoding"] and not self._wide_ids_logged:
                self._wide_ids_logged = True
                self.get_logger().warning("a segment id exceeds 65535: this frame's id image is 32SC1, not 16UC1 "
                                          "(logged once)")
            pubs["panoptic"].publish(panoptic)
            if want_semantic and result.semantic is not None:
                pubs["semantic"].publish(semantic_message(result.semantic, msg.header, buffers=buffers))
            if want_mask:
                pubs["color_mask"].publish(color_mask_message(result, msg.header, buffers=buffers))
            if want_overlay:
                pubs["overlay"].publish(overlay_message(rgb, result, msg.header, min_side=values["overlay_min_side"]))
            done = time.monotonic()
        except Exception as exc:
            self._count_failed(stage, exc)
            return
        timings = result.timings_ms
        self._stats.on_processed({"preprocess": timings.get("preprocess", 0.0), "model": timings.get("model", 0.0),
                                  "postprocess": timings.get("postprocess", 0.0),
                                  "publish": (done - t_publish) * 1e3, "node": (done - received) * 1e3},
                                 received=received)

    def _skip_malformed(self, exc: ImageConversionError) -> None:
        cause = malformed_cause(exc)
        if cause == "not_picture":                   # well formed, refused by depth_encoding_policy
            self._stats.on_refused(cause)
            self._log_throttled(f"refused:{cause}", f"refusing frame ({cause}): {exc}")
            return
        self._stats.on_malformed(cause)
        self._log_throttled(f"malformed:{cause}", f"skipping malformed image ({cause}): {exc}")

    def _count_failed(self, stage: str, exc: Exception) -> None:
        """Count a frame (or loop round) that raised ``exc`` in ``stage`` under its exception type; log throttled."""
        cause = type(exc).__name__
        self._stats.on_failed(cause)
        self._log_throttled(f"failed:{cause}", f"frame failed in {stage}: {cause}: {exc}\n"
                            f"{traceback.format_exc(limit=4)}")

    def _supervise(self) -> str | None:
        """Restart the inference thread if it died while the node is active; why it died, else None."""
        with self._worker_lock:
            worker, slot = self._worker, self._slot
            if worker is None or slot is None or worker.is_alive() or self._stop.is_set():
                return None
            why, self._worker_death = self._worker_death or "no exception recorded", None
            self._restarts += 1
            self.get_logger().error(f"the inference thread died ({why}); restarting it "
                                    f"(restart {self._restarts} since activation)")
            self._worker = self._start_worker(slot)
            return why

    def _log_throttled(self, cause: str, text: str) -> None:
        count = self._throttle.should_log(cause)
        if count is not None:
            more = f" [{count} such frames since the last report]" if count > 1 else ""
            self.get_logger().warning(f"{text}{more} (this cause is logged at most every {LOG_PERIOD_S:.0f} s)")

    # ------------------------------------------------------------------ outputs
    def _stamp(self) -> Any:
        return self.get_clock().now().to_msg()

    def _publish_category_set(self) -> None:
        from std_msgs.msg import Header

        segmenter = self._segmenter
        with self._io_lock:
            pub = self._pubs.get("category_set")
            if pub is None or segmenter is None:
                return
            pub.publish(category_set_message(segmenter.registry.list(), Header(stamp=self._stamp())))

    def _publish_diagnostics(self) -> None:
        """The diagnostics timer: supervise the inference thread, then publish counters and heartbeat."""
        try:
            died = self._supervise()
        except Exception as exc:           # e.g. no thread can be started: reported as not running
            died = None
            self._log_throttled("supervisor", f"cannot restart the inference thread: {type(exc).__name__}: {exc}")
        try:
            segmenter, pub = self._segmenter, self._pubs.get("diagnostics")
            if segmenter is None or pub is None:
                return
            stats = self._stats.snapshot()
            age, stalled = self._stats.heartbeat()
            worker = self._worker
            alive = worker is not None and worker.is_alive()
            cats = segmenter.registry.list()
            problems = stats["frames_malformed"] + stats["frames_refused"] + stats["frames_failed"]
            live = {name: float(self.get_parameter(name).value) for name in
                    ("stall_warn_s", "stall_error_s", "max_rate_hz", "no_frames_warn_s")}
            silence, input_values = self._check_silence(live["no_frames_warn_s"], stats["frames_received"])
            level, why = health(thread_alive=alive, stalled_s=stalled, warn_s=live["stall_warn_s"],
                                error_s=live["stall_error_s"], max_rate_hz=live["max_rate_hz"], died=died,
                                new_problems=max(problems - self._last_problems, 0), silence=silence)
            self._last_problems = problems
            values = {**stats, "last_processed_age_s": -1.0 if age is None else age, "stalled_s": stalled,
                      "inference_thread_alive": alive, "inference_thread_restarts": self._restarts,
                      "category_set_version": cats.version, "categories": len(cats),
                      "categories_added": sum(c.origin == "added" for c in cats),
                      "categories_read_only": segmenter.registry.read_only_reason is not None, "kit": self._kit_dir,
                      "backend": segmenter.backend.name, **input_values}
            summary = (f"{why + '; ' if why else ''}{stats['rate_hz']:.1f} Hz; {stats['frames_processed']} "
                       f"processed, {stats['frames_dropped']} dropped, {stats['frames_malformed']} malformed, "
                       f"{stats['frames_refused']} refused, {stats['frames_failed']} failed; category set "
                       f"v{cats.version}")
            pub.publish(diagnostic_message(name=f"{self.get_fully_qualified_name()}: zero-shot segmentation",
                                           hardware_id=str(getattr(segmenter.backend, "device", "")),
                                           level=level, summary=summary, values=values, stamp=self._stamp()))
        except Exception as exc:
            self._log_throttled("diagnostics", f"diagnostics not published: {type(exc).__name__}: {exc}")


    def _check_silence(self, warn_s: float, received: int) -> tuple[str | None, dict[str, Any]]:
        """(the no-frames reason or None, input_* diagnostics values). Logs the WARN once per silence."""
        values: dict[str, Any] = {"input_topic": self._input.get("topic", ""),
                                  "input_type": self._input.get("type", ""),
                                  "input_reliability": self._input.get("reliability", "")}
        silent = self._stats.silence_s()
        values["input_silent_s"] = silent
        if warn_s <= 0 or silent <= warn_s or not self._input:
            return None, values
        topic = self._input["topic"]
        publishers = [endpoint_from_info(i) for i in self.get_publishers_info_by_topic(topic)]
        same_type = [name for name, types in self.get_topic_names_and_types() if self._input["type"] in types]
        cause, why = explain_silence(topic=topic, want_type=self._input["type"],
                                     reliability=self._input["reliability"], publishers=publishers,
                                     same_type_topics=same_type)
        report = silence_report(topic=topic, silent_s=silent, since_activation=received == 0,
                                want_type=self._input["type"], reliability=self._input["reliability"],
                                publishers=publishers, cause=cause, why=why)
        values.update({"input_publishers": "; ".join(p.describe() for p in publishers) or "none",
                       "input_cause": cause})
        if self._silence_logged != received:          # once per silence (re-armed by the next frame)
            self._silence_logged = received
            self.get_logger().warning(report)
        return report, values


def _coerce_changes(changes: list[Any]) -> list[Any]:
    """Pre-set callback: each change of one of our parameters as its declared type where exact
    (``ros2 param set ... max_rate_hz 5`` is 5.0), so rclpy's type check does not refuse it."""
    from rclpy.parameter import Parameter

    out = []
    for change in changes:
        value = params.coerce(change.name, change.value) if change.name in params.SPECS else change.value
        out.append(change if value is change.value else Parameter(change.name, value=value))
    return out


def _threshold_or_kit(value: float) -> float | None:
    """A threshold parameter's value, or None for -1 (= use the kit's recorded threshold)."""
    return None if float(value) < 0.0 else float(value)
