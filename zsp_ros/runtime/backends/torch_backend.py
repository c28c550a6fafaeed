"""PyTorch backend: runs ``Mask2Former.forward_network`` on the CPU (eager) or a CUDA GPU (fast path).

fp16 is CUDA autocast (weights stay fp32, outputs are returned as float32); on the CPU only fp32
is offered, eager, exactly as before.

On CUDA the fast path (torch_fast_path.py) is on by default: channels-last convolutions, cuDNN
autotuning for the fixed input size, and the network's stages replayed from CUDA graphs (batch-1
inference is launch-bound on a GPU). Each part can be switched off (``channels_last=False``,
``cuda_graphs=False``); outputs are checked against eager fp32 by tests that run where CUDA is.
"""
from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch

from zsp_ros.kit.model_kit import NETWORK_FILE, KitError
from zsp_ros.model.build import build_mask2former
from zsp_ros.runtime.backends.base import Backend, check_images
from zsp_ros.runtime.backends.torch_fast_path import ForwardNetwork, StagedRunner
from zsp_ros.utils.cpu_threads import apply_threads, current_threads

PRECISIONS = ("fp32", "fp16")


def resolve_device(device: str) -> torch.device:
    """Turn "cpu" / "cuda" / "cuda:N" into a torch.device, or raise naming what is missing."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r} ({exc}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r} is not supported by the torch backend; use 'cpu' or 'cuda[:N]'")
    return dev


class TorchBackend(Backend):
    """Eager PyTorch inference of a module that has ``forward_network(images) -> (masks, embeds)``.

    Args:
        network: the model (e.g. Mask2Former); put in eval mode and moved to ``device``.
        device: "cpu", "cuda" or "cuda:N".
        precision: "fp32", or "fp16" (CUDA autocast; CUDA only).
        channels_last: channels-last memory layout for the convolutions (default: on for CUDA, off on the CPU).
        cuda_graphs: replay the network's stages from CUDA graphs (default: on for CUDA; CUDA only).
        threads: torch's intra-op CPU threads, set for the whole process (zsp_ros.utils.cpu_threads:
            0 = automatic); None leaves the process's setting (the CLI and the node set it at start).
    """

    name = "torch"

    def __init__(self, *, network: torch.nn.Module, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool | None = None, cuda_graphs: bool | None = None, threads: int | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        dev = resolve_device(device)
        if precision == "fp16" and dev.type != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device; use 'fp32' on the CPU")
        if not hasattr(network, "forward_network"):
            raise TypeError(f"{type(network).__name__} has no forward_network(images) method")
        cuda = dev.type == "cuda"
        if (cuda_graphs or channels_last) and not cuda:
            raise ValueError("cuda_graphs / channels_last are options of the CUDA fast path; the CPU path is eager "
                             "fp32 and takes neither")
        if threads is not None:
            apply_threads(threads)
        self.device = str(dev)
        self.precision = precision
        self._dev = dev
        self.channels_last = cuda if channels_last is None else bool(channels_last)
        self.cuda_graphs = cuda if cuda_graphs is None else bool(cuda_graphs)
        self.network = network.eval().to(dev)
        self._runner = None
        if cuda:

            if self.channels_last:
                self.network = self.network.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True           # fixed input sizes: autotuned convolutions pay
            self._runner = StagedRunner(network=self.network,
                                        autocast_dtype=torch.float16 if precision == "fp16" else None,
                                        channels_last=self.channels_last, cuda_graphs=self.cuda_graphs)

    @classmethod
    def from_kit(cls, kit: Any, *, device: str = "cpu", precision: str = "fp32", channels_last: bool | None = None,
                 cuda_graphs: bool | None = None, threads: int | None = None) -> TorchBackend:
        """Build Mask2Former from the kit's config and load network.safetensors (no class head)."""

        network = build_mask2former(kit.model_config, len(kit.categories))
        head_prefix = next(f"{name}." for name, module in network.named_modules() if module is network.class_head)
        state = kit.network_state_dict()
        result = network.load_state_dict(state, strict=False)   # the class head is applied outside
        missing = [k for k in result.missing_keys if not k.startswith(head_prefix)]
        if missing or result.unexpected_keys:
            raise KitError(f"kit {kit.root}: {NETWORK_FILE} does not fit the network built from model_config: "
                           f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, unexpected "
                           f"{result.unexpected_keys[:5]}{'…' if len(result.unexpected_keys) > 5 else ''}")
        return cls(network=network, device=device, precision=precision, channels_last=channels_last,
                   cuda_graphs=cuda_graphs, threads=threads)

    def infer(self, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 [B,3,H,W] -> (mask_logits float32 [B,Q,H/4,W/4], query_embeds float32 [B,Q,E]) on ``device``."""
        check_images(images, where="TorchBackend.infer")
        x = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
        x = x.to(self._dev, non_blocking=True)
        if self._runner is not None:
            return self._runner(x)
        with torch.inference_mode(), torch.autocast(device_type=self._dev.type, dtype=torch.float16,
                                                    enabled=self.precision == "fp16"):
            masks, embeds = cast(ForwardNetwork, self.network).forward_network(x)   # checked in __init__
        return masks.float(), embeds.float()

    def close(self) -> None:
        self._runner = None                                  # drops the CUDA graphs and their memory pool
        self.network = self.network.to("cpu")
        if self._dev.type == "cuda":
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name, "device": self.device, "precision": self.precision,
                                "threads": current_threads()}
        if self._dev.type == "cuda":
            info.update(channels_last=self.channels_last, cuda_graphs=self.cuda_graphs,
                        graph_stages=dict(self._runner.graph_status) if self._runner is not None else {})
        return info
