"""The interface every inference backend follows (torch, onnxruntime, TensorRT).

A backend runs only the network part: normalised images in, mask logits and query embeddings
out. The classifier head is applied outside it (by the Segmenter), so category changes never
touch the backend — a fixed engine keeps serving while the head is swapped.
"""
from __future__ import annotations

import abc
from typing import Any

import numpy as np


class Backend(abc.ABC):
    """Runs ``forward_network`` of the model on one device.

    Attributes:
        name: the backend's registry name ("torch", "onnxruntime", "tensorrt").
        device: where it runs ("cpu", "cuda", "cuda:1").
    """

    name: str
    device: str

    @abc.abstractmethod
    def infer(self, images: Any) -> tuple[Any, Any]:
        """Run the network.

        Args:
            images: float32 [B,3,H,W], normalised (zsp_ros.inference.preprocess), H and W multiples
                of 32; a numpy array or a torch tensor.

        Returns:
            mask_logits float32 [B,Q,H/4,W/4] and query_embeds float32 [B,Q,E], as numpy arrays or
            torch tensors (the Segmenter accepts both).
        """

    def close(self) -> None:  # noqa: B027 - a default no-op on purpose, not abstract
        """Release the model and device memory (default: nothing to release)."""

    def describe(self) -> dict[str, Any]:
        """A small JSON-able description for logs and benchmark records."""
        return {"backend": self.name, "device": self.device}


def check_images(images: Any, *, where: str) -> tuple[int, int, int, int]:
    """Validate a network input batch's type, dtype and shape; return its shape (B,3,H,W)."""
    shape = tuple(getattr(images, "shape", ()))
    dtype = str(getattr(images, "dtype", type(images).__name__))
    if not hasattr(images, "shape") or len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"{where}: images must be float32 [B,3,H,W], got shape {shape}")
    if dtype not in ("float32", "torch.float32", str(np.float32)):
        raise TypeError(f"{where}: images must be float32, got {dtype}")
    if shape[0] < 1 or shape[2] % 32 or shape[3] % 32 or shape[2] == 0 or shape[3] == 0:
        raise ValueError(f"{where}: batch must be non-empty and H, W positive multiples of 32, got {shape}")
    return shape
