"""fake_tensorrt: a small stand-in for NVIDIA's ``tensorrt`` module, for tests on machines without TensorRT.

NOT TensorRT. It implements only the subset of the TensorRT 10 Python API that zsp_ros calls, with
the same names, so the builder, engine cache and backend control flow can run here:

- ``OnnxParser.parse_from_file`` reads the ONNX file with ``onnx`` and makes one layer per node
  (``msda_plugin_*`` plugin nodes become ``LayerType.PLUGIN_V2`` layers, Add/Mul/... ELEMENTWISE,
  Reshape/Transpose SHUFFLE, ...); ops in ``UNSUPPORTED_OPS`` produce parser errors instead.
- ``Builder.build_serialized_network`` returns JSON bytes describing the "engine": its I/O tensors,
  builder flags, memory-pool limit and the layers pinned to fp32 (``FAIL_BUILD`` makes it fail).
- ``Runtime.deserialize_cuda_engine`` reads those bytes back; ``IExecutionContext.execute_async_v3``
  reads the bound input through its raw address and writes the outputs through theirs (ctypes),
  as a GPU kernel would: ``mask_logits`` = mean of the input + the flat index / 1000,
  ``query_embeds`` = the flat index / 100.

Tests install it with ``monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.fresh())``.
"""
from __future__ import annotations

import ctypes
import json
import types

import numpy as np

PLUGIN_OP = "MultiscaleDeformableAttnPlugin_TRT"
_LAYER_TYPES = {"Add": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Div": "ELEMENTWISE",
                "Reshape": "SHUFFLE", "Transpose": "SHUFFLE", "Unsqueeze": "SHUFFLE", "Squeeze": "SHUFFLE",
                "Flatten": "SHUFFLE", "Slice": "SLICE", "Concat": "CONCATENATION", "Constant": "CONSTANT",
                "MatMul": "MATRIX_MULTIPLY", "Gemm": "MATRIX_MULTIPLY", "Conv": "CONVOLUTION", "Sqrt": "UNARY",
                "Exp": "UNARY", "Neg": "UNARY", "Softmax": "SOFTMAX"}


