"""GPU fast path of the torch backend: the network in stages, each replayed from a CUDA graph when it can be.

On a GPU, batch-1 Mask2Former is launch-bound (thousands of small kernels; measured for ResNet-50
alone at 640×480 on an H100: 3.4 ms eager fp32, 1.1 ms fp16 channels-last in a CUDA graph), so
capturing the work in CUDA graphs matters more than fp16. ``forward_network`` is run as three
stages — backbone, pixel decoder, transformer decoder — and each stage is captured separately
for every input shape (after a warm-up on a side stream); a stage that cannot be captured (it
copies from host memory or reads device values on the host) runs eagerly, and the reason is
kept in ``StagedRunner.graph_status``. A network without those three parts is one stage.

Deformable attention reads its level sizes on the host (``spatial_shapes.tolist()``), a device
sync that also forbids capture. :class:`HostShapeCore` reads them once per input size and then
calls the grid_sample core with a host copy, so the pixel decoder stage is free of those syncs.

Everything here is used only on CUDA; the torch backend's CPU path does not touch it.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Protocol, cast

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from zsp_ros.model.mask2former import Mask2Former
from zsp_ros.model.msda import ms_deform_attn_reference, set_msda_core

MAX_SHAPES = 4        # captured input shapes kept per runner (oldest dropped first)
WARMUP_ITERS = 3


class ForwardNetwork(Protocol):
    """What the torch backend runs (a module checked to have it): ``forward_network(images) -> (masks, embeds)``."""

    def forward_network(self, images: Tensor) -> tuple[Tensor, Tensor]: ...


class HostShapeCore:
    """Deformable-attention core (``zsp_ros.model.msda`` contract) that reads level sizes once per input size.

    ``input_hw`` must be set by the caller before each forward (the level sizes depend on it; two
    inputs with the same number of tokens may have different levels, e.g. 480×640 and 640×480).
    """

    def __init__(self) -> None:
        self.input_hw: tuple[int, int] | None = None
        self._shapes: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}

    def __call__(self, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                 sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
        key = (self.input_hw, int(value.shape[1]), int(spatial_shapes.shape[0]))
        host = self._shapes.get(key)
        if host is None:                                    # one device sync per input size
            host = (spatial_shapes.detach().to("cpu", torch.int64), level_start_index.detach().to("cpu", torch.int64))
            self._shapes[key] = host
        return ms_deform_attn_reference(value, host[0], host[1], sampling_locations, attention_weights)


def _capture(fn: Callable[..., Any], args: tuple[Any, ...], *, pool: Any) -> Callable[..., Any]:
    """Capture ``fn(*args)`` (tensors nested in lists/tuples/dicts) in a CUDA graph; return a replay function.

    The replay function copies its tensor arguments into the captured inputs, replays, and returns
    the captured outputs — overwritten by the next replay, so callers consume (or copy) them first.
    """
    flat_in, in_spec = tree_flatten(args)
    static_in = [t.detach().clone() if isinstance(t, Tensor) else t for t in flat_in]
    side = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # torch.cuda.Stream.__new__ is unannotated
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP_ITERS):
            fn(*tree_unflatten(static_in, in_spec))
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        static_out = fn(*tree_unflatten(static_in, in_spec))
    flat_out, out_spec = tree_flatten(static_out)

    def replay(*new_args: Any) -> Any:
        flat_new, spec = tree_flatten(new_args)
        if spec != in_spec:
            raise ValueError("CUDA graph replay: the arguments' structure differs from the captured one")
        for dst, src in zip(static_in, flat_new):
            if isinstance(dst, Tensor):
                dst.copy_(src)
        graph.replay()
        return tree_unflatten(flat_out, out_spec)

    return replay


class StagedRunner:
    """``forward_network`` as stages, CUDA-graphed per input shape where possible.

    Args:
        network: Mask2Former (``backbone``, ``sem_seg_head.pixel_decoder``, ``sem_seg_head.predictor``)
            or any module with ``forward_network`` (then a single stage).
        autocast_dtype: torch.float16 for fp16 autocast, None for fp32.
        channels_last: feed the input in channels-last layout (the module's conv weights should be too).
        cuda_graphs: capture stages (CUDA only); False runs the same stages eagerly (also on the CPU).

    Call: ``runner(images float32 [B,3,H,W]) -> (mask_logits [B,Q,H/4,W/4], query_embeds [B,Q,E])``,
    new tensors (not graph memory), float32.
    """

    def __init__(self, *, network: nn.Module, autocast_dtype: torch.dtype | None, channels_last: bool,
                 cuda_graphs: bool) -> None:
        self.network = network
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        self.cuda_graphs = cuda_graphs
        head = getattr(network, "sem_seg_head", None)
        self.staged = all(hasattr(x, n) for x, n in ((network, "backbone"), (head, "pixel_decoder"), (head, "predictor")))
        self.core = HostShapeCore()
        if self.staged:
            set_msda_core(network, self.core)
        self.graph_status: dict[str, str] = {}
        self._graphs: OrderedDict[tuple[Any, ...], list[Callable[..., Any]]] = OrderedDict()

    def _stages(self) -> list[tuple[str, Callable[..., Any]]]:
        if not self.staged:
            plain = cast(ForwardNetwork, self.network)
            return [("network", lambda x: plain.forward_network(x))]
        net = cast(Mask2Former, self.network)              # has Mask2Former's parts (``staged``)
        head = net.sem_seg_head
        return [("backbone", lambda x: (net.backbone(x),)),
                ("pixel_decoder", lambda features: head.pixel_decoder(features)),
                ("predictor", lambda mask_features, multi_scale: head.predictor(multi_scale, mask_features))]

    def _eager(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out: Any = (x,)
        for _, stage in self._stages():
            out = stage(*out)
        return self._final(out)

    def _final(self, out: Any) -> tuple[Tensor, Tensor]:
        masks, embeds = out
        if self.staged:                                     # predictor: lists over the L+1 predictions
            masks, embeds = masks[-1], embeds[-1]
        return masks.float().clone(), embeds.float().clone()

    def _captured(self, x: Tensor) -> list[Callable[..., Any]]:
        key = (tuple(x.shape), x.dtype, x.device)
        stages = self._graphs.get(key)
        if stages is not None:
            self._graphs.move_to_end(key)
            return stages
        stages, out = [], (x,)
        for name, stage in self._stages():
            stream = torch.cuda.current_stream()
            try:                                  # own memory pool per stage: a failed capture leaves the others intact
                replay = _capture(stage, out, pool=torch.cuda.graph_pool_handle())
                self.graph_status[name] = "captured"
            except Exception as exc:          # capture refused (host copy / sync inside): run this stage eagerly
                torch.cuda.set_stream(stream)     # a failed capture_end can leave the capture stream current
                try:
                    torch.cuda.synchronize()
                except RuntimeError:
                    pass
                replay = stage
                self.graph_status[name] = f"eager ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            stages.append(replay)
            out = replay(*out)
        self._graphs[key] = stages
        while len(self._graphs) > MAX_SHAPES:
            self._graphs.popitem(last=False)
        return stages

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.core.input_hw = (int(x.shape[-2]), int(x.shape[-1]))
        device_type = x.device.type
        # cache_enabled=False: autocast's weight-cast cache must not outlive a graph capture
        with torch.inference_mode(), torch.autocast(device_type=device_type, dtype=self.autocast_dtype or torch.float16,
                                                    enabled=self.autocast_dtype is not None, cache_enabled=False):
            if not self.cuda_graphs:
                return self._eager(x)
            out: Any = (x,)
            for stage in self._captured(x):
                out = stage(*out)
            return self._final(out)
