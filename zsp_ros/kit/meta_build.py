"""The state-dict layout a config builds, without allocating its weights: what `load_kit` compares a kit's
``network.safetensors`` / ``generator.safetensors`` with.

`expected_state(build)` runs ``build()`` (a module constructor) with every large tensor on the ``meta``
device (shape and dtype, no memory) and returns ``{name: (shape, dtype)}`` of the module's state dict.
Why not plain ``with torch.device("meta")``: in-place initialisers (``normal_``, ``uniform_``) and the
small computations of ``reset_parameters`` (Deformable DETR's offset grid) run through ``torch._refs`` on
meta tensors, whose first use imports ``torch._dynamo`` (3-6 s on the 2-core machine). Here factory calls
of more than ``_SMALL_NUMEL`` elements return meta tensors before allocating, smaller ones (aranges, norm
weights) are ordinary CPU tensors, and in-place operations on meta tensors are skipped (they only set
values). A constructor that does something this does not foresee is built again on the plain meta device
(slower the first time, still no weight memory).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

TensorLayout = dict[str, tuple[tuple[int, ...], torch.dtype]]

_SMALL_NUMEL = 1 << 16
_SIZED_FACTORIES = {"empty", "zeros", "ones", "rand", "randn", "full"}


def _requested_shape(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...] | None:
    """The shape a sized factory call asks for (None when it cannot be read from the arguments)."""
    if "size" in kwargs:
        size: Any = kwargs["size"]
    elif name == "full" or (len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size))):
        size = args[0] if args else None
    else:
        size = args
    try:
        return tuple(int(s) for s in size)
    except (TypeError, ValueError):
        return None


class _MetaWeights(TorchFunctionMode):
    """Large factory tensors -> meta (before allocating); in-place ops on meta tensors -> no-ops."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor", kwargs.get("input"))
        if isinstance(target, torch.Tensor) and target.is_meta and name.endswith("_") and not name.startswith("__"):
            return target                                     # normal_, uniform_, zero_, fill_, copy_, ...
        if name in _SIZED_FACTORIES and kwargs.get("device") is None:
            shape = _requested_shape(name, tuple(args), kwargs)
            numel = 1
            for s in shape or ():
                numel *= max(s, 0)
            if shape is not None and numel > _SMALL_NUMEL:
                return torch.empty(shape, dtype=kwargs.get("dtype") or torch.get_default_dtype(), device="meta")
        return func(*args, **kwargs)


def expected_state(build: Callable[[], nn.Module]) -> TensorLayout:
    """``{name: (shape, dtype)}`` of ``build()``'s state dict, built without allocating its weights.

    Exceptions of ``build`` (a configuration the module rejects) propagate unchanged.
    """
    try:
        with _MetaWeights():
            module = build()
    except (RuntimeError, NotImplementedError, TypeError) as first:
        try:
            with torch.device("meta"):
                module = build()
        except Exception:
            raise first from None
    return {name: (tuple(t.shape), t.dtype) for name, t in module.state_dict().items()}
