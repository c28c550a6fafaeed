"""The parameters of ``zsp_node``: names, types, descriptions, when they apply, and validators.

Defaults are NOT written here: they live in ``config/zsp.yaml`` (ROS params-file format) and are
read by `load_defaults`. ``tests/test_node_parameters.py`` checks the spec against that file.

Each parameter applies at one moment (``ParamSpec.applies``):

- ``"configure"``: read by ``on_configure`` (kit, backend, QoS, ...); refused while the node is
  configured, because a new value would silently not take effect until the next configure.
- ``"live"``: read for every frame (thresholds, what to publish, rate cap); may change any time.
- ``"startup"``: read once by the constructor (``autostart``).

A validator takes the value and returns ``None`` when it is acceptable, else the reason it is not
(a sentence meant for the user: logs, ``SetParametersResult.reason``). Importing this module needs
only PyYAML; rcl_interfaces is imported by `descriptor`.

Numbers are taken as the parameter's type where that is exact (`coerce`): an integer for a double
parameter (``-p max_rate_hz:=5``, ``max_rate_hz: 5`` in a params file, ``ros2 param set ... 5``) is
that double; a double with an integral value for an integer parameter is that integer. The node
applies it to overrides before declaring and to every later change (a pre-set callback), because
rclpy's own type check would otherwise refuse them.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from zsp_ros.node.input_limits import LIMIT_RANGES, PARAMETER_FIELDS, InputLimits
from zsp_ros.runtime.backends import BACKENDS
from zsp_ros.utils.config_files import require_config

NODE_NAME = "zsp_node"
CONFIG_FILE = "zsp.yaml"
APPLIES = ("configure", "live", "startup")
Validator = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter.

    Attributes:
        name: the ROS parameter name.
        type: the Python type of its value (bool, int, float or str); ROS types follow from it.
        description: one sentence for ``ros2 param describe``.
        applies: "configure", "live" or "startup" (module docstring).
        constraints: human-readable allowed values (ParameterDescriptor.additional_constraints).
        validate: value -> None if acceptable, else the reason.
    """
    name: str
    type: type
    description: str
    applies: str
    constraints: str
    validate: Validator


# ------------------------------------------------------------------ validators

def _type_problem(value: Any, want: type) -> str | None:
    if want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, want)
    return None if ok else f"must be a {want.__name__}, got {type(value).__name__} {value!r}"


def _one_of(*choices: str) -> Validator:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}; got {value!r}"
    return check


def _backend(value: Any) -> str | None:
    if value in BACKENDS:
        return None
    return f"unknown backend {value!r}; this installation has {', '.join(sorted(BACKENDS))}"


_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")


def _device(value: Any) -> str | None:
    return None if _DEVICE.fullmatch(str(value)) else f"must be 'cpu', 'cuda' or 'cuda:N'; got {value!r}"


def _path_or_empty(what: str) -> Validator:
    def check(value: Any) -> str | None:
        if value != value.strip():
            return f"{what} {value!r} has leading or trailing whitespace"
        if "\x00" in value:
            return f"{what} contains a NUL character"
        return None
    return check


def _unit_interval(value: Any) -> str | None:
    v = float(value)
    return None if 0.0 <= v <= 1.0 else f"must lie in [0, 1]; got {value!r}"


def _unit_interval_or_kit(value: Any) -> str | None:
    v = float(value)
    return None if v == -1.0 or 0.0 <= v <= 1.0 else f"must be -1 (the kit's value) or lie in [0, 1]; got {value!r}"


def _size_or_zero(value: Any) -> str | None:
    if value == 0:
        return None
    return None if 32 <= value <= 8192 else f"must be 0 (the kit's) or a size in [32, 8192] pixels; got {value!r}"


def _rate(value: Any) -> str | None:
    v = float(value)
    return None if math.isfinite(v) and 0.0 <= v <= 1000.0 else \
        f"must be 0 (no cap) or a rate in (0, 1000] frames per second; got {value!r}"


def _period(value: Any) -> str | None:
    v = float(value)
    return None if math.isfinite(v) and 0.05 <= v <= 3600.0 else \
        f"must be a period in [0.05, 3600] seconds; got {value!r}"


