"""zsp_node: zero-shot panoptic segmentation as a ROS 2 LifecycleNode (a thin layer over the runtime).

Lifecycle (each callback returns FAILURE with a logged reason instead of raising):
- constructor: declares the parameters (zsp_ros.node.parameters; defaults from config/zsp.yaml)
  and offers the category services, which answer "not configured" until configure.
- configure: validates every parameter, loads the model kit and the category registry
  (`Segmenter.from_kit`), runs one warm-up frame.
- activate: creates the publishers, the image subscriptions, the inference thread and the
  diagnostics timer; publishes label_info.
- deactivate: stops and destroys all of that. cleanup: releases the model and the state directory.

Topics (relative names, remap them): subscribes ``image`` (sensor_msgs/Image) and, when
``subscribe_compressed`` is true, ``image/compressed``, both KEEP_LAST depth 1 with
``input_reliability``. Publishes ``panoptic`` (zsp_msgs/PanopticSegmentation, header of the input),
``semantic`` (16UC1 category ids), ``overlay`` (rgb8), ``label_info`` (zsp_msgs/CategorySet,
transient local, republished on every change) and ``/diagnostics``.

Services: ``add_categories``, ``remove_categories``, ``list_categories`` (zsp_msgs). Every failure is
``success=false`` with a message saying why; no exception leaves a callback.

Threads: subscription callbacks only drop the message into a one-slot mailbox (`LatestFrame`),
so a slow model always processes the newest frame and every replaced frame is counted as dropped.
One inference thread takes frames from it (honouring ``max_rate_hz``) and publishes. Category
writes run in their own callback group of a MultiThreadedExecutor; the runtime's registry swaps
its head atomically, so frames keep flowing while a category is being added.
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
from zsp_ros.node.category_services import CategoryServices
from zsp_ros.node.frame_input import CauseThrottle, LatestFrame, malformed_cause
from zsp_ros.node.frame_stats import FrameStats
from zsp_ros.node.image_conversion import check_picture, to_rgb8
from zsp_ros.node.image_encodings import ImageConversionError
from zsp_ros.node.messages import (
    category_set_message,
    diagnostic_message,
    overlay_message,
    panoptic_message,
    semantic_message,
)
from zsp_ros.runtime.segmenter import Segmenter

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE
LOG_PERIOD_S = 10.0          # a repeated problem (same cause) is logged at most this often


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
        for spec in params.PARAMETERS:
            self.declare_parameter(spec.name, defaults[spec.name], params.descriptor(spec))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._segmenter: Any = None          # zsp_ros.runtime.segmenter.Segmenter while configured
        self._kit_dir = ""
        self._registry_lock = threading.Lock()   # category writes vs. cleanup
        self._io_lock = threading.Lock()         # publishers vs. transitions
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._timer: Any = None
        self._slot: LatestFrame | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._stats = FrameStats()
        self._throttle = CauseThrottle(period_s=LOG_PERIOD_S)
        self._last_problems = 0

        self._input_group = ReentrantCallbackGroup()
        self._write_group = MutuallyExclusiveCallbackGroup()
        self._read_group = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        from zsp_msgs.srv import AddCategories, ListCategories, RemoveCategories
        services = CategoryServices(segmenter=lambda: self._segmenter, lock=self._registry_lock,
                                    logger=self.get_logger(), lifecycle_state=self.lifecycle_state,
                                    stamp=self._stamp, on_changed=self._publish_label_info)
        self.create_service(AddCategories, "add_categories", services.on_add, callback_group=self._write_group)
        self.create_service(RemoveCategories, "remove_categories", services.on_remove,
                            callback_group=self._write_group)
        self.create_service(ListCategories, "list_categories", services.on_list, callback_group=self._read_group)

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
            segmenter = Segmenter.from_kit(
                kit, backend=values["backend"], device=values["device"], precision=values["precision"],
                state_dir=values["state_dir"] or None, short_side=values["input_short_side"] or None,
                max_long_side=values["input_max_long_side"] or None,
                object_mask_threshold=_threshold_or_kit(values["object_mask_threshold"]),
                overlap_threshold=_threshold_or_kit(values["overlap_threshold"]), semantic=values["publish_semantic"],
                backend_options=params.backend_options(values), backend_factory=build_backend_with_artifacts)
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
        self._segmenter, self._kit_dir = segmenter, str(kit)
        cats = registry.list()
        fixed = segmenter.fixed_hw
        size = f"fixed {fixed[0]}x{fixed[1]}" if fixed else "resized per frame"
        self.get_logger().info(
            f"configured in {time.perf_counter() - t0:.1f} s: kit {kit}, backend {values['backend']} on "
            f"{values['device']} (network input {size}), {len(cats)} categories (version {cats.version}, "
            f"{sum(c.origin == 'added' for c in cats)} added), state "
            f"{values['state_dir'] or 'in memory'}")
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
        self._publish_label_info()
        self.get_logger().info(f"active: subscribed to {', '.join(s.topic_name for s in self._subs)}")
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
                "panoptic": self.create_publisher(PanopticSegmentation, "panoptic", qos_out),
                "semantic": self.create_publisher(Image, "semantic", qos_out),
                "overlay": self.create_publisher(Image, "overlay", qos_out),
                "label_info": self.create_publisher(CategorySet, "label_info", qos_latched),
                "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", 10),
            }
        self._stats = FrameStats()
        self._last_problems = 0
        self._slot = LatestFrame()
        self._stop.clear()
        self._worker = threading.Thread(target=self._inference_loop, args=(self._slot,),
                                         name="zsp-inference", daemon=True)
        self._worker.start()
        self._timer = self.create_timer(values["diagnostics_period_s"], self._publish_diagnostics,
                                        callback_group=self._timer_group)
        self._subs = [self.create_subscription(Image, "image", self._on_frame, qos_in,
                                               callback_group=self._input_group)]
        if values["subscribe_compressed"]:
            self._subs.append(self.create_subscription(CompressedImage, "image/compressed", self._on_frame,
                                                       qos_in, callback_group=self._input_group))

    def _close_io(self) -> None:
        """Stop the inference thread first, then destroy subscriptions, timer and publishers. Idempotent."""
        self._stop.set()
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

    def _release_model(self) -> None:
        with self._registry_lock:
            segmenter, self._segmenter = self._segmenter, None
        if segmenter is not None:
            segmenter.close()
            del segmenter
            gc.collect()

    # ------------------------------------------------------------------ frames
    def _on_frame(self, msg: Any) -> None:
        """Subscription callback: reject what is malformed on its face, else put into the mailbox.

        The header check is O(1) (no decode, no copy), so a broken frame is counted even when the
        inference thread is busy, and it never displaces a good frame waiting in the mailbox.
        """
        slot = self._slot
        if slot is None:
            return
        try:
            check_picture(msg)
        except ImageConversionError as exc:
            self._stats.on_received(replaced=False)
            self._skip_malformed(exc)
            return
        self._stats.on_received(replaced=slot.put((msg, time.perf_counter())))

    def _inference_loop(self, slot: LatestFrame) -> None:
        next_start = 0.0
        while not self._stop.is_set():
            wait = next_start - time.perf_counter()
            if wait > 0 and self._stop.wait(wait):
                break
            item = slot.take(timeout=0.25)
            if item is None:
                continue
            started = time.perf_counter()
            rate = float(self.get_parameter("max_rate_hz").value)
            next_start = started + 1.0 / rate if rate > 0 else 0.0
            self._process(*item)

    def _process(self, msg: Any, received: float) -> None:
        """Segment one frame and publish; a malformed or failing frame is counted, logged, skipped."""
        segmenter, pubs = self._segmenter, self._pubs
        if segmenter is None or not pubs:
            return
        try:
            rgb = to_rgb8(msg)
        except ImageConversionError as exc:            # e.g. compressed bytes that do not decode
            self._skip_malformed(exc)
            return
        try:
            values = {name: self.get_parameter(name).value for name in
                      ("object_mask_threshold", "overlap_threshold", "publish_semantic", "publish_overlay")}
            want_semantic = values["publish_semantic"] and pubs["semantic"].get_subscription_count() > 0
            want_overlay = values["publish_overlay"] and pubs["overlay"].get_subscription_count() > 0
            result = segmenter.segment(                       # thresholds -1: the kit's (the Segmenter's own)
                rgb, object_mask_threshold=_threshold_or_kit(values["object_mask_threshold"]),
                overlap_threshold=_threshold_or_kit(values["overlap_threshold"]), semantic=bool(want_semantic))
            t_publish = time.perf_counter()
            pubs["panoptic"].publish(panoptic_message(result, msg.header))
            if want_semantic and result.semantic is not None:
                pubs["semantic"].publish(semantic_message(result.semantic, msg.header))
            if want_overlay:
                pubs["overlay"].publish(overlay_message(rgb, result, msg.header))
            done = time.perf_counter()
        except Exception as exc:
            self._stats.on_failed()
            self._log_throttled(f"failed:{type(exc).__name__}", f"frame failed: {type(exc).__name__}: {exc}\n"
                                f"{traceback.format_exc(limit=4)}")
            return
        timings = result.timings_ms
        self._stats.on_processed({"preprocess": timings.get("preprocess", 0.0), "model": timings.get("model", 0.0),
                                  "postprocess": timings.get("postprocess", 0.0),
                                  "publish": (done - t_publish) * 1e3, "node": (done - received) * 1e3})

    def _skip_malformed(self, exc: ImageConversionError) -> None:
        cause = malformed_cause(exc)
        self._stats.on_malformed(cause)
        self._log_throttled(f"malformed:{cause}", f"skipping malformed image ({cause}): {exc}")

    def _log_throttled(self, cause: str, text: str) -> None:
        count = self._throttle.should_log(cause)
        if count is not None:
            more = f" [{count} such frames since the last report]" if count > 1 else ""
            self.get_logger().warning(f"{text}{more} (this cause is logged at most every {LOG_PERIOD_S:.0f} s)")

    # ------------------------------------------------------------------ outputs
    def _stamp(self) -> Any:
        return self.get_clock().now().to_msg()

    def _publish_label_info(self) -> None:
        from std_msgs.msg import Header

        segmenter = self._segmenter
        with self._io_lock:
            pub = self._pubs.get("label_info")
            if pub is None or segmenter is None:
                return
            pub.publish(category_set_message(segmenter.registry.list(), Header(stamp=self._stamp())))

    def _publish_diagnostics(self) -> None:
        try:
            segmenter, pub = self._segmenter, self._pubs.get("diagnostics")
            if segmenter is None or pub is None:
                return
            stats = self._stats.snapshot()
            cats = segmenter.registry.list()
            problems = stats["frames_malformed"] + stats["frames_failed"]
            level = "warn" if problems > self._last_problems else "ok"
            self._last_problems = problems
            values = {**stats, "category_set_version": cats.version, "categories": len(cats),
                      "categories_added": sum(c.origin == "added" for c in cats), "kit": self._kit_dir,
                      "backend": segmenter.backend.name}
            summary = (f"{stats['rate_hz']:.1f} Hz; {stats['frames_processed']} processed, "
                       f"{stats['frames_dropped']} dropped, {stats['frames_malformed']} malformed, "
                       f"{stats['frames_failed']} failed; category set v{cats.version}")
            pub.publish(diagnostic_message(name=f"{self.get_fully_qualified_name()}: zero-shot segmentation",
                                           hardware_id=str(getattr(segmenter.backend, "device", "")),
                                           level=level, summary=summary, values=values, stamp=self._stamp()))
        except Exception as exc:
            self._log_throttled("diagnostics", f"diagnostics not published: {type(exc).__name__}: {exc}")


def _threshold_or_kit(value: float) -> float | None:
    """A threshold parameter's value, or None for -1 (= use the kit's recorded threshold)."""
    return None if float(value) < 0.0 else float(value)
