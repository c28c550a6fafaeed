# Over 400 lines: the restricted unpickler and its byte budget must sit with the key maps that read its output.
"""`zsp train import`: a released detectron2 Mask2Former / PADing checkpoint -> a segmenter run directory.

    zsp train import --checkpoint model_final_94dc52.pkl --config config/r50_coco_panoptic.yaml \\
        --categories coco_panoptic --out runs/m2f_r50_coco

Reads, without running any code from the file:
- detectron2 ``.pkl`` (Mask2Former's model zoo): ``{"model": {name: numpy array}, ...}`` through
  a restricted unpickler that allows only numpy arrays/dtypes/scalars and plain containers;
- ``.pth`` / ``.pt`` (detectron2 training checkpoints, PADing releases): ``torch.load(...,
  weights_only=True)``; the state dict is the ``"model"`` (or ``"state_dict"``) entry or the file itself.
A leading ``module.`` (DDP) is stripped. Every key of the file that neither the network nor the
generator takes is reported (``criterion.empty_weight``, PADing's ``new_fc``, disentangling and
relation modules, ...); every network key the file lacks is reported and refused unless
``--allow-missing``; a shape mismatch is refused by name. The class head sets the class count:
``class_embed.weight`` [K+1, E] needs K categories.

PADing checkpoints also hold the primitive generator (PADing/PADing_model.py of the released
code): ``fc_projection`` (Linear Ds -> E), ``dict_feature.weight`` [P, E] (the primitives) and
``generator`` (a DETR ``TransformerDecoder``: ``layers.i.{self_attn, multihead_attn}`` with
packed ``in_proj_weight`` [3E, E], ``linear1``/``linear2``, ``norm1..3``, then ``norm``). They are
mapped into zsp_ros.model.primitive_generator.PrimitiveGenerator (``GENERATOR_MAP``): the packed
projections are split into q/k/v; the query/key rows of the one-token self-attention cannot
change its output (softmax over one key is 1), our module has no parameters for them and the
report lists them as unused. The generator is built from ``--pading-config``'s ``generator:``
section (default config/pading_coco.yaml, the released sizes), ``semantic_dim`` from
``fc_projection.weight`` and ``embed_dim`` from the model config; a shape or layer-count mismatch
is refused by name. It is written as ``generator.safetensors`` (zsp_ros/pading/artifacts.py format).

Writes the run directory that stages 2-3 read (zsp_ros/training/segmenter_run.py): ``config.yaml``,
``categories.json``, ``segmenter.safetensors``, ``import_report.json``, ``provenance.json``
(+ ``generator.safetensors`` for a PADing checkpoint).
"""
from __future__ import annotations

import argparse
import codecs
import io
import json
import math
import pickle
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from zsp_ros.data.coco_real import load_category_list, load_coco_split
from zsp_ros.model.build import build_mask2former, load_config
from zsp_ros.model.primitive_generator import PrimitiveGenerator
from zsp_ros.pading.artifacts import save_generator
from zsp_ros.training.checkpoint import save_weights
from zsp_ros.utils.provenance import atomic_write_bytes, provenance, write_json

CLASS_WEIGHT = "sem_seg_head.predictor.class_embed.weight"
DEFAULT_PADING_CONFIG = Path(__file__).resolve().parents[2] / "config" / "pading_coco.yaml"   # the checkout's config/
GENERATOR_PREFIXES = ("fc_projection.", "dict_feature.", "generator.")
# PrimitiveGenerator name -> (released-code name, rows of a packed [3E, ...] in_proj to take:
# 0 query, 1 key, 2 value; None = the whole tensor). "{i}" is the layer index.
GENERATOR_MAP: dict[str, tuple[str, int | None]] = {
    "semantic_proj.weight": ("fc_projection.weight", None),
    "semantic_proj.bias": ("fc_projection.bias", None),
    "primitives": ("dict_feature.weight", None),
    "norm.weight": ("generator.norm.weight", None),
    "norm.bias": ("generator.norm.bias", None),
    "layers.{i}.self_attn.v_proj.weight": ("generator.layers.{i}.self_attn.in_proj_weight", 2),
    "layers.{i}.self_attn.v_proj.bias": ("generator.layers.{i}.self_attn.in_proj_bias", 2),
    "layers.{i}.self_attn.out_proj.weight": ("generator.layers.{i}.self_attn.out_proj.weight", None),
    "layers.{i}.self_attn.out_proj.bias": ("generator.layers.{i}.self_attn.out_proj.bias", None),
    **{f"layers.{{i}}.cross_attn.{p}_proj.{t}": (f"generator.layers.{{i}}.multihead_attn.in_proj_{t}", j)
       for j, p in enumerate("qkv") for t in ("weight", "bias")},
    "layers.{i}.cross_attn.out_proj.weight": ("generator.layers.{i}.multihead_attn.out_proj.weight", None),
    "layers.{i}.cross_attn.out_proj.bias": ("generator.layers.{i}.multihead_attn.out_proj.bias", None),
    **{f"layers.{{i}}.{m}.{t}": (f"generator.layers.{{i}}.{m}.{t}", None)
       for m in ("linear1", "linear2", "norm1", "norm2", "norm3") for t in ("weight", "bias")},
}

