"""Build a serialized TensorRT engine from an exported ONNX file (TensorRT 10 Python API).

Steps, in TensorRT 10 terms:

1. ``trt.init_libnvinfer_plugins(logger, "")`` registers libnvinfer_plugin's creators, among them
   ``MultiscaleDeformableAttnPlugin_TRT`` that the ``plugin`` export refers to.
2. ``builder.create_network(0)``: TensorRT 10 networks are always explicit-batch, the
   ``EXPLICIT_BATCH`` flag is deprecated and ignored, so no creation flag is set.
3. ``trt.OnnxParser(network, logger).parse_from_file(path)``; on failure every parser error is
   reported (description, node index, name and operator, error code, source location).
4. ``BuilderConfig``: workspace memory-pool limit, timing cache loaded from and saved to a file,
   and for ``fp16`` the ``FP16`` builder flag. With ``msda_fp32`` the deformable-attention plugin
   layers (and the elementwise layers that compute their sampling locations) are pinned to fp32
   with ``OBEY_PRECISION_CONSTRAINTS``: the plugin's fp16 kernel does its location arithmetic in
   half precision, which loses whole pixels on large feature maps.
5. ``builder.build_serialized_network(network, config)``.

TensorRT 11 removed ``BuilderFlag.FP16`` (strong typing only): there, an fp16 build is refused
with that reason; fp32 builds use the same code.

``tensorrt`` is imported only inside :func:`import_tensorrt`; without it every entry point raises
`TensorRTUnavailable` with a one-line message.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zsp_ros.runtime.backends.engine_artifact import import_tensorrt, tensorrt_version
from zsp_ros.utils.provenance import atomic_write_bytes

PRECISIONS = ("fp32", "fp16")
PLUGIN_NAME = "MultiscaleDeformableAttnPlugin_TRT"
# layers between the sampling-offset projection and the plugin's sampling_locations input
_LOCATION_LAYER_TYPES = ("ELEMENTWISE", "SHUFFLE", "SLICE", "CONCATENATION", "UNARY")
_LOCATION_SEARCH_DEPTH = 6


class EngineBuildError(RuntimeError):
    """Parsing or building failed; the message holds every parser error or the builder's reason."""


@dataclass
class BuildReport:
    """What the build did (JSON-able via ``as_dict``)."""
    tensorrt_version: str
    precision: str
    msda_fp32: bool
    workspace_mb: int
    layers: int = 0
    plugin_layers: int = 0
    pinned_fp32_layers: list[str] = field(default_factory=list)
    timing_cache: str | None = None
    timing_cache_loaded_bytes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _parser_errors(parser: Any) -> list[str]:
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        parts = [str(error.desc())]

        def get(name: str) -> Any:
            fn = getattr(error, name, None)
            try:
                return fn() if callable(fn) else None
            except Exception:  # an accessor the installed version lacks or cannot answer
                return None

        node, node_name, op = get("node"), get("node_name"), get("node_operator")
        if node is not None and node >= 0:
            parts.append(f"node {node}" + (f" {node_name!r}" if node_name else "") + (f" ({op})" if op else ""))
        code = get("code")
        if code is not None:
            parts.append(f"code {code}")
        where = get("file")
        if where:
            parts.append(f"at {where}:{get('line')} {get('func') or ''}".rstrip())
        lines.append(f"  [{i}] " + "; ".join(parts))
    return lines


def _is_msda_plugin(trt: Any, layer: Any) -> bool:
    """A plugin layer made from one of our deformable-attention nodes.

    The parser names a layer after its ONNX node; the export names those nodes ``msda_plugin_{i}``
    (zsp_ros/export/msda_plugin_export.py), and a hand-made graph may carry the plugin's own name.
    """
    plugin_types = {getattr(trt.LayerType, n) for n in ("PLUGIN", "PLUGIN_V2", "PLUGIN_V3") if hasattr(trt.LayerType, n)}
    name = str(layer.name)
    return layer.type in plugin_types and ("msda_plugin" in name or PLUGIN_NAME in name)


