"""`zsp segment IMAGE... --kit KIT --out DIR [--add "name,name"]`: segment image files.

Writes, per image, ``DIR/panoptic/<stem>.png`` (COCO panoptic: id = R + 256 G + 256² B) and
``DIR/overlay/<stem>.png`` (colours, outlines, labels), and for all images one
``DIR/panoptic.json`` in the COCO panoptic format (images, annotations, categories).

Backends with a fixed-size network file take it as an option: ``--backend onnxruntime --onnx
model.onnx`` (from `zsp export onnx --msda portable`) or ``--backend tensorrt --engine model.engine``
(from `zsp engine build`); any other backend option as ``--backend-option KEY=VALUE`` (repeatable,
e.g. ``threads=1``, ``size=128x192``). Images of any size are resized to fit the file's H x W.

``--threads N`` (or ``--backend-option threads=N``; 0 = automatic, zsp_ros.utils.cpu_threads) sets
torch's CPU threads for the process and the backend's own (onnxruntime's session).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zsp_ros.drawing.overlay import draw_overlay
from zsp_ros.evaluation.predict import CocoPanopticWriter, Frame, predict_coco_panoptic
from zsp_ros.export.on_demand import build_backend_with_artifacts
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import KitError
from zsp_ros.runtime.category_requests import CategoryError
from zsp_ros.runtime.segmenter import Segmenter
from zsp_ros.runtime.state_store import StateLockedError
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads
from zsp_ros.utils.provenance import atomic_write_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...; read as RGB)")
    parser.add_argument("--kit", default=None, help="model kit directory (default: the embedded kit)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--add", default=None,
                        help='categories to add by name before segmenting, comma-separated: "purple star,teal cone"')
    parser.add_argument("--state", default=None,
                        help="registry state folder: start from (and save) its categories (default: kit only)")
    parser.add_argument("--backend", default="torch", help="inference backend (default torch)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"), help="fp16 needs CUDA")
    parser.add_argument("--onnx", default=None, metavar="FILE",
                        help="ONNX export of the kit's network (onnxruntime: `--msda portable`; tensorrt: build "
                             "or reuse a cached engine from it)")
    parser.add_argument("--engine", default=None, metavar="FILE",
                        help="serialized TensorRT engine with its sidecar (tensorrt backend)")
    parser.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra backend option, repeatable; VALUE is read as an int, float, "
                             "true/false, or else a string (e.g. threads=1, size=128x192)")
    add_threads_argument(parser)
    parser.add_argument("--object-mask-threshold", type=float, default=None,
                        help="minimum class probability of a segment (default: the kit's recorded value)")
    parser.add_argument("--overlap-threshold", type=float, default=None,
                        help="minimum visible fraction of a segment's own mask (default: the kit's value)")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")


FILE_OPTIONS = {"onnx": ("onnxruntime", "tensorrt"), "engine": ("tensorrt",)}   # option -> backends reading it


def _option_value(text: str) -> bool | int | float | str:
    """A ``--backend-option`` value: true/false -> bool, then int, then float, else the string itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def backend_options(args: argparse.Namespace) -> dict[str, object]:
    """The backend's keyword options from ``--onnx``, ``--engine`` and ``--backend-option KEY=VALUE``.

    ``threads`` is always there: ``--threads`` or ``--backend-option threads=N`` as requested (0 =
    automatic); the caller resolves it with zsp_ros.utils.cpu_threads.apply_threads.

    Raises ValueError naming the bad argument: a malformed KEY=VALUE, a key given twice, a file
    option the chosen backend does not read, a file that does not exist, or a threads value that is
    not a whole number >= 0 or disagrees with ``--threads``.
    """
    options: dict[str, object] = {}
    for item in args.backend_option:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--backend-option {item!r}: expected KEY=VALUE with KEY a name, e.g. threads=1")
        if key in options:
            raise ValueError(f"--backend-option {key} is given twice")
        options[key] = _option_value(value.strip())
    for key in FILE_OPTIONS:
        path = getattr(args, key)
        if path is None:
            continue
        if key in options:
            raise ValueError(f"--{key} and --backend-option {key}=... both given; use one")
        options[key] = path
    for key, backends in FILE_OPTIONS.items():
        if key not in options:
            continue
        if args.backend not in backends:
            raise ValueError(f"--{key} is read by the {' and '.join(backends)} backend"
                             f"{'s' if len(backends) > 1 else ''} only, not by --backend {args.backend}")
        if not Path(str(options[key])).expanduser().is_file():
            raise ValueError(f"--{key} {options[key]}: no such file")
        options[key] = str(Path(str(options[key])).expanduser())
    requested = getattr(args, "threads", 0) or 0
    if "threads" in options:
        value = options["threads"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"--backend-option threads={value}: expected a whole number >= 0 (0 = automatic)")
        if requested and value != requested:
            raise ValueError(f"--threads {requested} and --backend-option threads={value} disagree; use one")
        requested = value
    options["threads"] = requested
    return options