def fresh(version: str = "10.3.0") -> types.ModuleType:
    """A new, independent fake module (state such as call records is per module)."""
    m = types.ModuleType("fake_tensorrt")
    m.__version__ = version
    m.__doc__ = __doc__
    m.CALLS = []                      # ("init_plugins", ns), ("create_network", flags), ("deserialize",), ...
    m.UNSUPPORTED_OPS = set()
    m.FAIL_BUILD = False
    m.TIMING_CACHE_TAG = f"fake-timing-cache {version}"

    class Logger:
        VERBOSE, INFO, WARNING, ERROR = "VERBOSE", "INFO", "WARNING", "ERROR"

        def __init__(self, severity="WARNING"):
            self.severity = severity

    def init_libnvinfer_plugins(logger, namespace):
        m.CALLS.append(("init_plugins", namespace))
        return True

    LayerType = types.SimpleNamespace(**{n: n for n in ("PLUGIN_V2", "PLUGIN_V3", "ELEMENTWISE", "SHUFFLE", "SLICE",
                                                        "CONCATENATION", "UNARY", "CONSTANT", "MATRIX_MULTIPLY",
                                                        "CONVOLUTION", "SOFTMAX", "OTHER")})
    DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", INT32="INT32", INT64="INT64", BOOL="BOOL", INT8="INT8")
    BuilderFlag = types.SimpleNamespace(FP16="FP16", OBEY_PRECISION_CONSTRAINTS="OBEY_PRECISION_CONSTRAINTS")
    MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")

    class ITensor:
        def __init__(self, name, shape=(), dtype="FLOAT"):
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class ILayer:
        def __init__(self, name, type_, inputs, outputs):
            self.name, self.type = name, type_
            self._inputs, self._outputs = inputs, outputs
            self.precision = None
            self.output_types = {}

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))

        def get_input(self, i):
            return self._inputs[i]

        def get_output(self, i):
            return self._outputs[i]

        def set_output_type(self, i, dtype):
            self.output_types[i] = dtype

    class INetworkDefinition:
        def __init__(self, flags):
            self.flags = flags
            self.layers, self.inputs, self.outputs = [], [], []

        num_layers = property(lambda self: len(self.layers))

        def get_layer(self, i):
            return self.layers[i]

    class ParserError:
        def __init__(self, desc, node, node_name, op):
            self._desc, self._node, self._name, self._op = desc, node, node_name, op

        def desc(self):
            return self._desc

        def node(self):
            return self._node

        def node_name(self):
            return self._name

        def node_operator(self):
            return self._op

        def code(self):
            return "UNSUPPORTED_NODE"

        def file(self):
            return "ModelImporter.cpp"

        def line(self):
            return 42

        def func(self):
            return "parseNode"

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.errors = []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def parse_from_file(self, path):
            import onnx

            model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
            elem = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
            elem.update({n.output[0]: n.attribute[0].t.data_type for n in model.graph.node if n.op_type == "Constant"})
            names = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF", onnx.TensorProto.INT32: "INT32",
                     onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL"}
            tensors = {}

            def tensor(name):
                return tensors.setdefault(name, ITensor(name, dtype=names.get(elem.get(name), "FLOAT")))

            for i in model.graph.input:
                tensors[i.name] = ITensor(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim])
                self.network.inputs.append(tensors[i.name])
            for index, node in enumerate(model.graph.node):
                if node.op_type in m.UNSUPPORTED_OPS:
                    self.errors.append(ParserError(f"No importer registered for op: {node.op_type}", index,
                                                   node.name, node.op_type))
                    continue
                type_ = "PLUGIN_V2" if node.op_type == PLUGIN_OP else _LAYER_TYPES.get(node.op_type, "OTHER")
                layer = ILayer(node.name or f"node_{index}", type_, [tensor(n) for n in node.input],
                               [tensor(n) for n in node.output])
                self.network.layers.append(layer)
            for o in model.graph.output:
                t = tensor(o.name)
                t.shape = tuple(d.dim_value for d in o.type.tensor_type.shape.dim)
                self.network.outputs.append(t)
            return not self.errors

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)
            self.foreign = bool(self.data) and not self.data.startswith(m.TIMING_CACHE_TAG.encode())

        def serialize(self):
            return m.TIMING_CACHE_TAG.encode() + b" entries"

    class IBuilderConfig:
        def __init__(self):
            self.flags, self.pool_limits, self.timing_cache = set(), {}, None

        def set_flag(self, flag):
            self.flags.add(flag)

        def set_memory_pool_limit(self, pool, size):
            self.pool_limits[pool] = size

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.foreign and not ignore_mismatch:
                return False
            self.timing_cache = cache
            return True

        def get_timing_cache(self):
            return self.timing_cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            m.CALLS.append(("create_network", flags))
            return INetworkDefinition(flags)

        def create_builder_config(self):
            return IBuilderConfig()

        def build_serialized_network(self, network, config):
            m.CALLS.append(("build",))
            if m.FAIL_BUILD:
                return None
            engine = {"version": m.__version__, "flags": sorted(config.flags), "pools": config.pool_limits,
                      "pinned": {layer.name: [layer.precision, layer.output_types] for layer in network.layers
                                 if layer.precision is not None},
                      "io": [[t.name, list(t.shape), "INPUT"] for t in network.inputs]
                      + [[t.name, list(t.shape), "OUTPUT"] for t in network.outputs]}
            return json.dumps(engine).encode()

    class IExecutionContext:
        def __init__(self, engine):
            self.engine = engine
            self.addresses = {}

        def set_tensor_address(self, name, address):
            self.addresses[name] = int(address)
            return True

        def execute_async_v3(self, stream_handle):
            m.CALLS.append(("execute", stream_handle))
            shapes = {name: shape for name, shape, _ in self.engine.io}

            def view(name):
                count = int(np.prod(shapes[name]))
                buffer = (ctypes.c_float * count).from_address(self.addresses[name])
                return np.ctypeslib.as_array(buffer).reshape(shapes[name])

            mean = float(view("images").mean())
            masks, embeds = view("mask_logits"), view("query_embeds")
            masks[...] = mean + np.arange(masks.size, dtype=np.float32).reshape(masks.shape) / 1000
            embeds[...] = np.arange(embeds.size, dtype=np.float32).reshape(embeds.shape) / 100
            return True

    class ICudaEngine:
        def __init__(self, description):
            self.io = description["io"]

        num_io_tensors = property(lambda self: len(self.io))

        def get_tensor_name(self, i):
            return self.io[i][0]

        def get_tensor_mode(self, name):
            return next(mode for n, _, mode in self.io if n == name)

        def get_tensor_shape(self, name):
            return next(shape for n, shape, _ in self.io if n == name)

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def create_execution_context(self):
            return IExecutionContext(self)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            m.CALLS.append(("deserialize",))
            return ICudaEngine(json.loads(bytes(data)))

    for name, value in dict(locals()).items():
        if not name.startswith("_") and name not in ("m", "version"):
            setattr(m, name, value)
    m.float32, m.float16 = DataType.FLOAT, DataType.HALF
    return m

