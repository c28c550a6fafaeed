"""What a kit must satisfy before any of it is used: every manifest field typed and bounded, every tensor of
the expected name, shape and dtype, and finite. Every failure is a `KitError` of ONE line that names the kit,
the file (``manifest.json`` or which ``.safetensors``) and the field or tensor.

Bounds and why (docs/CONTRACTS.md, "Model kit"):
- ``input``: ``short_side`` in [32, 4096], ``max_long_side`` in [short_side, 8192] (every frame is resized
  to them before the network: they bound its memory; short_side 20000 grew past 15 GB);
  ``size_divisibility`` a multiple of 32 up to 512 (Mask2Former's H and W must be multiples of
  ``Mask2Former.size_divisibility`` = 32).
- ``model_config``: the Mask2Former sections of zsp_ros.model.build with every size bounded
  (``decoder.hidden_dim`` = ``embed_dim`` <= 4096, ``decoder.num_queries`` <= 1000, ...); the network it
  builds (on the meta device, no weight memory: zsp_ros.kit.meta_build) lists, name by name, the shape and
  dtype of every tensor ``network.safetensors`` must hold. A stand-in network (tests) is named by
  ``model_config = {"name": NAME}`` and must be registered in `STAND_IN_NETWORKS` by the process.
- ``generator_config``: the keyword arguments of `PrimitiveGenerator` (its signature), bounded, with
  ``semantic_dim`` = ``text_encoder.dim`` and ``embed_dim`` = ``embed_dim``; ``generator.safetensors`` is
  compared with the generator it builds.
- ``runtime`` (optional): ``synthetic_per_category`` in [1, 4096], ``class_weights`` among {seen, added,
  no_object} (finite, >= 0), ``fit_kwargs`` among `FIT_KWARGS` (the keyword arguments of
  zsp_ros.pading.head_fit.fit_head a kit may set, each bounded; a test compares them with its signature),
  ``max_added_categories`` in [1, 4096], ``max_synthetic_rows`` in [1, 10^7], and the registry's add-path
  settings ``refit`` ("new_rows" | "full"), ``stored_synthetic_per_category``, ``new_row_steps``,
  ``new_row_added_weight``, ``max_negative_rows`` (zsp_ros.runtime.registry).
- ``inference`` (optional): thresholds in [0, 1] and an optional ``note``.
- ``bank`` (optional; absent = ``{"source": "real"}``): where ``bank.safetensors`` comes from: ``source``
  "real" (query embeddings of the segmenter on training images) or "generated" (the kit's generator
  conditioned on its categories' text embeddings: a release has no bank of real embeddings), with
  ``rows_per_category`` in [1, 100000], ``seed`` >= 0, ``categories`` in [0, 10000] and a ``note``.
- files: exactly the four ``.safetensors``, each ``{sha256, bytes}`` with bytes <= 2 GiB, checked against
  the file's size before it is read; ``manifest.json`` itself at most 64 MiB.
- tensors: floating tensors finite (a NaN or inf weight is refused at load, naming file and tensor).
"""
from __future__ import annotations

import inspect
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from zsp_ros.kit.meta_build import TensorLayout, expected_state
from zsp_ros.model.backbone import NORMS, STAGE_BLOCKS, STAGE_NAMES
from zsp_ros.model.build import build_mask2former
from zsp_ros.model.mask2former import Mask2Former
from zsp_ros.model.primitive_generator import PrimitiveGenerator

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
MAX_FILE_BYTES = 2 << 30
MIN_SHORT_SIDE, MAX_SHORT_SIDE, MAX_LONG_SIDE = 32, 4096, 8192
MAX_SIZE_DIVISIBILITY = 512
MAX_EMBED_DIM = 4096
MAX_TEXT_DIM = 8192
MAX_QUERIES = 1000
MAX_CATEGORIES = 10_000
MAX_SYNTHETIC_PER_CATEGORY = 4096
MAX_ADDED_CATEGORIES_LIMIT = 4096
MAX_SYNTHETIC_ROWS_LIMIT = 10_000_000
CLASS_HEAD_PREFIX = "sem_seg_head.predictor.class_embed."      # where Mask2Former keeps its ClassifierHead
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Networks other than Mask2Former a kit may name with ``model_config = {"name": NAME}``: NAME -> a function of
# the manifest that builds the module (only its state-dict layout is used). A plain dict, empty in the
# installed package; tests register their stand-ins (tests/runtime_fakes.py).
STAND_IN_NETWORKS: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {}


