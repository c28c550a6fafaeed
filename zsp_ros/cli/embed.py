"""`zsp embed --encoder NAME --classes CLASSES --out emb.safetensors`: encode class names once.

CLASSES is a split short name (zsp, zss, zsi-48-17, zsi-65-15), a split.json path, a JSON
list of names, or a text file with one name per line. The output is the table format that
``--encoder file`` (zsp_ros/semantics/file_encoder.py) reads back: a float32 tensor
``embeddings`` [N, D] (L2-normalised rows) and, when CLASSES is a split, int64
``category_ids`` [N]; metadata ``names`` (JSON list), ``encoder`` (identifier), ``dim``.

Encoders: minilm (offline, 384-d), clip / clip-vit-b-16 (PADing's prompt ensemble; weights from
``--weights`` or $ZSP_CLIP_WEIGHTS), file (``--table``: e.g. word2vec vectors for ZSI).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zsp_ros.data.coco_real import SPLIT_FILES, load_coco_split
from zsp_ros.semantics.build import build_text_encoder
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads
from zsp_ros.utils.provenance import atomic_write_bytes


def read_classes(spec: str) -> tuple[list[str], list[int] | None]:
    """(names, category ids or None) of a split name / split file / JSON list / text file."""

    path = Path(spec)
    if spec in SPLIT_FILES or (path.suffix == ".json" and path.is_file() and
                               isinstance(json.loads(path.read_text()), dict)):
        cats = load_coco_split(spec)["categories"]
        return [c["name"] for c in cats], [c["id"] for c in cats]
    if not path.is_file():
        raise FileNotFoundError(f"--classes {spec!r} is neither a split name ({', '.join(SPLIT_FILES)}) nor a file")
    if path.suffix == ".json":
        names = json.loads(path.read_text())
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"--classes {path}: want a JSON list of names or a split.json object")
    else:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"--classes {path} holds no names")
    return names, None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", required=True, help="minilm | clip | clip-vit-b-16 | file")
    parser.add_argument("--classes", required=True, help="split name/file, JSON list or text file of names")
    parser.add_argument("--out", required=True, help="output .safetensors")
    parser.add_argument("--weights", help="CLIP weights file (clip encoders)")
    parser.add_argument("--table", help="name -> vector table (file encoder)")
    parser.add_argument("--device", default="cpu", help="torch device (minilm, clip)")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    apply_threads(args.threads)
    try:
        names, ids = read_classes(args.classes)
    except (FileNotFoundError, ValueError) as exc:
        print(f"zsp embed: {exc}", file=sys.stderr)
        return 2
    kind = args.encoder.lower()
    kw: dict = {}
    if kind.startswith("clip"):
        kw = {"device": args.device, **({"weights": args.weights} if args.weights else {})}
    elif kind.startswith(("minilm", "all-minilm")):
        kw = {"device": args.device}
    elif kind == "file":
        if not args.table:
            print("zsp embed: --encoder file needs --table PATH", file=sys.stderr)
            return 2
        kw = {"path": args.table}
    try:
        encoder = build_text_encoder(args.encoder, **kw)
        vectors = encoder.encode(names)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"zsp embed: {exc}", file=sys.stderr)
        return 1
    tensors = {"embeddings": torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))}
    if ids is not None:
        tensors["category_ids"] = torch.tensor(ids, dtype=torch.int64)
    meta = {"names": json.dumps(names), "encoder": encoder.identifier, "dim": str(encoder.dim)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    atomic_write_bytes(out, tmp.read_bytes())
    tmp.unlink()
    print(f"wrote {out}: {len(names)} names x {encoder.dim} ({encoder.identifier})")
    return 0