def _stall(value: Any) -> str | None:
    v = float(value)
    return None if math.isfinite(v) and 0.1 <= v <= 86400.0 else \
        f"must be a time in [0.1, 86400] seconds; got {value!r}"


def _seconds_or_zero(value: Any) -> str | None:
    v = float(value)
    return None if v == 0.0 or (math.isfinite(v) and 0.1 <= v <= 86400.0) else \
        f"must be 0 (never) or a time in [0.1, 86400] seconds; got {value!r}"


def _threads(value: Any) -> str | None:
    return None if 0 <= value <= 256 else f"must be 0 (automatic) or a thread count in [1, 256]; got {value!r}"


def _overlay_side(value: Any) -> str | None:
    return None if 0 <= value <= 4096 else f"must be 0 (never enlarge) or a size in [1, 4096] pixels; got {value!r}"


def _input_limit(name: str) -> Validator:
    low, high = LIMIT_RANGES[PARAMETER_FIELDS[name]]

    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must lie in [{low}, {high}]; got {value!r}"
    return check


def _any(value: Any) -> str | None:
    return None


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("kit", str, "Model kit directory; empty = the embedded kit (zsp_ros/kits/default).",
              "configure", "an existing kit directory, or empty", _path_or_empty("kit path")),
    ParamSpec("backend", str, "Inference backend that runs the network.",
              "configure", "torch, onnxruntime or tensorrt (those installed)", _backend),
    ParamSpec("device", str, "Device the backend runs on.", "configure", "cpu, cuda or cuda:N", _device),
    ParamSpec("precision", str, "Numeric precision of the network (fp16 needs a CUDA device).",
              "configure", "fp32 or fp16", _one_of("fp32", "fp16")),
    ParamSpec("onnx_path", str, "ONNX export of the kit's network for the onnxruntime backend (`zsp export "
              "onnx --msda portable`) or for the tensorrt backend to build an engine from; empty = none.",
              "configure", "an existing .onnx file (backend onnxruntime or tensorrt), or empty",
              _path_or_empty("ONNX path")),
    ParamSpec("engine_path", str, "Serialized TensorRT engine (with its JSON sidecar, `zsp engine build`) "
              "for the tensorrt backend; empty = none.", "configure",
              "an existing engine file (backend tensorrt), or empty", _path_or_empty("engine path")),
    ParamSpec("state_dir", str, "Directory where added and removed categories persist across restarts; "
              "empty = in memory only.", "configure", "a writable directory, or empty",
              _path_or_empty("state directory")),
    ParamSpec("input_short_side", int, "Network input: resize the image's short side to this many "
              "pixels; 0 = the kit's value.", "configure", "0 or 32..8192", _size_or_zero),
    ParamSpec("input_max_long_side", int, "Network input: cap the long side at this many pixels; "
              "0 = the kit's value.", "configure", "0 or 32..8192", _size_or_zero),
    ParamSpec("image_transport", str, "How the camera's frames arrive: raw subscribes to 'image' "
              "(sensor_msgs/Image), compressed to '<resolved image topic>/compressed' "
              "(sensor_msgs/CompressedImage, JPEG or PNG), so a remap of 'image' applies to both; one "
              "subscription at a time, as image_transport does.", "configure", "raw or compressed",
              _one_of("raw", "compressed")),
    ParamSpec("input_reliability", str, "QoS reliability of the image subscription (KEEP_LAST, depth 1). "
              "reliable (default) receives large frames whole and connects to reliable publishers (most "
              "camera drivers); best_effort also connects to best-effort publishers but loses large frames "
              "when DDS fragments are dropped.", "configure", "reliable or best_effort",
              _one_of("best_effort", "reliable")),
    ParamSpec("subscribe_compressed", bool, "Deprecated: use image_transport. true means "
              "image_transport compressed (logged as a warning at configure).", "configure", "true or false", _any),
    ParamSpec("depth_encoding_policy", str, "What to do with frames whose encoding is not a picture "
              "(16UC1 or 32FC1 depth, mono16, 32SC1): refuse counts them as refused_not_picture and skips "
              "them; normalise scales each frame's valid range (finite, non-zero) to grey 0..255.", "live",
              "refuse or normalise", _one_of("refuse", "normalise")),
    ParamSpec("threads", int, "CPU threads of the network (torch intra-op); 0 = automatic "
              "(zsp_ros.utils.cpu_threads: one thread unless measured otherwise, at most the CPUs this "
              "process may use).", "configure", "0..256", _threads),
    ParamSpec("diagnostics_period_s", float, "Period of the /diagnostics messages, seconds.",
              "configure", "0.05..3600", _period),
    ParamSpec("object_mask_threshold", float, "Keep a query whose class probability exceeds this "
              "(Mask2Former panoptic inference); -1 = the value the kit records (its metrics were "
              "measured with it).", "live", "-1 or 0..1", _unit_interval_or_kit),
    ParamSpec("overlap_threshold", float, "Keep a mask when at least this share of it stays visible after "
              "overlaps are resolved (Mask2Former panoptic inference); -1 = the kit's value.", "live",
              "-1 or 0..1", _unit_interval_or_kit),
    ParamSpec("publish_semantic", bool, "Publish the semantic map on 'semantic' (16UC1 category ids).",
              "live", "true or false", _any),
    ParamSpec("publish_overlay", bool, "Publish the rgb8 overlay on 'overlay' (for rviz).",
              "live", "true or false", _any),
    ParamSpec("publish_color_mask", bool, "Publish 'color_mask' (rgb8, one fixed colour per category id, "
              "the same in every frame and run; black = void; no text).", "live", "true or false", _any),
    ParamSpec("id_image_encoding", str, "Encoding of PanopticSegmentation.id_image: 16UC1 (rviz shows it; "
              "32SC1 for a frame whose ids exceed 65535, logged once) or 32SC1 always.", "live",
              "16UC1 or 32SC1", _one_of("16UC1", "32SC1")),
    ParamSpec("output_resolution", str, "Size of every output image: input (the camera frame's) or "
              "network (the kit's resize rule applied to the frame, e.g. 192x128 for 640x480: less to "
              "upsample, send and receive).", "live", "input or network", _one_of("input", "network")),
    ParamSpec("overlay_min_side", int, "Draw the overlay of a frame whose short side is below this many "
              "pixels enlarged by a whole factor (nearest) so labels stay legible; 0 = never enlarge.",
              "live", "0..4096", _overlay_side),
    ParamSpec("max_rate_hz", float, "Process at most this many frames per second (newer frames replace "
              "waiting ones); 0 = as fast as possible. A change takes effect within 0.1 s.", "live", "0..1000",
              _rate),
    ParamSpec("stall_warn_s", float, "Diagnostics WARN when a received frame has waited this long with no "
              "frame processed since (plus 1 / max_rate_hz when the rate is capped).", "live", "0.1..86400",
              _stall),
    ParamSpec("stall_error_s", float, "Diagnostics ERROR when a received frame has waited this long with no "
              "frame processed since (plus 1 / max_rate_hz when capped), or the inference thread is dead.",
              "live", "0.1..86400", _stall),
    ParamSpec("no_frames_warn_s", float, "After activation, WARN (log and /diagnostics) when no frame has "
              "arrived for this many seconds, naming the topic, its publishers and their QoS, and the likely "
              "cause; 0 = never.", "live", "0 or 0.1..86400", _seconds_or_zero),
    ParamSpec("max_input_pixels", int, "Refuse (as malformed, cause too_large) a frame of more pixels than "
              "this, raw or compressed; a compressed frame is checked from its header, before decoding.",
              "live", "1..89478485", _input_limit("max_input_pixels")),
    ParamSpec("max_compressed_bytes", int, "Refuse a CompressedImage whose data is longer than this many bytes.",
              "live", "1..1073741824", _input_limit("max_compressed_bytes")),
    ParamSpec("max_raw_bytes", int, "Refuse an Image whose data (height x step) is longer than this many bytes.",
              "live", "1..4294967296", _input_limit("max_raw_bytes")),
    ParamSpec("max_text_chunk_bytes", int, "Refuse a PNG whose metadata chunks (tEXt, zTXt, iTXt, iCCP; "
              "inflated, all together) exceed this many bytes.", "live", "0..1048576",
              _input_limit("max_text_chunk_bytes")),
    ParamSpec("max_jpeg_scans", int, "Refuse a JPEG of more scans than this (each progressive scan is a pass "
              "over the whole picture).", "live", "1..1000", _input_limit("max_jpeg_scans")),
    ParamSpec("unconfigured_warn_s", float, "Log a WARN when the node is still unconfigured this many seconds "
              "after start-up (nothing configured it: autostart false and no lifecycle manager); 0 = never.",
              "startup", "0 or 0.1..86400", _seconds_or_zero),
    ParamSpec("autostart", bool, "Configure and activate at start-up, without a lifecycle manager.",
              "startup", "true or false", _any),
)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def coerce(name: str, value: Any) -> Any:
    """``value`` as parameter ``name``'s type where the conversion is exact, else unchanged.

    int -> float for a float parameter; a float with an integral value -> int for an int parameter.
    Booleans, strings and inexact numbers are returned as given (the type check refuses them).
    """
    spec = SPECS.get(name)
    if spec is None or isinstance(value, bool):
        return value
    if spec.type is float and isinstance(value, int):
        as_float = float(value)
        return as_float if int(as_float) == value else value
    if spec.type is int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def check_value(name: str, value: Any) -> str | None:
    """None if ``value`` is acceptable for parameter ``name``, else the reason (naming the parameter)."""
    spec = SPECS.get(name)
    if spec is None:
        return f"{name}: not a parameter of {NODE_NAME}"
    problem = _type_problem(value, spec.type) or spec.validate(value)
    return None if problem is None else f"{name}: {problem}"


