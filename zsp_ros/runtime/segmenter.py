"""The one front door for inference: numpy image in, `SegmentationResult` out.

    image HWC uint8 RGB
      -> preprocess (resize keeping aspect, pad to /32, normalise)           pure, shared
      -> backend.infer -> mask_logits [1,Q,H/4,W/4], query_embeds [1,Q,E]    torch / onnxruntime / TensorRT
      -> head of the registry's current snapshot: embeds @ W.T + b -> class logits [Q,K+1]
      -> post-processing (Mask2Former panoptic + semantic inference)         pure, shared
      -> panoptic id map int32 at the input resolution, segment records, semantic map

The classifier head is applied here, outside the backend, from one snapshot reference taken per
frame, so the registry can swap heads (add/remove categories) while frames flow.

Post-processing cost is kept small: queries are filtered on their class scores first (exactly
Mask2Former's first step), only the kept masks are upsampled to the network resolution (two small
matrix products, `MaskUpsampler`), panoptic inference runs there, and the id map is resized to the
input with nearest neighbour; areas and boxes are computed exactly for that final map from the
small one. Semantic inference runs at the mask resolution (stride 4) and is resized the same way.
The resizing plans are built once per camera resolution (`FramePlan`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from zsp_ros.inference import host_ops
from zsp_ros.inference.postprocess import (
    DEFAULT_OBJECT_MASK_THRESHOLD,
    DEFAULT_OVERLAP_THRESHOLD,
    SegmentDict,
    keep_queries,
    panoptic_from_kept,
    semantic_labels,
)
from zsp_ros.inference.preprocess import Geometry, preprocess
from zsp_ros.inference.resize import MaskUpsampler, NearestResize
from zsp_ros.kit.model_kit import load_kit
from zsp_ros.runtime.backends import Backend, build_backend
from zsp_ros.runtime.registry import CategoryRegistry, HeadSnapshot, build_registry
from zsp_ros.runtime.result import Segment, SegmentationResult


class Segmenter:
    """Panoptic segmentation with a swappable category set.

    Args:
        backend: runs the network (see zsp_ros.runtime.backends).
        registry: the category registry (current head + categories).
        short_side, max_long_side: resize rule for the network input (pixels).
        size_divisibility: pad to a multiple of this.
        fixed_hw: resize-to-fit and pad to exactly this (H, W) (fixed-shape engines); overrides the rule.
            None: the backend's ``input_hw`` when it has one (ONNX / TensorRT files have a fixed
            H x W), else the resize rule. A value that differs from the backend's is refused.
        object_mask_threshold, overlap_threshold: Mask2Former panoptic thresholds.
        semantic: also compute the semantic map.
    """

    def __init__(self, *, backend: Backend, registry: CategoryRegistry, short_side: int, max_long_side: int,
                 size_divisibility: int = 32, fixed_hw: tuple[int, int] | None = None,
                 object_mask_threshold: float = DEFAULT_OBJECT_MASK_THRESHOLD,
                 overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD, semantic: bool = True):
        self.backend = backend
        self.registry = registry
        self.short_side = int(short_side)
        self.max_long_side = int(max_long_side)
        self.size_divisibility = int(size_divisibility)
        self.fixed_hw = _fixed_hw(backend, fixed_hw)
        self.object_mask_threshold = _unit_interval("object_mask_threshold", object_mask_threshold)
        self.overlap_threshold = _unit_interval("overlap_threshold", overlap_threshold)
        self.semantic = bool(semantic)
        self._head_cache: tuple[HeadSnapshot, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray] | None = None
        self._frame_plans: dict[tuple[tuple[int, int], Geometry, str], FramePlan] = {}
        host_ops.warm_up()                              # the first frame must not pay for compiling them

    @classmethod
    def from_kit(cls, kit_dir: str | Path, *, backend: str = "torch", device: str = "cpu", precision: str = "fp32",
                 state_dir: str | Path | None = None, store: Any = None, allow_read_only: bool = False,
                 text_encoder: Any = None,
                 short_side: int | None = None, max_long_side: int | None = None,
                 fixed_hw: tuple[int, int] | None = None, object_mask_threshold: float | None = None,
                 overlap_threshold: float | None = None, semantic: bool = True,
                 synthetic_per_category: int | None = None, fit_kwargs: dict[str, Any] | None = None,
                 backend_options: dict[str, Any] | None = None, seed: int = 0,
                 backend_factory: Callable[..., Backend] = build_backend) -> Segmenter:
        """Load a kit, build its backend, text encoder, generator and registry.

        Args:
            kit_dir: the model kit directory (validated; `KitError` names what is wrong).
            backend: a name in zsp_ros.runtime.backends.BACKENDS.
            device, precision: where and how the backend runs ("cpu"/"cuda[:N]", "fp32"/"fp16").
            state_dir: persist added/removed categories there (None: in memory only).
            store, allow_read_only: a ready state store instead of ``state_dir`` (e.g. a
                `MemoryStateStore` kept across reconfigurations), and whether a state_dir that cannot
                be written opens read-only; see `build_registry`.
            text_encoder: an encoder object to use instead of building the kit's one.
            short_side, max_long_side: override the kit's input resize rule.
            fixed_hw: fixed network input (H, W); None: the backend's ``input_hw`` when it has one
                (onnxruntime / tensorrt: the file's size), else the resize rule.
            object_mask_threshold, overlap_threshold: panoptic thresholds; None: the ones the kit
                records (``kit.inference``: what its metrics were measured with; 0.8 / 0.8 if none).
            synthetic_per_category, fit_kwargs: override the kit's runtime retraining settings.
            backend_options: extra keyword arguments for the backend factory (onnxruntime:
                ``onnx``, ``size``, ``threads``; tensorrt: ``engine``, ``onnx``, ``size``, ``cache_dir``, ...).
            seed: seed of the synthetic embeddings.
            backend_factory: ``(name, kit, **options) -> Backend``; `build_backend` runs finished files only,
                zsp_ros.export.on_demand.build_backend_with_artifacts also exports / builds them first.
        """

        kit = load_kit(kit_dir)
        registry = build_registry(kit, text_encoder=text_encoder, state_dir=state_dir, store=store,
                                  allow_read_only=allow_read_only,
                                  synthetic_per_category=synthetic_per_category, fit_kwargs=fit_kwargs, seed=seed)
        try:
            engine = backend_factory(backend, kit, device=device, precision=precision, **(backend_options or {}))
        except BaseException:
            registry.close()
            raise
        try:
            return cls(backend=engine, registry=registry,
                       short_side=short_side or kit.input["short_side"],
                       max_long_side=max_long_side or kit.input["max_long_side"],
                       size_divisibility=kit.input["size_divisibility"], fixed_hw=fixed_hw,
                       object_mask_threshold=(kit.inference["object_mask_threshold"]
                                              if object_mask_threshold is None else object_mask_threshold),
                       overlap_threshold=(kit.inference["overlap_threshold"]
                                          if overlap_threshold is None else overlap_threshold),
                       semantic=semantic)
        except BaseException:
            engine.close()
            registry.close()
            raise

    # ------------------------------------------------------------------ inference
    def segment(self, image: np.ndarray, *, object_mask_threshold: float | None = None,
                overlap_threshold: float | None = None, semantic: bool | None = None) -> SegmentationResult:
        """Segment one image.

        Args:
            image: numpy uint8 [H,W,3] RGB, any size >= 1x1, contiguous or not.
            object_mask_threshold, overlap_threshold: this frame's panoptic thresholds in [0, 1]
                (None: the Segmenter's own).
            semantic: compute this frame's semantic map (None: the Segmenter's own setting).

        Returns:
            `SegmentationResult` with maps at [H,W].

        Raises:
            TypeError / ValueError: the image is not HWC uint8 RGB, or is empty, or a threshold is
                outside [0, 1] (message says which).
        """
        object_mask_threshold = self.object_mask_threshold if object_mask_threshold is None \
            else _unit_interval("object_mask_threshold", object_mask_threshold)
        overlap_threshold = self.overlap_threshold if overlap_threshold is None \
            else _unit_interval("overlap_threshold", overlap_threshold)
        semantic = self.semantic if semantic is None else bool(semantic)
        t0 = time.perf_counter()
        device = getattr(self.backend, "device", "cpu")
        images, geometry = preprocess(image, short_side=self.short_side, max_long_side=self.max_long_side,
                                      size_divisibility=self.size_divisibility, fixed_hw=self.fixed_hw,
                                      device=device)
        t1 = time.perf_counter()
        mask_logits, query_embeds = self.backend.infer(images)
        mask_logits, query_embeds = _to_torch(mask_logits), _to_torch(query_embeds)
        if mask_logits.is_cuda:
            torch.cuda.synchronize(mask_logits.device)
        t2 = time.perf_counter()
        snapshot = self.registry.snapshot          # one reference for the whole frame
        panoptic, segments, semantic_map = self.postprocess(
            mask_logits[0], query_embeds[0], geometry, snapshot, object_mask_threshold=object_mask_threshold,
            overlap_threshold=overlap_threshold, semantic=semantic)
        t3 = time.perf_counter()
        return SegmentationResult(
            panoptic=panoptic, segments=segments, semantic=semantic_map, category_set_version=snapshot.version,
            timings_ms={"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3,
                        "postprocess": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3})

    def class_logits(self, query_embeds: torch.Tensor, snapshot: HeadSnapshot) -> torch.Tensor:
        """Apply the snapshot's head: query_embeds float [Q,E] -> class logits float32 [Q,K+1]."""
        weight, bias, _, _ = self._head(snapshot, query_embeds.device)
        return torch.addmm(bias, query_embeds.float(), weight.t())

    def postprocess(self, mask_logits: torch.Tensor, query_embeds: torch.Tensor, geometry: Geometry,
                    snapshot: HeadSnapshot, *, object_mask_threshold: float, overlap_threshold: float,
                    semantic: bool) -> tuple[np.ndarray, list[Segment], np.ndarray | None]:
        """One image's raw outputs -> (panoptic int32 [H,W], segments, semantic int32 [H,W] or None).

        Args:
            mask_logits: float [Q, Hp/4, Wp/4]; query_embeds: float [Q, E].
            geometry: from `preprocess`; snapshot: the head and categories to label with.
            object_mask_threshold, overlap_threshold: Mask2Former's panoptic thresholds.
            semantic: also build the semantic map.
        """
        _, _, isthing, cat_ids = self._head(snapshot, mask_logits.device)
        mask_h, mask_w = mask_logits.shape[-2:]
        plan = self._frame_plan((mask_h, mask_w), geometry, mask_logits.device)
        probs = self.class_logits(query_embeds, snapshot).softmax(-1)              # [Q,K+1]
        kept, scores, labels = keep_queries(probs.cpu().numpy(), object_mask_threshold)
        masks = mask_logits.index_select(0, torch.from_numpy(kept).to(mask_logits.device))
        id_tensor, raw = panoptic_from_kept(scores, labels, plan.upsample(masks),
                                            isthing=isthing, overlap_threshold=overlap_threshold)
        id_small = id_tensor.numpy()                                               # int32 [rh,rw], host
        segments = self._records(id_small, raw, plan.panoptic, snapshot)
        panoptic = plan.panoptic.apply(id_small)
        semantic_map = None
        if semantic:
            sh, sw = plan.semantic.small_hw
            labels_small = semantic_labels(probs, mask_logits[:, :sh, :sw])              # [sh,sw] class index
            semantic_map = plan.semantic.apply(cat_ids.take(labels_small))              # category id per pixel
        return panoptic, segments, semantic_map

    def _records(self, id_small: np.ndarray, raw: list[SegmentDict], resize: NearestResize,
                 snapshot: HeadSnapshot) -> list[Segment]:
        """Segment records with area and bbox measured on the input-resolution map, computed from the
        small map ``id_small`` int32 [h,w] (ids 1..len(raw)) and the plan that resizes it."""
        if not raw:
            return []
        areas, boxes = host_ops.segment_extents(id_small, len(raw), resize.row_weight, resize.col_weight,
                                                resize.first_row, resize.last_row, resize.first_col, resize.last_col)
        cats = snapshot.categories.categories
        out = []
        for r in raw:
            k = r["id"] - 1
            if areas[k] <= 0:
                continue                               # vanished when the map was shrunk to the input
            c = cats[r["class_index"]]
            x, y, width, height = (int(v) for v in boxes[k])
            out.append(Segment(id=r["id"], category_id=c.id, name=c.name, score=float(r["score"]),
                               isthing=bool(r["isthing"]), area=int(round(areas[k])),
                               bbox=(x, y, width, height)))
        return out

    def _frame_plan(self, mask_hw: tuple[int, int], geometry: Geometry, device: torch.device) -> FramePlan:
        """The cached resizing plans for one (mask size, geometry, device): one per camera resolution."""
        key = (mask_hw, geometry, str(device))
        plan = self._frame_plans.get(key)
        if plan is None:
            if len(self._frame_plans) > 16:            # a camera changing resolution often: stay bounded
                self._frame_plans.clear()
            plan = self._frame_plans[key] = FramePlan(mask_hw, geometry, device)
        return plan

    def _head(self, snapshot: HeadSnapshot, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
        """(weight, bias, isthing numpy bool [K], category ids numpy int32 [K]) of ``snapshot`` (weight and bias on
        ``device``), cached."""
        cache = self._head_cache
        if cache is None or cache[0] is not snapshot or cache[1].device != torch.device(device):
            cache = (snapshot, snapshot.weight.to(device), snapshot.bias.to(device),
                     np.asarray(snapshot.categories.isthing, dtype=bool),
                     np.asarray(snapshot.categories.ids, dtype=np.int32))
            self._head_cache = cache
        return cache[1:]

    def close(self) -> None:
        """Release the backend and the state directory."""
        self.backend.close()
        self.registry.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FramePlan:
    """What post-processing precomputes per (mask size, geometry, device).

    upsample: kept mask logits [n,h,w] -> [n,rh,rw] (`MaskUpsampler`); panoptic: the resized-size id
    map -> input size (`NearestResize`); semantic: the stride-4 label map of the image area
    (padding excluded, ceil) -> input size.
    """

    def __init__(self, mask_hw: tuple[int, int], geometry: Geometry, device: torch.device):
        self.upsample = MaskUpsampler(mask_hw, geometry, device)
        self.panoptic = NearestResize(geometry.resized_hw, geometry.input_hw)
        sh = -(-geometry.resized_hw[0] * mask_hw[0] // geometry.padded_hw[0])    # ceil
        sw = -(-geometry.resized_hw[1] * mask_hw[1] // geometry.padded_hw[1])
        self.semantic = NearestResize((sh, sw), geometry.input_hw)


def _fixed_hw(backend: Backend, fixed_hw: tuple[int, int] | None) -> tuple[int, int] | None:
    """The network input size to pad to: ``fixed_hw``, else the backend's fixed ``input_hw`` (if any).

    Raises ValueError when both are given and differ (the backend would refuse every frame).
    """
    want = None if fixed_hw is None else (int(fixed_hw[0]), int(fixed_hw[1]))
    have = getattr(backend, "input_hw", None)
    if have is None:
        return want
    have = (int(have[0]), int(have[1]))
    if want is not None and want != have:
        raise ValueError(f"fixed_hw {want} differs from the {getattr(backend, 'name', 'backend')} backend's fixed "
                         f"input size {have}; leave fixed_hw unset to use the backend's, or export the "
                         f"network at {want[0]}x{want[1]}")
    return have


def _to_torch(x: Any) -> torch.Tensor:
    """A backend output (numpy array or tensor) as a tensor, without a copy when possible."""
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def _unit_interval(name: str, value: float) -> float:
    """``value`` as a float in [0, 1], else ValueError naming the threshold."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value