def _pin_msda_fp32(trt: Any, network: Any) -> list[str]:
    """Pin the plugin layers and their location-computing producers to fp32; return the pinned layer names.

    From each plugin's ``sampling_locations`` input the walk goes back through float-valued
    elementwise / shuffle / slice / concatenation / unary layers (at most a few steps): the
    reference points + offsets / (W, H) arithmetic. Integer (shape) tensors are never touched.
    """
    producers: dict[str, Any] = {}
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    for layer in layers:
        for j in range(layer.num_outputs):
            producers[layer.get_output(j).name] = layer
    location_types = {getattr(trt.LayerType, n) for n in _LOCATION_LAYER_TYPES if hasattr(trt.LayerType, n)}
    float_types = {trt.float32, trt.float16}
    pinned: list[str] = []

    def is_float(tensor: Any) -> bool:         # shape tensors (int) feeding reshapes must keep their type
        return tensor is not None and tensor.dtype in float_types

    def pin(layer: Any) -> None:
        if layer.name in pinned:
            return
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)

    for layer in layers:
        if not _is_msda_plugin(trt, layer):
            continue
        pin(layer)
        # walk back from sampling_locations (input 3): reference points + offsets / (W, H)
        frontier = [layer.get_input(3)] if layer.num_inputs > 3 else []
        for _ in range(_LOCATION_SEARCH_DEPTH):
            following = []
            for tensor in frontier:
                producer = producers.get(tensor.name) if is_float(tensor) else None
                if producer is None or producer.type not in location_types:
                    continue
                if not all(is_float(producer.get_output(j)) for j in range(producer.num_outputs)):
                    continue
                pin(producer)
                following.extend(producer.get_input(k) for k in range(producer.num_inputs))
            frontier = following
    return pinned


def build_engine(onnx_path: str | Path, *, precision: str = "fp16", workspace_mb: int = 4096,
                 timing_cache: str | Path | None = None, msda_fp32: bool = False,
                 verbose: bool = False) -> tuple[bytes, BuildReport]:
    """Parse ``onnx_path`` and build a serialized engine for the GPU of this process.

    Args:
        onnx_path: an export from `zsp export onnx` (fixed input size; ``plugin`` or ``portable``).
        precision: "fp32" or "fp16" (fp16 flag; TensorRT keeps fp32 where fp16 has no kernel or is slower).
        workspace_mb: memory-pool limit for the builder's scratch space, MiB.
        timing_cache: file to read layer timings from (when it exists) and to write back after the
            build, so rebuilds on the same GPU and TensorRT version are fast.
        msda_fp32: in an fp16 engine, keep deformable attention (and its sampling-location
            arithmetic) in fp32.
        verbose: TensorRT logger at VERBOSE instead of WARNING.

    Returns:
        (serialized engine bytes, BuildReport).

    Raises:
        TensorRTUnavailable, EngineBuildError (every parser error listed), ValueError for bad arguments.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is unknown; choose from {', '.join(PRECISIONS)}")
    if workspace_mb <= 0:
        raise ValueError(f"workspace_mb must be positive, got {workspace_mb}")
    if msda_fp32 and precision != "fp16":
        raise ValueError("msda_fp32 only means something in an fp16 engine (an fp32 engine is fp32 throughout)")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ValueError(f"ONNX file {onnx_path} does not exist")
    trt = import_tensorrt()
    version = tensorrt_version(trt)
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < 10:
        raise EngineBuildError(f"TensorRT {version}: this builder is written for the TensorRT 10 API; "
                               "install TensorRT >= 10 (JetPack 6 has 10.3)")
    if precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16"):
        raise EngineBuildError(f"TensorRT {version} has no BuilderFlag.FP16 (removed in TensorRT 11, strong typing "
                               "only); build an fp32 engine, or use TensorRT 10.x for fp16")
    start = time.perf_counter()
    report = BuildReport(tensorrt_version=version, precision=precision, msda_fp32=msda_fp32,
                         workspace_mb=int(workspace_mb), timing_cache=str(timing_cache) if timing_cache else None)
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    if not trt.init_libnvinfer_plugins(logger, ""):
        raise EngineBuildError("trt.init_libnvinfer_plugins failed: libnvinfer_plugin could not register its "
                               f"plugins ({PLUGIN_NAME} is among them)")
    builder = trt.Builder(logger)
    network = builder.create_network(0)              # TensorRT 10: explicit batch always, no flag
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = _parser_errors(parser)
        raise EngineBuildError(f"TensorRT {version} could not parse {onnx_path} ({len(errors)} error(s)):\n"
                               + "\n".join(errors))
    report.layers = int(network.num_layers)
    report.plugin_layers = sum(_is_msda_plugin(trt, network.get_layer(i)) for i in range(network.num_layers))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    cache_bytes = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_bytes = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise EngineBuildError(f"timing cache {timing_cache} was made by another TensorRT version or GPU; "
                               "delete it or give another --timing-cache file")
    report.timing_cache_loaded_bytes = len(cache_bytes)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        if msda_fp32:
            if report.plugin_layers == 0:
                raise EngineBuildError(f"--msda-fp32 asked for, but {onnx_path} has no {PLUGIN_NAME} layers "
                                       "(export with --msda plugin)")
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            report.pinned_fp32_layers = _pin_msda_fp32(trt, network)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT {version} could not build an engine from {onnx_path} "
                               f"(precision {precision}, workspace {workspace_mb} MiB); see the TensorRT log above")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    report.seconds = round(time.perf_counter() - start, 3)
    return bytes(memoryview(serialized)), report