def _unique_stems(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}_{n}")
    return stems


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image


    try:
        options = backend_options(args)
        options["threads"] = apply_threads(int(options["threads"]))
        kit = resolve_kit(args.kit)
        segmenter = Segmenter.from_kit(kit, backend=args.backend, device=args.device, precision=args.precision,
                                       state_dir=args.state, object_mask_threshold=args.object_mask_threshold,
                                       overlap_threshold=args.overlap_threshold, backend_options=options,
                                       backend_factory=build_backend_with_artifacts)
    except (KitError, StateLockedError, ValueError, RuntimeError) as exc:
        print(f"zsp segment: error: {exc}", file=sys.stderr)
        return 2
    except TypeError as exc:             # an option the backend's factory does not take
        if set(options) <= {"threads"}:
            raise
        print(f"zsp segment: error: backend {args.backend!r} refused the options {sorted(options)}: {exc}",
              file=sys.stderr)
        return 2
    with segmenter:
        if segmenter.registry.load_problem:
            print(f"zsp segment: warning: {segmenter.registry.load_problem}", file=sys.stderr)
        if args.add:
            names = [n.strip() for n in args.add.split(",")]
            try:
                added = segmenter.registry.add(names)
            except CategoryError as exc:
                print(f"zsp segment: cannot add categories: {exc}", file=sys.stderr)
                return 2
            timing = segmenter.registry.last_timings_ms.get("total", float("nan"))
            print(f"added {', '.join(f'{c.name} (id {c.id})' for c in added)} in {timing:.0f} ms")

        out = Path(args.out)
        writer = CocoPanopticWriter(out / "panoptic", atomic=True, record_images=True)
        if not args.no_overlay:
            (out / "overlay").mkdir(parents=True, exist_ok=True)
        paths = [Path(p) for p in args.images]
        failures = 0

        def frames():
            nonlocal failures
            for image_id, (path, stem) in enumerate(zip(paths, _unique_stems(paths)), start=1):
                try:
                    with Image.open(path) as im:
                        rgb = np.asarray(im.convert("RGB"))
                except (OSError, ValueError) as exc:
                    print(f"{path}: cannot read ({exc})", file=sys.stderr)
                    failures += 1
                    continue
                yield Frame(image_id=image_id, png_name=f"{stem}.png", image=rgb, file_name=path.name)

        def report(frame: Frame, result) -> None:
            if not args.no_overlay:
                _write_png(out / "overlay" / frame.png_name,
                           draw_overlay(frame.image, result.panoptic, result.segments), atomic_write_bytes)
            t = result.timings_ms
            print(f"{paths[frame.image_id - 1]}: {len(result.segments)} segments "
                  f"({', '.join(sorted({s.name for s in result.segments}))}) "
                  f"in {t['total']:.0f} ms (pre {t['preprocess']:.0f}, model {t['model']:.0f}, "
                  f"post {t['postprocess']:.0f})")

        predict_coco_panoptic(segmenter, frames(), writer, on_result=report)
        cats = segmenter.registry.list()
        writer.write_json(out / "panoptic.json", indent=2, info={
            "description": "zsp segment", "category_set_version": cats.version,
            "text_encoder": cats.text_encoder, "kit": str(segmenter.registry.kit.root), "command": sys.argv},
            categories=[{"id": c.id, "name": c.name, "isthing": int(c.isthing), "supercategory": c.origin}
                        for c in cats])
    print(f"wrote {len(writer.annotations)} results to {out}")
    return 1 if failures else 0


def _write_png(path: Path, array, writer) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    writer(path, buf.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="zsp segment")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
