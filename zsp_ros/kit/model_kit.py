"""Model kit: one directory holding everything the runtime needs (docs/CONTRACTS.md, "Model kit").

```
KIT/manifest.json           format "zsp-kit", format_version, model_config, input, embed_dim,
                            text_encoder {id, dim}, generator_config, categories, runtime,
                            files {name: {sha256, bytes}}, provenance
KIT/network.safetensors     Mask2Former weights without the class head (keys under
                            ``class_head_prefix``, default "sem_seg_head.predictor.class_embed.", dropped)
KIT/head.safetensors        weight float32 [K+1,E], bias float32 [K+1]  (row K = no-object)
KIT/generator.safetensors   primitive generator state dict
KIT/bank.safetensors        embeds float16 [M,E] seen query embeddings, category_ids int64 [M]
                            (0 = no-object), text_embeds float32 [K,D] text embeddings of the kit's categories
```

Where the bank comes from is the manifest's optional ``bank`` entry (`ModelKit.bank_source`): "real"
(absent = real: embeddings of the segmenter's queries on training images, `zsp train kit`) or
"generated" (the kit's generator conditioned on its categories' text embeddings, no no-object rows:
`zsp kit from-release`, since a release ships no bank).

`load_kit` checks everything before any of it is used (zsp_ros/kit/checks.py): every manifest field typed
and bounded, every file present with the recorded size and sha256, every tensor's name, shape and dtype
against the manifest (the network's against the Mask2Former its ``model_config`` builds, the generator's
against its ``generator_config``), every weight finite, and the text encoder in use against the one that
built the kit. Every failure is a one-line `KitError` naming the kit, the file and the field or tensor.
`save_kit` writes a kit that passes those checks (it re-loads it before returning).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from zsp_ros.inference.postprocess import DEFAULT_OBJECT_MASK_THRESHOLD, DEFAULT_OVERLAP_THRESHOLD
from zsp_ros.kit.category_set import Category, CategorySet
from zsp_ros.kit.checks import (
    BANK_SOURCES,
    CLASS_HEAD_PREFIX,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    check_finite,
    check_layout,
    check_manifest,
    generator_layout,
    network_layout,
)
from zsp_ros.kit.checks import KitError as KitError  # re-exported: callers import it from here
from zsp_ros.utils.provenance import atomic_write_bytes

KIT_FORMAT = "zsp-kit"
KIT_FORMAT_VERSION = 1
NETWORK_FILE = "network.safetensors"
HEAD_FILE = "head.safetensors"
GENERATOR_FILE = "generator.safetensors"
BANK_FILE = "bank.safetensors"
KIT_FILES = (NETWORK_FILE, HEAD_FILE, GENERATOR_FILE, BANK_FILE)
_REQUIRED_KEYS = ("format", "format_version", "model_config", "input", "embed_dim", "text_encoder",
                  "generator_config", "categories", "files")


DEFAULT_THRESHOLDS = {"object_mask_threshold": DEFAULT_OBJECT_MASK_THRESHOLD,    # Mask2Former's, used when
                      "overlap_threshold": DEFAULT_OVERLAP_THRESHOLD}            # the manifest records none


@dataclass(frozen=True)
class ModelKit:
    """A loaded, validated kit. Large network/generator weights are read on demand.

    Attributes:
        root: the kit directory.
        manifest: the parsed manifest.json.
        sha256: sha256 of manifest.json, which records every file's sha256: the kit's identity.
        categories: the kit's default category set (version 0), in head row order.
        head_weight: float32 [K+1,E]; head_bias: float32 [K+1].
        bank_embeds: float16 [M,E]; bank_category_ids: int64 [M] (0 = no-object).
        text_embeds: float32 [K,D], row k = text embedding of ``categories[k]``.
    """
    root: Path
    manifest: dict
    sha256: str
    categories: CategorySet
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    bank_embeds: torch.Tensor
    bank_category_ids: torch.Tensor
    text_embeds: torch.Tensor

    @property
    def model_config(self) -> dict:
        return self.manifest["model_config"]

    @property
    def generator_config(self) -> dict:
        return self.manifest["generator_config"]

    @property
    def embed_dim(self) -> int:
        return int(self.manifest["embed_dim"])

    @property
    def text_encoder_id(self) -> str:
        return str(self.manifest["text_encoder"]["id"])

    @property
    def text_encoder_dim(self) -> int:
        return int(self.manifest["text_encoder"]["dim"])

    @property
    def input(self) -> dict:
        """{"short_side": int, "max_long_side": int, "size_divisibility": int} (pixels)."""
        return self.manifest["input"]

    @property
    def runtime(self) -> dict:
        """Optional runtime defaults recorded by training (e.g. synthetic_per_category, class_weights)."""
        return self.manifest.get("runtime", {}) or {}

    @property
    def inference(self) -> dict:
        """Panoptic thresholds the kit was measured with: {"object_mask_threshold": float,
        "overlap_threshold": float} (probabilities in [0, 1]); Mask2Former's (`DEFAULT_THRESHOLDS`) when the
        manifest records none. `Segmenter.from_kit`, the CLIs and the node use these unless told otherwise."""
        recorded = self.manifest.get("inference") or {}
        return {key: float(recorded.get(key, DEFAULT_THRESHOLDS[key])) for key in DEFAULT_THRESHOLDS}

    @property
    def bank_source(self) -> str:
        """Where ``bank.safetensors`` comes from: "real" (query embeddings of training images; also when the
        manifest has no ``bank`` entry) or "generated" (the generator's output for the kit's categories)."""
        return str((self.manifest.get("bank") or {}).get("source", "real"))

    def network_state_dict(self) -> dict[str, torch.Tensor]:
        """The network weights (no class head), sha256-checked again on this read."""
        return _read_tensors(self.root, NETWORK_FILE, self.manifest)

    def generator_state_dict(self) -> dict[str, torch.Tensor]:
        """The primitive generator's weights, sha256-checked again on this read."""
        return _read_tensors(self.root, GENERATOR_FILE, self.manifest)

    def check_text_encoder(self, identifier: str, dim: int) -> None:
        """Raise KitError unless the encoder in use is the one that built the kit."""
        if identifier != self.text_encoder_id or int(dim) != self.text_encoder_dim:
            raise KitError(
                f"kit {self.root}: {MANIFEST} says the text encoder is {self.text_encoder_id!r} "
                f"(dim {self.text_encoder_dim}) but the encoder in use is {identifier!r} (dim {dim}); "
                f"names added at runtime would be embedded in a different space")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_tensors(root: Path, name: str, manifest: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load as st_load

    path = root / name
    entry = manifest["files"].get(name)
    if not isinstance(entry, Mapping) or "sha256" not in entry:
        raise KitError(f"kit {root}: {MANIFEST} has no sha256 for {name} under 'files'")
    _check_size(root, name, entry)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KitError(f"kit {root}: {name} is missing") from None
    except OSError as exc:
        raise KitError(f"kit {root}: {name} cannot be read ({exc})") from None
    digest = _sha256(data)
    if digest != entry["sha256"]:
        raise KitError(f"kit {root}: {name} is corrupt or was changed: sha256 {digest[:12]}… "
                       f"does not match {str(entry['sha256'])[:12]}… in {MANIFEST}")
    try:
        return st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise KitError(f"kit {root}: {name} is not a valid safetensors file ({exc})") from None


def _check_size(root: Path, name: str, entry: Mapping[str, Any]) -> None:
    """The file's size against the manifest's ``bytes``, before anything is read."""
    try:
        size = (root / name).stat().st_size
    except FileNotFoundError:
        raise KitError(f"kit {root}: {name} is missing") from None
    except OSError as exc:
        raise KitError(f"kit {root}: {name} cannot be read ({exc})") from None
    if "bytes" in entry and size != entry["bytes"]:
        raise KitError(f"kit {root}: {name} is corrupt or was changed: it has {size} bytes but {MANIFEST} "
                       f"files.{name}.bytes says {entry['bytes']}")


def _expect(root: Path, name: str, tensors: Mapping[str, torch.Tensor], key: str,
            shape: Sequence[int | None], dtypes: tuple[torch.dtype, ...]) -> torch.Tensor:
    """Return ``tensors[key]`` after checking its dtype and shape (None = any size)."""
    if key not in tensors:
        raise KitError(f"kit {root}: {name} has no tensor {key!r} (has {sorted(tensors)})")
    t = tensors[key]
    if t.dtype not in dtypes:
        raise KitError(f"kit {root}: {name}:{key} has dtype {t.dtype}, expected "
                       f"{' or '.join(str(d) for d in dtypes)}")
    if t.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape)):
        want = "[" + ",".join("*" if s is None else str(s) for s in shape) + "]"
        raise KitError(f"kit {root}: {name}:{key} has shape {list(t.shape)}, expected {want}")
    check_finite(root, name, key, t)
    return t