# (module, name) pairs a detectron2 .pkl of numpy arrays needs; nothing else is resolved.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.dtypes", "Float32DType"), ("numpy.dtypes", "Float64DType"), ("numpy.dtypes", "Float16DType"),
    ("numpy.dtypes", "Int64DType"), ("numpy.dtypes", "Int32DType"), ("numpy.dtypes", "UInt8DType"),
    ("numpy.dtypes", "BoolDType"),
    ("collections", "OrderedDict"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("_codecs", "encode"),   # numpy arrays pickled under protocol 2 store their bytes through it
}
BUDGET_FACTOR = 4                 # default byte budget: BUDGET_FACTOR x the pickle's size + BUDGET_MARGIN
BUDGET_MARGIN = 64 << 20
UNKNOWN_SIZE_BUDGET = 1 << 30     # when the stream's size cannot be measured
ELEMENT_BYTES = 64                # charged per element of a container a callable builds from an argument
_ARRAY_KINDS = "biufc"            # bool, integers, floats, complex: all a checkpoint of weights holds
_MAX_ITEMSIZE = 16
_MAX_NDIM = 32


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a checkpoint: only `_reconstruct` may use it (as numpy's pickles do);
    calling it directly, which would allocate any shape, is refused."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("refusing numpy.ndarray(...) called directly from a checkpoint")


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only ``_ALLOWED_GLOBALS`` (anything else raises UnpicklingError) and keeps
    every object whose size the pickle *declares* within a byte budget, checked BEFORE it is allocated.

    Budget: ``max_bytes`` (default: ``BUDGET_FACTOR`` = 4 x the stream's size + ``BUDGET_MARGIN`` = 64 MiB;
    1 GiB when the size cannot be measured). Charged against it, in bytes: ``bytearray(n)`` (n),
    numpy's ``_reconstruct(ndarray, shape, dtype)`` (prod(shape) x itemsize), an array's ``__setstate__``
    (its nbytes; the raw data must be bytes/str of exactly that length, the dtype a plain number or bool
    type: object, void, string and structured dtypes are refused), ``scalar(dtype, data)`` (len(data)),
    ``_codecs.encode(text)`` (len(text), x4 for encodings other than latin-1) and ``list/tuple/set/
    frozenset/dict/OrderedDict(arg)`` (``ELEMENT_BYTES`` = 64 per element). A legitimate checkpoint is
    charged about twice its size (each array's encoded bytes, then the array). Everything else a pickle
    makes is spelled out in the stream itself, so it is bounded by the stream's size; give it an in-memory
    stream (`read_checkpoint` does): a declared length then cannot allocate past the data that exists.

    The pure-Python unpickler (``pickle._Unpickler``) is used because its BUILD step can be checked; the
    C one calls ``ndarray.__setstate__`` directly (with an object dtype and a short list that crashes
    numpy 2.4 outright).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, *, max_bytes: int | None = None, encoding: str = "ASCII",
                 errors: str = "strict") -> None:
        super().__init__(file, encoding=encoding, errors=errors)
        self.max_bytes = _default_budget(file) if max_bytes is None else int(max_bytes)
        self.charged = 0
        self._checked: dict[tuple[str, str], Any] = {
            **{(m, "_reconstruct"): self._reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
            ("numpy", "ndarray"): _NdarrayType, ("numpy", "dtype"): self._dtype,
            ("builtins", "bytearray"): self._bytearray, ("_codecs", "encode"): self._encode,
            **{("builtins", c.__name__): self._container(c) for c in (dict, list, tuple, set, frozenset)},
            ("collections", "OrderedDict"): self._container(OrderedDict),
        }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint "
                                         f"(only numpy arrays and plain containers are allowed)")
        if name == "scalar":                          # numpy's scalar(dtype, data), wrapped with its checks
            real = super().find_class(module, name)
            return lambda dtype, data=None: self._scalar(real, dtype, data)
        return self._checked.get((module, name)) or super().find_class(module, name)

    # ------------------------------------------------------------------ the budget
    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` about to be allocated for ``what``; UnpicklingError past the budget."""
        if nbytes < 0 or self.charged + nbytes > self.max_bytes:
            raise pickle.UnpicklingError(
                f"refusing {what}: {nbytes} bytes would bring what this checkpoint declares to "
                f"{self.charged + nbytes} bytes, over its budget of {self.max_bytes} (4 x the file size + "
                f"64 MiB unless max_bytes is given); nothing was allocated")
        self.charged += nbytes

    def _bytearray(self, source: Any = b"", *args: Any) -> bytearray:
        if isinstance(source, bool) or not isinstance(source, (int, str, bytes, bytearray)):
            raise pickle.UnpicklingError(f"refusing bytearray({type(source).__name__}) from a checkpoint")
        self.charge(source if isinstance(source, int) else 4 * len(source), f"bytearray({_short(source)})")
        return bytearray(source, *args)

    def _container(self, cls: type) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            n = len(kwargs)
            for arg in args:
                if not hasattr(arg, "__len__"):
                    raise pickle.UnpicklingError(f"refusing {cls.__name__}() of a {type(arg).__name__} "
                                                 f"(no length) from a checkpoint")
                n += len(arg)
            self.charge(ELEMENT_BYTES * n, f"{cls.__name__}() of {n} elements")
            return cls(*args, **kwargs)
        return build

    def _encode(self, obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if not isinstance(obj, (str, bytes)):
            raise pickle.UnpicklingError(f"refusing _codecs.encode of a {type(obj).__name__} from a checkpoint")
        latin1 = encoding.lower().replace("_", "-") in ("latin1", "latin-1", "iso-8859-1")
        self.charge(len(obj) * (1 if latin1 else 4), f"_codecs.encode of {len(obj)} characters")
        return codecs.encode(obj, encoding, errors)

    def _dtype(self, *args: Any) -> np.dtype:
        dtype = np.dtype(*args)
        _check_dtype(dtype)
        return dtype

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _NdarrayType:
            raise pickle.UnpicklingError(f"refusing _reconstruct of {subtype!r} (only numpy.ndarray)")
        dims, dt = _check_shape(shape), np.dtype(dtype)
        _check_dtype(dt)
        self.charge(math.prod(dims) * dt.itemsize, f"an array of shape {list(dims)} and dtype {dt}")
        return np.ndarray(dims, dt)

    def _scalar(self, real: Any, dtype: Any, data: Any) -> Any:
        _check_dtype(dtype)
        if not isinstance(data, (bytes, str)):
            raise pickle.UnpicklingError(f"refusing a numpy scalar made from a {type(data).__name__}")
        self.charge(len(data), "a numpy scalar")
        return real(dtype, data)

    def load_build(self) -> None:
        """BUILD: an array's state (shape, dtype, raw data) is checked and charged before numpy sees it."""
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.ndarray):
            if not isinstance(state, tuple) or len(state) not in (4, 5):
                raise pickle.UnpicklingError("refusing an array state that is not numpy's (shape, dtype, ...)")
            shape, dtype, _fortran, raw = state[-4:]
            dims = _check_shape(shape)
            _check_dtype(dtype)
            nbytes = math.prod(dims) * dtype.itemsize
            if not isinstance(raw, (bytes, str)) or len(raw) != nbytes:
                raise pickle.UnpicklingError(f"refusing an array of shape {list(dims)} and dtype {dtype} whose "
                                             f"raw data is not {nbytes} bytes")
            self.charge(nbytes, f"an array of shape {list(dims)} and dtype {dtype}")
        super().load_build()
        if isinstance(inst, np.dtype):
            _check_dtype(inst)

    dispatch[pickle.BUILD[0]] = load_build


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_shape(shape: Any) -> tuple[int, ...]:
    if (not isinstance(shape, tuple) or len(shape) > _MAX_NDIM
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise pickle.UnpicklingError(f"refusing array shape {_short(shape)} from a checkpoint")
    return shape


def _check_dtype(dtype: Any) -> None:
    if (not isinstance(dtype, np.dtype) or dtype.kind not in _ARRAY_KINDS or dtype.itemsize > _MAX_ITEMSIZE
            or dtype.fields is not None or dtype.subdtype is not None):
        raise pickle.UnpicklingError(f"refusing dtype {_short(dtype)} from a checkpoint (only plain number and "
                                     f"bool types)")


def _default_budget(file: Any) -> int:
    try:
        here = file.tell()
        size = file.seek(0, 2) - here
        file.seek(here)
    except (AttributeError, OSError, ValueError):
        return UNKNOWN_SIZE_BUDGET
    return BUDGET_FACTOR * size + BUDGET_MARGIN


def _state_of(obj: Any, path: Path) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                return obj[key]
        if obj and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in obj.values()):
            return obj
    raise ValueError(f"{path}: no state dict found (want {{'model': {{name: array}}}} or {{name: tensor}})")


def read_checkpoint(path: str | Path, *, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """name -> float/int tensor of a .pkl / .pth / .pt / .safetensors checkpoint, ``module.`` stripped.

    A ``.pkl`` is read into memory and unpickled by `RestrictedUnpickler` (``max_bytes``: its byte budget;
    default 4 x the file size + 64 MiB). A ``.pth``/``.pt`` must not name ``bytearray`` (torch's
    weights-only unpickler allows ``bytearray(n)`` of any n; no torch checkpoint needs it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        raw: Mapping[str, Any] = load_file(str(path))
    elif path.suffix == ".pkl":
        data = path.read_bytes()
        try:
            obj = RestrictedUnpickler(io.BytesIO(data), max_bytes=max_bytes, encoding="latin1").load()
        except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            raise pickle.UnpicklingError(f"{path}: not a readable checkpoint pickle "
                                         f"({type(exc).__name__}: {exc})") from None
        raw = _state_of(obj, path)
    elif path.suffix in (".pth", ".pt"):
        _refuse_bytearray(path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{path}: refused by torch.load(weights_only=True): {exc}") from None
        raw = _state_of(obj, path)
    else:
        raise ValueError(f"{path}: unknown checkpoint type {path.suffix!r}; want .pkl, .pth, .pt or .safetensors")
    out = {}
    for name, value in raw.items():
        key = name[len("module."):] if name.startswith("module.") else name
        out[key] = torch.as_tensor(np.asarray(value)) if isinstance(value, np.ndarray) else value
    return out


def _refuse_bytearray(path: Path) -> None:
    """Refuse a torch zip checkpoint whose pickle names ``bytearray`` (read statically, nothing runs)."""
    import pickletools
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith(".pkl"):
                continue
            try:
                for opcode, arg, _pos in pickletools.genops(archive.read(name)):
                    if isinstance(arg, str) and (arg == "bytearray" or arg.endswith(" bytearray")):
                        raise pickle.UnpicklingError(f"{path}: refusing a torch checkpoint whose {name} names "
                                                     f"bytearray ({opcode.name}); no weights need it")
            except ValueError as exc:
                raise ValueError(f"{path}: {name} is not a valid pickle ({exc})") from None


def map_state(checkpoint: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]
              ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Match checkpoint tensors to the model's names -> (state to load, report).

    Report: ``loaded`` (count), ``unmapped`` (checkpoint keys the model lacks), ``missing`` (model
    keys the checkpoint lacks), ``shape_mismatch`` {name: [checkpoint shape, model shape]}.
    """
    state, mismatch = {}, {}
    for name, tensor in checkpoint.items():
        if name not in model_state:
            continue
        want = model_state[name]
        if tuple(tensor.shape) != tuple(want.shape):
            mismatch[name] = [list(tensor.shape), list(want.shape)]
            continue
        state[name] = tensor.to(want.dtype)
    report = {"loaded": len(state), "unmapped": sorted(set(checkpoint) - set(model_state)),
              "missing": sorted(set(model_state) - set(checkpoint)), "shape_mismatch": mismatch}
    return state, report


def has_generator(checkpoint: Mapping[str, torch.Tensor]) -> bool:
    """Whether the checkpoint holds PADing's primitive generator (``fc_projection`` + ``generator.layers``)."""
    return "fc_projection.weight" in checkpoint and any(k.startswith("generator.layers.") for k in checkpoint)


def map_generator(checkpoint: Mapping[str, torch.Tensor], generator_state: Mapping[str, torch.Tensor]
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Released generator tensors -> a PrimitiveGenerator state dict, per ``GENERATOR_MAP``.

    Returns (state, report): ``mapped`` {our name: released name[rows]}, ``used`` (released keys
    read), ``unused`` {released key: why} for the one-token self-attention query/key rows,
    ``missing`` (our names without a source) and ``shape_mismatch`` {released key: [checkpoint
    shape, expected shape]} (also ``generator.layers`` [checkpoint layers, ours] when the
    layer counts differ).
    """
    ours_layers = 1 + max((int(k.split(".")[1]) for k in generator_state if k.startswith("layers.")), default=-1)
    theirs_layers = 1 + max((int(k.split(".")[2]) for k in checkpoint if k.startswith("generator.layers.")),
                            default=-1)
    state: dict[str, torch.Tensor] = {}
    mapped, used, mismatch, missing = {}, set(), {}, []
    if ours_layers != theirs_layers:
        mismatch["generator.layers"] = [theirs_layers, ours_layers]
    for ours, want in generator_state.items():
        parts = ours.split(".")
        key = ".".join(["layers", "{i}", *parts[2:]]) if parts[0] == "layers" else ours
        source, rows = GENERATOR_MAP[key]
        source = source.replace("{i}", parts[1]) if parts[0] == "layers" else source
        if source not in checkpoint:
            missing.append(ours)
            continue
        tensor = checkpoint[source]
        expected = list(want.shape) if rows is None else [3 * want.shape[0], *want.shape[1:]]
        if list(tensor.shape) != expected:
            mismatch[source] = [list(tensor.shape), expected]
            continue
        if rows is not None:
            n = want.shape[0]
            tensor = tensor[rows * n:(rows + 1) * n]
        state[ours] = tensor.to(want.dtype).clone()
        mapped[ours] = source if rows is None else f"{source}[{rows * want.shape[0]}:{(rows + 1) * want.shape[0]}]"
        used.add(source)
    unused = {}
    for name in checkpoint:
        if ".self_attn.in_proj_" in name and name.startswith("generator.layers.") and name in used:
            unused[name] = ("query/key rows [0:2E]: a self-attention over one token ignores them "
                            "(softmax over one key is 1)")
    report = {"mapped": mapped, "used": sorted(used), "unused": unused, "missing": sorted(missing),
              "shape_mismatch": mismatch}
    return state, report


def build_generator_for(checkpoint: Mapping[str, torch.Tensor], *, pading_config: str | Path,
                        embed_dim: int) -> torch.nn.Module:
    """A PrimitiveGenerator sized by ``pading_config``'s ``generator:`` section, ``embed_dim`` and
    the checkpoint's ``fc_projection.weight`` [E, Ds] (Ds, the text embedding dimension)."""
    import yaml


    path = Path(pading_config)
    if not path.is_file():
        raise FileNotFoundError(f"PADing config {path} does not exist (its generator: section sizes the import)")
    section = (yaml.safe_load(path.read_text()) or {}).get("generator")
    keys = {"num_primitives": int, "num_layers": int, "num_heads": int, "ffn_dim": int,
            "dropout": float, "noise_std": float}
    if not isinstance(section, Mapping) or any(k not in section for k in keys):
        raise ValueError(f"{path}: needs a generator: section with {list(keys)}")
    semantic_dim = int(checkpoint["fc_projection.weight"].shape[1])
    return PrimitiveGenerator(semantic_dim=semantic_dim, embed_dim=int(embed_dim),
                              **{k: cast(section[k]) for k, cast in keys.items()})


def _categories(spec: str, k: int) -> list[dict[str, Any]]:
    if spec in ("coco_panoptic", "coco_stuff", "coco_instances"):
        cats = load_category_list(spec)
        if spec == "coco_stuff":
            cats = sorted(cats, key=lambda c: c["train_id"])
    else:
        split = load_coco_split(spec)
        cats = [c for c in split["categories"] if c["seen"]] if len(split["seen_ids"]) == k else split["categories"]
    if len(cats) != k:
        raise ValueError(f"the checkpoint's class head has {k} classes (+ no-object) but --categories {spec} "
                         f"gives {len(cats)}")
    return [{"index": i, "id": c["id"], "name": c["name"], "isthing": bool(c["isthing"])} for i, c in enumerate(cats)]


def import_checkpoint(*, checkpoint: str | Path, config: str | Path, categories: str, out: str | Path,
                      allow_missing: bool = False, pading_config: str | Path | None = None) -> dict[str, Any]:
    """Import ``checkpoint`` into run directory ``out``; returns the report (also written as import_report.json).

    A PADing generator in the checkpoint is mapped too (``pading_config`` sizes it; default
    ``DEFAULT_PADING_CONFIG``). Raises ValueError naming every mismatching key, or the missing
    keys when not ``allow_missing``; nothing is written then.
    """
    import yaml


    ckpt = read_checkpoint(checkpoint)
    if CLASS_WEIGHT not in ckpt:
        raise ValueError(f"{checkpoint}: no {CLASS_WEIGHT}; is this a Mask2Former checkpoint?")
    k = int(ckpt[CLASS_WEIGHT].shape[0]) - 1
    cats = _categories(categories, k)
    cfg = load_config(config)
    model = build_mask2former(cfg["model"], num_classes=k)
    state, report = map_state(ckpt, model.state_dict())
    if report["shape_mismatch"]:
        lines = "; ".join(f"{n}: checkpoint {a} vs model {b}" for n, (a, b) in report["shape_mismatch"].items())
        raise ValueError(f"{checkpoint}: shapes do not match config {config}: {lines}")
    if report["missing"] and not allow_missing:
        raise ValueError(f"{checkpoint}: {len(report['missing'])} network weights are absent "
                         f"(first: {report['missing'][:5]}); pass --allow-missing to keep their initial values")
    generator, gen_report = None, None
    if has_generator(ckpt):
        gen_config = Path(pading_config) if pading_config is not None else DEFAULT_PADING_CONFIG
        generator = build_generator_for(ckpt, pading_config=gen_config, embed_dim=model.embed_dim)
        gen_state, gen_report = map_generator(ckpt, generator.state_dict())
        if gen_report["shape_mismatch"]:
            lines = "; ".join(f"{n}: checkpoint {a} vs generator {b}"
                              for n, (a, b) in gen_report["shape_mismatch"].items())
            raise ValueError(f"{checkpoint}: the PADing generator does not match {gen_config}: {lines}")
        if gen_report["missing"]:
            raise ValueError(f"{checkpoint}: the PADing generator lacks tensors for {gen_report['missing']}")
        generator.load_state_dict(gen_state)
        gen_report["config"] = generator.config
        gen_report["pading_config"] = str(gen_config)
        used = set(gen_report["used"])
        report["unmapped"] = [k for k in report["unmapped"] if k not in used]
    model.load_state_dict(state, strict=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(checkpoint), "config": str(config), "num_classes": k, **report,
              "generator": gen_report}
    save_weights(out / "segmenter.safetensors", model, metadata={"imported_from": Path(checkpoint).name})
    if generator is not None:
        save_generator(out / "generator.safetensors", generator,
                       metadata={"imported_from": Path(checkpoint).name,
                                 "text_encoder": {"dim": generator.semantic_dim}})
    atomic_write_bytes(out / "config.yaml", yaml.safe_dump(json.loads(json.dumps(cfg)), sort_keys=False).encode())
    write_json(out / "categories.json", cats)
    write_json(out / "import_report.json", report)
    write_json(out / "provenance.json", provenance())
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="detectron2 .pkl, .pth/.pt or .safetensors")
    parser.add_argument("--config", required=True, help="model config (e.g. config/r50_coco_panoptic.yaml)")
    parser.add_argument("--categories", default="coco_panoptic",
                        help="category list (coco_panoptic, coco_stuff, coco_instances), split name or split file")
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--allow-missing", action="store_true", help="keep initial values of absent weights")
    parser.add_argument("--pading-config", default=None,
                        help="PADing config whose generator: section sizes the imported generator "
                             "(default config/pading_coco.yaml)")


def run(args: argparse.Namespace) -> int:
    try:
        report = import_checkpoint(checkpoint=args.checkpoint, config=args.config, categories=args.categories,
                                   out=args.out, allow_missing=args.allow_missing,
                                   pading_config=args.pading_config)
    except (FileNotFoundError, ValueError, pickle.UnpicklingError) as exc:
        print(f"zsp train import: {exc}", file=sys.stderr)
        return 1
    print(f"imported {report['loaded']} tensors into {args.out} ({report['num_classes']} classes)")
    gen = report["generator"]
    if gen is not None:
        print(f"  PADing generator: {len(gen['mapped'])} tensors from {len(gen['used'])} checkpoint keys "
              f"-> {Path(args.out) / 'generator.safetensors'}")
        for name, why in gen["unused"].items():
            print(f"  partly used: {name} ({why})")
    for name in report["unmapped"]:
        print(f"  not mapped (ignored): {name}")
    for name in report["missing"]:
        print(f"  absent from the checkpoint (initial value kept): {name}")
    return 0