def check_all(values: Mapping[str, Any]) -> list[str]:
    """Every problem of a full set of values (missing parameters included), in spec order."""
    problems = [f"{p.name}: missing" for p in PARAMETERS if p.name not in values]
    problems += [msg for p in PARAMETERS if p.name in values
                 for msg in [check_value(p.name, values[p.name])] if msg]
    return problems


# ------------------------------------------------------------------ backend files (checked at configure)

FILE_PARAMETERS = {"onnx_path": ("onnx", ("onnxruntime", "tensorrt")),   # parameter -> (backend option,
                   "engine_path": ("engine", ("tensorrt",))}             #               backends reading it)


def check_backend_files(values: Mapping[str, Any]) -> list[str]:
    """Problems of the backend file parameters against ``backend``, and the files themselves.

    A file parameter is refused when the chosen backend does not read it or when nothing is there;
    onnxruntime needs ``onnx_path`` and tensorrt ``engine_path`` or ``onnx_path``. Checked at
    configure only: the parameters may be set one at a time, in any order, before it.
    """
    backend = values.get("backend")
    problems = []
    for name, (_, backends) in FILE_PARAMETERS.items():
        path = values.get(name) or ""
        if not path:
            continue
        if backend not in backends:
            problems.append(f"{name}: set to {path!r} but backend is {backend!r}; {name} is read by the "
                            f"{' and '.join(backends)} backend{'s' if len(backends) > 1 else ''} only "
                            f"(clear it or change backend)")
        elif not Path(path).expanduser().is_file():
            problems.append(f"{name}: no file at {path!r}")
    if backend == "onnxruntime" and not values.get("onnx_path"):
        problems.append("onnx_path: the onnxruntime backend runs a fixed-size ONNX file; export one with "
                        "`zsp export onnx --kit KIT --size HxW --msda portable` and set onnx_path")
    if backend == "tensorrt" and not values.get("engine_path") and not values.get("onnx_path"):
        problems.append("engine_path: the tensorrt backend needs engine_path (`zsp engine build`) or onnx_path "
                        "(an export to build an engine from); both are empty")
    return problems