class KitError(ValueError):
    """A model kit is missing, malformed, corrupt or incompatible; the message, always one line, names the
    kit, the file and what is wrong."""

    def __init__(self, message: object) -> None:
        super().__init__(" ".join(str(message).split()))


# ------------------------------------------------------------------ value checks
Check = Callable[[Any], "str | None"]         # value -> None when fine, else what is wrong


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_in(lo: int, hi: int) -> Check:
    return lambda v: None if _is_int(v) and lo <= v <= hi else f"must be an integer in [{lo}, {hi}], got {_shown(v)}"


def number_in(lo: float, hi: float, *, hi_open: bool = False, lo_open: bool = False) -> Check:
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def check(v: Any) -> str | None:
        ok = _is_number(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return None if ok else f"must be a number in {interval}, got {_shown(v)}"
    return check


def one_of(*choices: Any) -> Check:
    def check(v: Any) -> str | None:
        ok = any(v == c and type(v) is type(c) for c in choices)
        return None if ok else f"must be one of {list(choices)}, got {_shown(v)}"
    return check


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {_shown(v)}"


def text(max_chars: int) -> Check:
    return lambda v: (None if isinstance(v, str) and 0 < len(v) <= max_chars
                      else f"must be a non-empty string of at most {max_chars} characters, got {_shown(v)}")


def json_object(v: Any) -> str | None:
    return None if isinstance(v, Mapping) else f"must be a JSON object, got {_shown(v)}"


def _features(v: Any) -> str | None:
    if (isinstance(v, list) and 0 < len(v) <= len(STAGE_NAMES) and len(set(map(str, v))) == len(v)
            and all(isinstance(f, str) and f in STAGE_NAMES for f in v)):
        return None
    return f"must be a list of distinct names among {list(STAGE_NAMES)}, got {_shown(v)}"


# zsp_ros.pading.head_fit.fit_head's keyword arguments a kit may set (not the data, not ``init``);
# tests/test_runtime_kit.py checks this table against the function's signature.
FIT_KWARGS: dict[str, Check] = {
    "steps": int_in(0, 10_000),
    "lr": number_in(0, 100, lo_open=True),
    "optimizer": one_of("adam", "sgd", "lbfgs"),
    "momentum": number_in(0, 1),
    "weight_decay": number_in(0, 10),
    "batch_size": optional(int_in(1, 10_000_000)),
    "seed": int_in(0, 2**63 - 1),
    "num_threads": optional(int_in(1, 256)),
}
RUNTIME_KEYS: dict[str, Check] = {
    "synthetic_per_category": int_in(1, MAX_SYNTHETIC_PER_CATEGORY),
    "class_weights": json_object, "fit_kwargs": json_object,
    "max_added_categories": int_in(1, MAX_ADDED_CATEGORIES_LIMIT),
    "max_synthetic_rows": int_in(1, MAX_SYNTHETIC_ROWS_LIMIT),
    "refit": one_of("new_rows", "full"),                       # zsp_ros.runtime.registry.REFIT_MODES
    "stored_synthetic_per_category": int_in(1, MAX_SYNTHETIC_PER_CATEGORY),
    "new_row_steps": int_in(1, 1000),
    "new_row_added_weight": number_in(0, 1e4, lo_open=True),
    "max_negative_rows": int_in(1, MAX_SYNTHETIC_ROWS_LIMIT),
}
CLASS_WEIGHT_KEYS: dict[str, Check] = {k: number_in(0, 1e4) for k in ("seen", "added", "no_object")}
_NORM = one_of(*sorted(NORMS), "")
MASK2FORMER_SECTIONS: dict[str, dict[str, Check]] = {           # zsp_ros.model.build's sections, bounded
    "backbone": {"depth": one_of(*sorted(STAGE_BLOCKS)), "width": number_in(0, 4, lo_open=True), "norm": _NORM},
    "pixel_decoder": {"conv_dim": int_in(1, 2048), "mask_dim": int_in(1, 2048), "norm": _NORM,
                      "transformer_in_features": _features, "common_stride": one_of(4), "enc_layers": int_in(0, 12),
                      "nheads": int_in(1, 64), "n_points": int_in(1, 16), "dim_feedforward": int_in(1, 16384)},
    "decoder": {"hidden_dim": int_in(1, MAX_EMBED_DIM), "num_queries": int_in(1, MAX_QUERIES), "nheads": int_in(1, 64),
                "dim_feedforward": int_in(1, 16384), "dec_layers": int_in(1, 32), "pre_norm": boolean,
                "enforce_input_project": boolean},
}
GENERATOR_KEYS: dict[str, Check] = {                            # PrimitiveGenerator's keyword arguments, bounded
    "semantic_dim": int_in(1, MAX_TEXT_DIM), "embed_dim": int_in(1, MAX_EMBED_DIM),
    "num_primitives": int_in(1, 10_000), "num_layers": int_in(1, 16), "num_heads": int_in(1, 64),
    "ffn_dim": int_in(1, 16384), "dropout": number_in(0, 1, hi_open=True), "noise_std": number_in(0, 100),
}
INFERENCE_KEYS: dict[str, Check] = {"object_mask_threshold": number_in(0, 1), "overlap_threshold": number_in(0, 1),
                                    "note": lambda v: None if isinstance(v, str) else f"must be a string, got {_shown(v)}"}
BANK_SOURCES = ("real", "generated")
BANK_KEYS: dict[str, Check] = {"source": one_of(*BANK_SOURCES), "rows_per_category": int_in(1, 100_000),
                               "seed": int_in(0, 2**63 - 1), "categories": int_in(0, MAX_CATEGORIES),
                               "note": text(2000)}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def section(root: Path, where: str, value: Any, spec: Mapping[str, Check], *,
            required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check a JSON object against ``spec`` (allowed keys -> value checks); ``where`` is e.g. "manifest.json input"."""
    if not isinstance(value, Mapping):
        raise KitError(f"kit {root}: {where} must be a JSON object with keys {sorted(spec)}, got {_shown(value)}")
    unknown = sorted(str(k) for k in value if k not in spec)
    if unknown:
        raise KitError(f"kit {root}: {where} has unknown keys {unknown} (allowed: {sorted(spec)})")
    missing = [k for k in required if k not in value]
    if missing:
        raise KitError(f"kit {root}: {where} lacks {missing}")
    for key, check in spec.items():
        if key in value:
            problem = check(value[key])
            if problem:
                raise KitError(f"kit {root}: {where}.{key} {problem}")
    return dict(value)


# ------------------------------------------------------------------ manifest
def check_manifest(root: Path, manifest: Mapping[str, Any], kit_files: tuple[str, ...]) -> None:
    """Every field of an already-parsed manifest (format, version and required keys are checked by the caller)."""
    m = MANIFEST
    section(root, f"{m} files", manifest["files"], {name: json_object for name in kit_files}, required=kit_files)
    for name in kit_files:
        section(root, f"{m} files.{name}", manifest["files"][name],
                {"sha256": lambda v: None if isinstance(v, str) and _SHA256.fullmatch(v)
                 else f"must be 64 lowercase hex digits, got {_shown(v)}",
                 "bytes": int_in(0, MAX_FILE_BYTES)}, required=("sha256", "bytes"))
    problem = int_in(1, MAX_EMBED_DIM)(manifest["embed_dim"])
    if problem:
        raise KitError(f"kit {root}: {m} embed_dim {problem}")
    section(root, f"{m} text_encoder", manifest["text_encoder"],
                 {"id": text(200), "dim": int_in(1, MAX_TEXT_DIM), "kwargs": json_object}, required=("id", "dim"))
    inp = section(root, f"{m} input", manifest["input"],
                  {"short_side": int_in(MIN_SHORT_SIDE, MAX_SHORT_SIDE), "max_long_side": int_in(MIN_SHORT_SIDE, MAX_LONG_SIDE),
                   "size_divisibility": int_in(Mask2Former.size_divisibility, MAX_SIZE_DIVISIBILITY)},
                  required=("short_side", "max_long_side", "size_divisibility"))
    if inp["max_long_side"] < inp["short_side"]:
        raise KitError(f"kit {root}: {m} input.max_long_side {inp['max_long_side']} is below "
                       f"input.short_side {inp['short_side']}")
    if inp["size_divisibility"] % Mask2Former.size_divisibility:
        raise KitError(f"kit {root}: {m} input.size_divisibility must be a multiple of "
                       f"{Mask2Former.size_divisibility} (the network's input H and W must be), got "
                       f"{inp['size_divisibility']}")
    cats = manifest["categories"]
    if not isinstance(cats, list) or not all(isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in cats):
        raise KitError(f"kit {root}: {m} categories must be a list of {{id, name: str, isthing, origin}} objects")
    if len(cats) > MAX_CATEGORIES:
        raise KitError(f"kit {root}: {m} categories lists {len(cats)} categories (at most {MAX_CATEGORIES})")
    if manifest.get("inference") is not None:
        section(root, f"{m} inference", manifest["inference"], INFERENCE_KEYS)
    if manifest.get("bank") is not None:
        section(root, f"{m} bank", manifest["bank"], BANK_KEYS, required=("source",))
    runtime = manifest.get("runtime") or {}
    section(root, f"{m} runtime", runtime, RUNTIME_KEYS)
    section(root, f"{m} runtime.class_weights", runtime.get("class_weights") or {}, CLASS_WEIGHT_KEYS)
    section(root, f"{m} runtime.fit_kwargs", runtime.get("fit_kwargs") or {}, FIT_KWARGS)
    if manifest.get("provenance") is not None and json_object(manifest["provenance"]):
        raise KitError(f"kit {root}: {m} provenance must be a JSON object")


def network_layout(root: Path, manifest: Mapping[str, Any], num_classes: int) -> TensorLayout:
    """``{name: (shape, dtype)}`` that ``network.safetensors`` must hold (the class head excluded), from the
    manifest's model_config: a bounded Mask2Former config, or a registered stand-in ``{"name": NAME}``."""
    m, cfg = MANIFEST, manifest["model_config"]
    if isinstance(cfg, Mapping) and set(cfg) == {"name"}:
        factory = STAND_IN_NETWORKS.get(cfg["name"]) if isinstance(cfg["name"], str) else None
        if factory is None:
            raise KitError(f"kit {root}: {m} model_config names the network {_shown(cfg['name'])}, which this "
                           f"runtime does not know (it builds Mask2Former configs: {sorted(MASK2FORMER_SECTIONS)})")
        return expected_state(lambda: factory(manifest))
    section(root, f"{m} model_config", cfg, {k: json_object for k in MASK2FORMER_SECTIONS},
            required=tuple(MASK2FORMER_SECTIONS))
    for name, spec in MASK2FORMER_SECTIONS.items():
        section(root, f"{m} model_config.{name}", cfg[name], spec, required=tuple(spec))
    dec, pd = cfg["decoder"], cfg["pixel_decoder"]
    if dec["hidden_dim"] != manifest["embed_dim"]:
        raise KitError(f"kit {root}: {m} model_config.decoder.hidden_dim {dec['hidden_dim']} differs from "
                       f"embed_dim {manifest['embed_dim']} (the query embeddings the head classifies)")
    for where, width, heads in (("decoder", dec["hidden_dim"], dec["nheads"]),
                                ("pixel_decoder", pd["conv_dim"], pd["nheads"])):
        if width % heads:
            raise KitError(f"kit {root}: {m} model_config.{where}.nheads {heads} does not divide its width {width}")
    try:
        layout = expected_state(lambda: build_mask2former(dict(cfg), num_classes))
    except Exception as exc:  # any refusal of the constructors, reported as a manifest problem
        raise KitError(f"kit {root}: {m} model_config does not build a Mask2Former "
                       f"({type(exc).__name__}: {exc})") from None
    return {k: v for k, v in layout.items() if not k.startswith(CLASS_HEAD_PREFIX)}


def generator_layout(root: Path, manifest: Mapping[str, Any]) -> TensorLayout:
    """``{name: (shape, dtype)}`` that ``generator.safetensors`` must hold, from generator_config."""
    m = MANIFEST
    cfg = section(root, f"{m} generator_config", manifest["generator_config"], GENERATOR_KEYS,
                  required=("semantic_dim",))
    defaults = {k: p.default for k, p in inspect.signature(PrimitiveGenerator.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    full = {**defaults, **cfg}
    text_dim = manifest["text_encoder"]["dim"]
    if full["semantic_dim"] != text_dim:
        raise KitError(f"kit {root}: {m} generator_config.semantic_dim {full['semantic_dim']} differs from "
                       f"text_encoder.dim {text_dim}")
    if full["embed_dim"] != manifest["embed_dim"]:
        raise KitError(f"kit {root}: {m} generator_config.embed_dim {full['embed_dim']} differs from "
                       f"embed_dim {manifest['embed_dim']}")
    if full["embed_dim"] % full["num_heads"]:
        raise KitError(f"kit {root}: {m} generator_config.num_heads {full['num_heads']} does not divide "
                       f"embed_dim {full['embed_dim']}")
    try:
        return expected_state(lambda: PrimitiveGenerator(**cfg))
    except Exception as exc:  # any refusal of the constructor, reported as a manifest problem
        raise KitError(f"kit {root}: {m} generator_config does not build a PrimitiveGenerator "
                       f"({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------ tensors
def check_finite(root: Path, name: str, key: str, tensor: torch.Tensor) -> None:
    """Refuse NaN / inf in a floating tensor, naming the file and the tensor."""
    if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise KitError(f"kit {root}: {name}:{key} holds {bad} non-finite values (NaN or inf) of {tensor.numel()}")


def check_layout(root: Path, name: str, tensors: Mapping[str, torch.Tensor], layout: TensorLayout,
                 *, built_from: str) -> None:
    """Names, shapes and dtypes of ``tensors`` against ``layout`` (floating: any of FLOAT_DTYPES), and finiteness."""
    missing = sorted(set(layout) - set(tensors))
    unexpected = sorted(set(tensors) - set(layout))
    if missing or unexpected:
        raise KitError(f"kit {root}: {name} does not fit the network {built_from} builds: "
                       f"{len(missing)} tensors missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                       f"{len(unexpected)} unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    for key, (shape, dtype) in layout.items():
        t = tensors[key]
        if tuple(t.shape) != shape:
            raise KitError(f"kit {root}: {name}:{key} has shape {list(t.shape)} but {built_from} builds "
                           f"{list(shape)}")
        ok = t.dtype in FLOAT_DTYPES if dtype.is_floating_point else t.dtype == dtype
        if not ok:
            raise KitError(f"kit {root}: {name}:{key} has dtype {t.dtype}, {built_from} builds {dtype}")
        check_finite(root, name, key, t)
