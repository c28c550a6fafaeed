"""onnxruntime backend: runs a fixed-size ``portable`` ONNX export of the network (CPU here, CUDA where present).

The ONNX file comes from `zsp export onnx --msda portable` (zsp_ros/export/onnx_export.py); its metadata
ties it to one kit and one input size (onnx_contract.py). Given a kit and no file, the CLI and the node
export one first (zsp_ros.export.on_demand) into a temporary folder that ``close`` removes.

The file's input size is fixed: the Segmenter must be built with ``fixed_hw = backend.input_hw``
(images of any size are resized to fit and padded to it).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from zsp_ros.runtime.backends.base import Backend, check_images
from zsp_ros.runtime.backends.onnx_contract import INPUT_NAME, OUTPUT_NAMES, check_metadata, metadata_input_hw
from zsp_ros.utils.cpu_threads import current_threads, resolve_threads

PRECISIONS = ("fp32",)


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"device {device!r}: this onnxruntime has no CUDAExecutionProvider (it has "
                               f"{', '.join(available)}); install onnxruntime-gpu or use device 'cpu'")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"device {device!r} is not supported by the onnxruntime backend; use 'cpu' or 'cuda[:N]'")


class OnnxRuntimeBackend(Backend):
    """Network inference with onnxruntime on one fixed input size.

    Args:
        onnx_path: a ``portable`` export (zsp_ros/export/onnx_export.py).
        device: "cpu", or "cuda" / "cuda:N" (CUDA execution provider, when installed).
        precision: "fp32" (the exported graph's type; fp16 is TensorRT's or torch's job).
        threads: intra-op threads of the session (zsp_ros.utils.cpu_threads: 0 = automatic); None: the
            process's torch thread count, which the CLI and the node set (`apply_threads`).
        kit_sha256: when given, the file must have been exported from this kit.

    Attributes:
        input_hw: the file's fixed (H, W); the Segmenter's ``fixed_hw``.
        metadata: the file's metadata_props.
    """

    name = "onnxruntime"

    def __init__(self, *, onnx_path: str | Path, device: str = "cpu", precision: str = "fp32",
                 threads: int | None = None, kit_sha256: str | None = None,
                 _cleanup_dir: Path | None = None) -> None:
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: the onnxruntime backend runs the exported fp32 graph; "
                             f"use 'fp32' (fp16: torch or tensorrt backend)")
        providers = _providers(device)
        meta = check_metadata(onnx_path, kit_sha256=kit_sha256)
        if meta.get("msda") != "portable":
            raise ValueError(f"{onnx_path}: deformable attention is exported as {meta.get('msda')!r}; onnxruntime "
                             "cannot run TensorRT's plugin node — export with `--msda portable`")
        threads = current_threads() if threads is None else resolve_threads(threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        provider_options = None
        if device.startswith("cuda:"):
            provider_options = [{"device_id": int(device.split(":", 1)[1])}, {}]
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers,
                                            provider_options=provider_options)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
            raise ValueError(f"{onnx_path}: graph has inputs {inputs} and outputs {outputs}, expected "
                             f"[{INPUT_NAME!r}] and {list(OUTPUT_NAMES)}")
        self.onnx_path = Path(onnx_path)
        self.metadata = meta
        self.input_hw = metadata_input_hw(meta)
        self.device = device
        self.precision = precision
        self.threads = threads
        self._output_names = list(OUTPUT_NAMES)
        self._input_name = INPUT_NAME
        self._cleanup_dir = _cleanup_dir

    @classmethod
    def from_kit(cls, kit: Any, *, device: str = "cpu", precision: str = "fp32", onnx: str | Path | None = None,
                 threads: int | None = None, cleanup_dir: str | Path | None = None) -> OnnxRuntimeBackend:
        """Backend for a loaded kit running ``onnx`` (a portable export of this kit).

        ``cleanup_dir``: a folder this backend owns and removes on ``close`` (where zsp_ros.export.on_demand
        exported the file). Exporting is zsp_ros.export's job: `zsp export onnx --msda portable`, or
        ``size='HxW'`` through the CLI and the node, which export first.
        """
        if onnx is None:
            raise ValueError("the onnxruntime backend needs backend option onnx=PATH (from `zsp export onnx --msda "
                             "portable`); the zsp command and the node also take size='HxW' and export one first")
        return cls(onnx_path=onnx, device=device, precision=precision, threads=threads, kit_sha256=kit.sha256,
                   _cleanup_dir=Path(cleanup_dir) if cleanup_dir is not None else None)

    def infer(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """float32 [1,3,H,W] with (H, W) == ``input_hw`` -> (mask_logits [1,Q,H/4,W/4], query_embeds [1,Q,E]) numpy."""
        shape = check_images(images, where="OnnxRuntimeBackend.infer")
        if shape[0] != 1 or tuple(shape[2:]) != self.input_hw:
            raise ValueError(f"OnnxRuntimeBackend.infer: {self.onnx_path.name} takes [1,3,{self.input_hw[0]},"
                             f"{self.input_hw[1]}] only, got {list(shape)}; build the Segmenter with "
                             f"fixed_hw={self.input_hw}")
        if not isinstance(images, np.ndarray):
            images = images.detach().cpu().numpy()
        masks, embeds = self.session.run(self._output_names, {self._input_name: np.ascontiguousarray(images)})
        return masks, embeds

    def close(self) -> None:
        self.session = None
        if self._cleanup_dir is not None:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)
            self._cleanup_dir = None

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"backend": self.name, "device": self.device, "precision": self.precision,
                "onnx": str(self.onnx_path), "input_hw": list(self.input_hw), "threads": self.threads,
                "providers": self.session.get_providers() if self.session is not None else [],
                "onnxruntime": ort.__version__}