def input_limits(values: Mapping[str, Any]) -> InputLimits:
    """The frame size limits (`zsp_ros.node.input_limits.InputLimits`) from the parameter values."""
    return InputLimits.from_parameters({name: values[name] for name in PARAMETER_FIELDS})


def backend_options(values: Mapping[str, Any]) -> dict[str, str]:
    """The backend factory's file options from the parameters (``onnx``, ``engine``); {} for torch.

    Call after `check_backend_files` found no problem.
    """
    backend = values.get("backend")
    return {option: str(Path(values[name]).expanduser()) for name, (option, backends) in FILE_PARAMETERS.items()
            if values.get(name) and backend in backends}


# ------------------------------------------------------------------ defaults (config/zsp.yaml)

def default_config_path() -> Path:
    """config/zsp.yaml: the source checkout's, else the installed package share's.

    Raises FileNotFoundError listing where it looked.
    """
    return require_config(CONFIG_FILE)


def node_section(document: Any, *, source: str) -> dict[str, Any]:
    """The ``ros__parameters`` mapping of the zsp_node entry of a params-file document.

    Accepts the keys ``zsp_node``, ``/zsp_node``, ``/**/zsp_node`` and ``/**``, as rcl does.
    """
    if not isinstance(document, Mapping):
        raise ValueError(f"{source}: expected a mapping of node names, got {type(document).__name__}")
    keys = [k for k in document if isinstance(k, str) and
            (k.strip("/") == NODE_NAME or k.endswith("/" + NODE_NAME) or k == "/**")]
    if len(keys) != 1:
        raise ValueError(f"{source}: expected exactly one entry for {NODE_NAME} (e.g. '/**/{NODE_NAME}'), "
                         f"found {keys or 'none'} among {list(document)}")
    entry = document[keys[0]]
    if not isinstance(entry, Mapping) or not isinstance(entry.get("ros__parameters"), Mapping):
        raise ValueError(f"{source}: {keys[0]} must hold a 'ros__parameters' mapping")
    return dict(entry["ros__parameters"])