def _only(root: Path, name: str, tensors: Mapping[str, torch.Tensor], keys: Sequence[str]) -> None:
    extra = sorted(set(tensors) - set(keys))
    if extra:
        raise KitError(f"kit {root}: {name} holds unexpected tensors {extra[:5]} (expected only {list(keys)})")


def load_kit(kit_dir: str | Path, *, text_encoder: tuple[str, int] | None = None) -> ModelKit:
    """Load and validate a kit directory.

    Args:
        kit_dir: the kit directory.
        text_encoder: (identifier, dim) of the encoder that will embed new names; checked against
            the manifest when given.

    Raises:
        KitError: naming the file and what is wrong.
    """
    root = Path(kit_dir)
    if not root.is_dir():
        raise KitError(f"kit {root}: not a directory")
    try:
        size = (root / MANIFEST).stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise KitError(f"kit {root}: {MANIFEST} has {size} bytes (at most {MAX_MANIFEST_BYTES})")
        manifest_bytes = (root / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise KitError(f"kit {root}: {MANIFEST} is missing") from None
    except OSError as exc:
        raise KitError(f"kit {root}: {MANIFEST} cannot be read ({exc})") from None
    try:
        manifest = json.loads(manifest_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise KitError(f"kit {root}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise KitError(f"kit {root}: {MANIFEST} must hold a JSON object")
    if manifest.get("format") != KIT_FORMAT:
        raise KitError(f"kit {root}: {MANIFEST} format is {manifest.get('format')!r}, expected {KIT_FORMAT!r}")
    if manifest.get("format_version") != KIT_FORMAT_VERSION:
        raise KitError(f"kit {root}: {MANIFEST} format_version is {manifest.get('format_version')!r}; "
                       f"this runtime reads version {KIT_FORMAT_VERSION}")
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise KitError(f"kit {root}: {MANIFEST} lacks {', '.join(missing)}")
    check_manifest(root, manifest, KIT_FILES)                 # every field, before any is used
    te = manifest["text_encoder"]
    try:
        categories = CategorySet.from_dicts(manifest["categories"], version=0, text_encoder=str(te["id"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise KitError(f"kit {root}: {MANIFEST} categories are invalid ({exc})") from None
    if len(categories) == 0:
        raise KitError(f"kit {root}: {MANIFEST} lists no categories")
    num_k, embed_dim, text_dim = len(categories), int(manifest["embed_dim"]), int(te["dim"])
    net_layout = network_layout(root, manifest, num_k)
    gen_layout = generator_layout(root, manifest)
    for name in KIT_FILES:                                    # sizes first: nothing oversized is read
        _check_size(root, name, manifest["files"][name])

    head = _read_tensors(root, HEAD_FILE, manifest)
    _only(root, HEAD_FILE, head, ("weight", "bias"))
    weight = _expect(root, HEAD_FILE, head, "weight", (num_k + 1, embed_dim), (torch.float32,))
    bias = _expect(root, HEAD_FILE, head, "bias", (num_k + 1,), (torch.float32,))
    bank = _read_tensors(root, BANK_FILE, manifest)
    _only(root, BANK_FILE, bank, ("embeds", "category_ids", "text_embeds"))
    embeds = _expect(root, BANK_FILE, bank, "embeds", (None, embed_dim), (torch.float16, torch.float32))
    ids = _expect(root, BANK_FILE, bank, "category_ids", (embeds.shape[0],), (torch.int64,))
    text = _expect(root, BANK_FILE, bank, "text_embeds", (num_k, text_dim), (torch.float32,))
    unknown = sorted(set(ids.unique().tolist()) - set(categories.ids) - {0})
    if unknown:
        raise KitError(f"kit {root}: {BANK_FILE}:category_ids holds ids {unknown[:10]} that are not "
                       f"kit categories (nor 0 = no-object)")
    built_from = f"{MANIFEST} model_config"
    check_layout(root, NETWORK_FILE, _read_tensors(root, NETWORK_FILE, manifest), net_layout, built_from=built_from)
    check_layout(root, GENERATOR_FILE, _read_tensors(root, GENERATOR_FILE, manifest), gen_layout,
                 built_from=f"{MANIFEST} generator_config")
    kit = ModelKit(root=root, manifest=manifest, sha256=_sha256(manifest_bytes), categories=categories,
                   head_weight=weight, head_bias=bias, bank_embeds=embeds, bank_category_ids=ids,
                   text_embeds=text)
    if text_encoder is not None:
        kit.check_text_encoder(*text_encoder)
    return kit


def save_kit(out_dir: str | Path, *, model_config: dict, network_state: Mapping[str, torch.Tensor],
             head_weight: torch.Tensor, head_bias: torch.Tensor, generator_config: dict,
             generator_state: Mapping[str, torch.Tensor], bank_embeds: torch.Tensor,
             bank_category_ids: torch.Tensor, text_embeds: torch.Tensor,
             categories: Sequence[Category | Mapping[str, Any]], text_encoder_id: str, text_encoder_dim: int,
             short_side: int, max_long_side: int, size_divisibility: int = 32,
             runtime: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
             extra: Mapping[str, Any] | None = None, text_encoder_kwargs: Mapping[str, Any] | None = None,
             class_head_prefix: str = CLASS_HEAD_PREFIX, bank: Mapping[str, Any] | None = None) -> Path:
    """Write a kit directory (files atomically, manifest last) and return its path after re-loading it.

    Args:
        model_config: the config dict `build_mask2former(model_config, num_classes)` takes.
        network_state: the network's state dict; keys starting with ``class_head_prefix`` (where
            Mask2Former keeps its ClassifierHead) are dropped.
        head_weight, head_bias: float [K+1,E], [K+1], rows in ``categories`` order, last = no-object.
        generator_config, generator_state: the primitive generator's config dict and weights.
        bank_embeds: float [M,E] real seen query embeddings (stored fp16);
        bank_category_ids: int [M], category id or 0 = no-object.
        text_embeds: float [K,D] text embeddings of ``categories`` (same order).
        categories: the kit's default set, [{id, name, isthing, origin}] (origin defaults to "seen").
        text_encoder_id, text_encoder_dim: the encoder that produced ``text_embeds``.
        text_encoder_kwargs: JSON-able constructor arguments that `build_text_encoder(text_encoder_id, **kw)`
            needs to rebuild it (e.g. the vocabularies of the attribute encoder); stored as text_encoder.kwargs.
        short_side, max_long_side, size_divisibility: the input resize rule (pixels).
        runtime: optional runtime defaults: {"synthetic_per_category": int, "class_weights": {"seen",
            "added", "no_object"}, "fit_kwargs": {keyword arguments of fit_head}}.
        provenance: command, metrics, machine (see zsp_ros.utils.provenance).
        extra: other manifest entries (e.g. the world's unseen categories for benchmarks).
        bank: the manifest's ``bank`` entry, {"source": "real" | "generated", "rows_per_category",
            "seed", "categories", "note"} (zsp_ros/kit/checks.py ``BANK_KEYS``); None writes none (= real).
    """
    from safetensors.torch import save as st_save

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    cats = [c.to_dict() if isinstance(c, Category) else Category.from_dict(dict(c)).to_dict()
            for c in categories]

    def tensors(d: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous().clone() for k, v in d.items()}

    payloads = {
        NETWORK_FILE: tensors({k: v for k, v in network_state.items() if not k.startswith(class_head_prefix)}),
        HEAD_FILE: tensors({"weight": head_weight.float(), "bias": head_bias.float()}),
        GENERATOR_FILE: tensors(generator_state),
        BANK_FILE: tensors({"embeds": bank_embeds.to(torch.float16),
                            "category_ids": bank_category_ids.to(torch.int64),
                            "text_embeds": torch.as_tensor(text_embeds).float()}),
    }
    files = {}
    for name, payload in payloads.items():
        data = st_save(payload)
        atomic_write_bytes(root / name, data)
        files[name] = {"sha256": _sha256(data), "bytes": len(data)}
    manifest = {
        "format": KIT_FORMAT, "format_version": KIT_FORMAT_VERSION,
        "model_config": model_config, "generator_config": generator_config,
        "input": {"short_side": int(short_side), "max_long_side": int(max_long_side),
                  "size_divisibility": int(size_divisibility)},
        "embed_dim": int(head_weight.shape[1]),
        "text_encoder": {"id": text_encoder_id, "dim": int(text_encoder_dim),
                         **({"kwargs": dict(text_encoder_kwargs)} if text_encoder_kwargs else {})},
        "categories": cats, "runtime": dict(runtime or {}), "files": files,
        "provenance": dict(provenance or {}),
    }
    if bank is not None:
        if bank.get("source") not in BANK_SOURCES:
            raise ValueError(f"save_kit: bank.source must be one of {BANK_SOURCES}, got {bank.get('source')!r}")
        manifest["bank"] = dict(bank)
    for key, value in (extra or {}).items():
        if key in manifest:
            raise ValueError(f"save_kit: extra manifest key {key!r} would overwrite a required entry")
        manifest[key] = value
    atomic_write_bytes(root / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    load_kit(root)
    return root


