"""PyTorch backend: runs ``Mask2Former.forward_network`` eagerly on the CPU or a CUDA GPU.

fp16 is CUDA autocast (weights stay fp32, outputs are returned as float32); on the CPU only fp32
is offered.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from zsp_ros.runtime.backends.base import Backend, check_images

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
    """

    name = "torch"

    def __init__(self, *, network: torch.nn.Module, device: str = "cpu", precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        dev = resolve_device(device)
        if precision == "fp16" and dev.type != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device; use 'fp32' on the CPU")
        if not hasattr(network, "forward_network"):
            raise TypeError(f"{type(network).__name__} has no forward_network(images) method")
        self.device = str(dev)
        self.precision = precision
        self._dev = dev
        self.network = network.eval().to(dev)

    @classmethod
    def from_kit(cls, kit: Any, *, device: str = "cpu", precision: str = "fp32") -> "TorchBackend":
        """Build Mask2Former from the kit's config and load network.safetensors (no class head)."""
        from zsp_ros.model.build import build_mask2former
        from zsp_ros.runtime.kit import NETWORK_FILE, KitError

        network = build_mask2former(kit.model_config, len(kit.categories))
        head_prefix = next(f"{name}." for name, module in network.named_modules() if module is network.class_head)
        state = kit.network_state_dict()
        result = network.load_state_dict(state, strict=False)   # the class head is applied outside
        missing = [k for k in result.missing_keys if not k.startswith(head_prefix)]
        if missing or result.unexpected_keys:
            raise KitError(f"kit {kit.root}: {NETWORK_FILE} does not fit the network built from model_config: "
                           f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, unexpected "
                           f"{result.unexpected_keys[:5]}{'…' if len(result.unexpected_keys) > 5 else ''}")
        return cls(network=network, device=device, precision=precision)

    def infer(self, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 [B,3,H,W] -> (mask_logits float32 [B,Q,H/4,W/4], query_embeds float32 [B,Q,E]) on ``device``."""
        check_images(images, where="TorchBackend.infer")
        x = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
        x = x.to(self._dev, non_blocking=True)
        with torch.inference_mode(), torch.autocast(device_type=self._dev.type, dtype=torch.float16,
                                                    enabled=self.precision == "fp16"):
            masks, embeds = self.network.forward_network(x)
        return masks.float(), embeds.float()

    def close(self) -> None:
        self.network = self.network.to("cpu")
        if self._dev.type == "cuda":
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "precision": self.precision}
