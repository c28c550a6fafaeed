"""TensorRT backend: runs a serialized engine of the network with ``execute_async_v3`` on a CUDA stream.

Device memory is held by torch CUDA tensors (one per engine I/O tensor, bound by name with
``set_tensor_address``) and the stream is a ``torch.cuda.Stream``: torch already owns a CUDA
context, an allocator and streams in this process, so neither pycuda nor cuda-python is needed.

An engine is run only after its sidecar (engine_artifact.py) matched: the TensorRT version and GPU
in use, the requested precision, the kit (and the ONNX file, when given). Anything else is refused
with the reasons (`StaleEngineError`). This backend never builds: zsp_ros.export.on_demand exports
the ``plugin`` ONNX and builds or reuses an engine in the engine cache when the caller has none.

Without the ``tensorrt`` package, construction fails with a one-line `TensorRTUnavailable`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import numpy as np

from zsp_ros.runtime.backends.base import Backend, check_images
from zsp_ros.runtime.backends.engine_artifact import (
    EngineKey,
    StaleEngineError,
    check_engine,
    file_sha256,
    gpu_identity,
    import_tensorrt,
    read_sidecar,
    tensorrt_version,
)
from zsp_ros.runtime.backends.onnx_contract import INPUT_NAME, OUTPUT_NAMES
from zsp_ros.runtime.backends.torch_backend import resolve_device
from zsp_ros.utils.cpu_threads import apply_threads

LOG = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16")
def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
             "UINT8": torch.uint8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool}
    for name, torch_dtype in table.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return torch_dtype
    raise TypeError(f"engine tensor dtype {dtype} has no torch equivalent here")


class EngineIO:
    """An execution context of an engine with every I/O tensor bound, by name, to a preallocated torch tensor.

    Args:
        trt: the tensorrt module; engine: a deserialized ``ICudaEngine``.
        device: where the buffers live (the engine's CUDA device).
        where: the engine's name for error messages.

    The graph contract (onnx_contract.py) is checked: one input ``images`` [1,3,H,W] and the
    outputs ``mask_logits``, ``query_embeds``, all with static shapes.
    """

    def __init__(self, *, trt: Any, engine: Any, device: Any, where: str) -> None:
        import torch


        self.context = engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"{where}: could not create an execution context (GPU memory?)")
        self.buffers: dict[str, torch.Tensor] = {}
        inputs: list[str] = []
        outputs: list[str] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(int(s) for s in engine.get_tensor_shape(name))
            if any(s < 0 for s in shape):
                raise ValueError(f"{where}: tensor {name!r} has a dynamic shape {shape}; zsp engines are built "
                                 "from fixed-size ONNX exports")
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
            buffer = torch.empty(shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(name)), device=device)
            self.buffers[name] = buffer
            if not self.context.set_tensor_address(name, buffer.data_ptr()):
                raise RuntimeError(f"{where}: could not bind tensor {name!r}")
        if inputs != [INPUT_NAME] or sorted(outputs) != sorted(OUTPUT_NAMES):
            raise ValueError(f"{where}: engine has inputs {inputs} and outputs {outputs}, expected [{INPUT_NAME!r}] "
                             f"and {list(OUTPUT_NAMES)}")
        image_shape = tuple(self.buffers[INPUT_NAME].shape)
        if len(image_shape) != 4 or image_shape[0] != 1 or image_shape[1] != 3:
            raise ValueError(f"{where}: input {INPUT_NAME!r} has shape {image_shape}, expected [1,3,H,W]")
        self.input_hw = (image_shape[2], image_shape[3])
        self.where = where
        self._input_name = INPUT_NAME
        self._output_names = OUTPUT_NAMES

    def run(self, images: Any, stream_handle: int) -> tuple[Any, Any]:
        """Copy ``images`` in, ``execute_async_v3(stream_handle)``, return float32 copies of the two outputs.

        Call it with ``stream_handle``'s stream current (torch enqueues the copies on the current stream).
        """
        self.buffers[self._input_name].copy_(images, non_blocking=True)
        if not self.context.execute_async_v3(stream_handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.where}")
        masks, embeds = (self.buffers[name].float().clone() for name in self._output_names)
        return masks, embeds


class TensorRTBackend(Backend):
    """Run a TensorRT engine of ``forward_network`` (fixed input [1,3,H,W]).

    Args:
        engine_path: a serialized engine with its sidecar (`zsp engine build`).
        device: "cuda" or "cuda:N".
        precision: the precision the engine must have been built with ("fp32" / "fp16").
        kit_sha256: when given, the engine's ONNX must come from this kit.
        onnx_path: when given, the engine must have been built from exactly this file.

    Attributes:
        input_hw: the engine's fixed (H, W); the Segmenter's ``fixed_hw``.
        sidecar: the engine's sidecar.
    """

    name = "tensorrt"

    def __init__(self, *, engine_path: str | Path, device: str = "cuda", precision: str = "fp16",
                 kit_sha256: str | None = None, onnx_path: str | Path | None = None) -> None:
        trt = import_tensorrt()
        import torch


        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        dev = resolve_device(device)
        if dev.type != "cuda":
            raise ValueError(f"device {device!r}: TensorRT engines run on a CUDA GPU only; use 'cuda[:N]'")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        dev = torch.device("cuda", index)
        gpu_name, capability = gpu_identity(index)
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise StaleEngineError(f"engine {engine_path} does not exist; build it with `zsp engine build`")
        built = read_sidecar(engine_path)["key"]
        expected = EngineKey(onnx_sha256=file_sha256(onnx_path) if onnx_path else "",
                             tensorrt_version=tensorrt_version(trt), gpu_name=gpu_name, compute_capability=capability,
                             precision=precision, msda_fp32=built.msda_fp32)
        self.sidecar = check_engine(engine_path, expected=expected, kit_sha256=kit_sha256)

        self._logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self._logger, "")   # the deformable-attention plugin's creator
        with torch.cuda.device(dev):
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self._engine is None:
                raise RuntimeError(f"TensorRT {tensorrt_version(trt)} could not deserialize {engine_path}; "
                                   "see the TensorRT log above")
            self._io: EngineIO | None = EngineIO(trt=trt, engine=self._engine, device=dev, where=str(engine_path))
            self._stream = torch.cuda.Stream(device=dev)  # type: ignore[no-untyped-call]  # unannotated in torch
        self.input_hw = self._io.input_hw
        self.engine_path = engine_path
        self.device = str(dev)
        self.precision = precision
        self._dev = dev
        self._trt_version = tensorrt_version(trt)

    @classmethod
    def from_kit(cls, kit: Any, *, device: str = "cuda", precision: str = "fp16", engine: str | Path | None = None,
                 onnx: str | Path | None = None, threads: int | None = None) -> TensorRTBackend:
        """Backend for a loaded kit running ``engine`` (its sidecar must match the kit, TensorRT, GPU, precision;
        with ``onnx``, also that file). Building an engine is zsp_ros.export's job: `zsp engine build`, or
        zsp_ros.export.on_demand (what the CLI and the node use for ``onnx=`` / ``size=`` without an engine).
        ``threads``: torch's CPU threads for the host side (zsp_ros.utils.cpu_threads, 0 = automatic; None:
        unchanged)."""
        import_tensorrt()                                   # fail in one line before anything else
        if threads is not None:
            apply_threads(threads)
        if engine is None:
            raise ValueError("the tensorrt backend runs a built engine: give backend option engine=PATH (`zsp engine "
                             "build`); the zsp command and the node build one from onnx=PATH or size='HxW'")
        return cls(engine_path=engine, device=device, precision=precision, kit_sha256=kit.sha256, onnx_path=onnx)

    def infer(self, images: Any) -> tuple[Any, Any]:
        """float32 [1,3,H,W] ((H, W) = ``input_hw``), numpy or torch -> (mask_logits [1,Q,H/4,W/4], query_embeds [1,Q,E])
        float32 torch tensors on the engine's GPU."""
        import torch

        shape = check_images(images, where="TensorRTBackend.infer")
        if shape[0] != 1 or tuple(shape[2:]) != self.input_hw:
            raise ValueError(f"TensorRTBackend.infer: {self.engine_path.name} takes [1,3,{self.input_hw[0]},"
                             f"{self.input_hw[1]}] only, got {list(shape)}; build the Segmenter with "
                             f"fixed_hw={self.input_hw}")
        x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        with torch.cuda.device(self._dev):
            current = torch.cuda.current_stream(self._dev)
            self._stream.wait_stream(current)               # the input may still be written on the current stream
            with torch.cuda.stream(self._stream):
                # None only after close(): infer then fails on it, as it always did
                masks, embeds = cast(EngineIO, self._io).run(x, self._stream.cuda_stream)
            current.wait_stream(self._stream)
            for tensor in (masks, embeds):
                tensor.record_stream(current)
        return masks, embeds

    def close(self) -> None:
        self._io = None
        self._engine = None
        self._runtime = None

    def describe(self) -> dict[str, Any]:
        key = self.sidecar["key"]
        return {"backend": self.name, "device": self.device, "precision": self.precision,
                "engine": str(self.engine_path), "input_hw": list(self.input_hw), "tensorrt": self._trt_version,
                "msda_fp32": key.msda_fp32, "gpu": key.gpu_name}


