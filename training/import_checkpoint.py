"""`zsp train import`: a released detectron2 Mask2Former / PADing checkpoint -> a segmenter run directory.

    zsp train import --checkpoint model_final_94dc52.pkl --config config/r50_coco_panoptic.yaml \\
        --categories coco_panoptic --out runs/m2f_r50_coco

Reads, without running any code from the file:
- detectron2 ``.pkl`` (Mask2Former's model zoo): ``{"model": {name: numpy array}, ...}`` through
  a restricted unpickler that allows only numpy arrays/dtypes/scalars and plain containers;
- ``.pth`` / ``.pt`` (detectron2 training checkpoints, PADing releases): ``torch.load(...,
  weights_only=True)``; the state dict is the ``"model"`` (or ``"state_dict"``) entry or the file itself.
A leading ``module.`` (DDP) is stripped. Every key of the file that the network does not have is
reported (``criterion.empty_weight``, PADing's generator/text modules, ...); every network key the
file lacks is reported and refused unless ``--allow-missing``; a shape mismatch is refused by name.
The class head sets the class count: ``class_embed.weight`` [K+1, E] needs K categories.

Writes the run directory that stages 2-3 read (training/segmenter_run.py): ``config.yaml``,
``categories.json``, ``segmenter.safetensors``, ``import_report.json``, ``provenance.json``.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

CLASS_WEIGHT = "sem_seg_head.predictor.class_embed.weight"

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


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only ``_ALLOWED_GLOBALS``; anything else raises UnpicklingError."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint "
                                     f"(only numpy arrays and plain containers are allowed)")


def _state_of(obj: Any, path: Path) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                return obj[key]
        if obj and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in obj.values()):
            return obj
    raise ValueError(f"{path}: no state dict found (want {{'model': {{name: array}}}} or {{name: tensor}})")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """name -> float/int tensor of a .pkl / .pth / .pt / .safetensors checkpoint, ``module.`` stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        raw: Mapping[str, Any] = load_file(str(path))
    elif path.suffix == ".pkl":
        with open(path, "rb") as f:
            raw = _state_of(RestrictedUnpickler(f, encoding="latin1").load(), path)
    elif path.suffix in (".pth", ".pt"):
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


def _categories(spec: str, k: int) -> list[dict[str, Any]]:
    if spec in ("coco_panoptic", "coco_stuff", "coco_instances"):
        from zsp_ros.data.coco_real import load_category_list
        cats = load_category_list(spec)
        if spec == "coco_stuff":
            cats = sorted(cats, key=lambda c: c["train_id"])
    else:
        from zsp_ros.data.coco_real import load_coco_split
        split = load_coco_split(spec)
        cats = [c for c in split["categories"] if c["seen"]] if len(split["seen_ids"]) == k else split["categories"]
    if len(cats) != k:
        raise ValueError(f"the checkpoint's class head has {k} classes (+ no-object) but --categories {spec} "
                         f"gives {len(cats)}")
    return [{"index": i, "id": c["id"], "name": c["name"], "isthing": bool(c["isthing"])} for i, c in enumerate(cats)]


def import_checkpoint(*, checkpoint: str | Path, config: str | Path, categories: str, out: str | Path,
                      allow_missing: bool = False) -> dict[str, Any]:
    """Import ``checkpoint`` into run directory ``out``; returns the report (also written as import_report.json).

    Raises ValueError naming every mismatching key, or the missing keys when not ``allow_missing``.
    """
    import yaml

    from training.checkpoint import save_weights
    from zsp_ros.model.build import build_mask2former, load_config
    from zsp_ros.utils.provenance import atomic_write_bytes, provenance, write_json

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
    model.load_state_dict(state, strict=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(checkpoint), "config": str(config), "num_classes": k, **report}
    save_weights(out / "segmenter.safetensors", model, metadata={"imported_from": Path(checkpoint).name})
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


def run(args: argparse.Namespace) -> int:
    try:
        report = import_checkpoint(checkpoint=args.checkpoint, config=args.config, categories=args.categories,
                                   out=args.out, allow_missing=args.allow_missing)
    except (FileNotFoundError, ValueError, pickle.UnpicklingError) as exc:
        print(f"zsp train import: {exc}", file=sys.stderr)
        return 1
    print(f"imported {report['loaded']} tensors into {args.out} ({report['num_classes']} classes)")
    for name in report["unmapped"]:
        print(f"  not mapped (ignored): {name}")
    for name in report["missing"]:
        print(f"  absent from the checkpoint (initial value kept): {name}")
    return 0