def load_defaults(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The default of every parameter, from ``path`` (default: `default_config_path`).

    Raises ValueError naming the file when a parameter is missing, unknown, or has a bad default.
    """
    import yaml

    path = Path(path) if path is not None else default_config_path()
    with path.open(encoding="utf-8") as f:
        values = node_section(yaml.safe_load(f), source=str(path))
    values = {name: coerce(name, value) for name, value in values.items()}
    unknown = sorted(set(values) - set(SPECS))
    problems = ([f"unknown parameter(s) {unknown}"] if unknown else []) + check_all(values)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return {p.name: values[p.name] for p in PARAMETERS}


# ------------------------------------------------------------------ ROS descriptors

def descriptor(spec: ParamSpec) -> Any:
    """rcl_interfaces/ParameterDescriptor of ``spec`` (type, description, constraints, ranges)."""
    from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, ParameterType

    ros_type = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}[spec.type]
    text = spec.description + {"configure": " Read at configure.", "live": " Applies at once.",
                               "startup": " Read at start-up."}[spec.applies]
    d = ParameterDescriptor(name=spec.name, type=ros_type, description=text,
                            additional_constraints=spec.constraints, read_only=spec.applies == "startup")
    if spec.validate is _unit_interval:
        d.floating_point_range = [FloatingPointRange(from_value=0.0, to_value=1.0, step=0.0)]
    elif spec.validate is _rate:
        d.floating_point_range = [FloatingPointRange(from_value=0.0, to_value=1000.0, step=0.0)]
    elif spec.validate is _period:
        d.floating_point_range = [FloatingPointRange(from_value=0.05, to_value=3600.0, step=0.0)]
    elif spec.validate is _stall:
        d.floating_point_range = [FloatingPointRange(from_value=0.1, to_value=86400.0, step=0.0)]
    return d


def image_transport(values: Mapping[str, Any]) -> tuple[str, str | None]:
    """(the transport to use, a deprecation warning or None) from ``image_transport`` and the
    deprecated ``subscribe_compressed`` (true means compressed)."""
    if values.get("subscribe_compressed"):
        return "compressed", ("subscribe_compressed is deprecated and will be removed: set image_transport:="
                              "compressed instead (now using the compressed transport only)")
    return str(values["image_transport"]), None

