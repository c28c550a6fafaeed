"""The expected on-disk layout of COCO for the three zero-shot protocols, and a checker.

One root folder ``DIR`` (detectron2's ``$DETECTRON2_DATASETS/coco``, PADing's ``datasets/coco``)::

    DIR/train2017/ val2017/                         JPEG images (panoptic, semantic)
    DIR/annotations/panoptic_{train,val}2017.json   COCO panoptic 2017
    DIR/panoptic_{train,val}2017/                   panoptic PNGs, id = R + 256 G + 256² B
    DIR/annotations/panoptic_train2017_zsp.json     ZSP training view (`zsp data prepare`)
    DIR/coco_stuff/annotations_detectron2/{train2017,val2017}/
                                                    COCO-Stuff 171 label PNGs, ZegFormer/PADing
                                                    train ids (156 seen first), 255 ignore
    DIR/coco_stuff/stuffthingmaps_trainval2017/{train2017,val2017}/
                                                    alternative: the official COCO-Stuff PNGs
                                                    (value = COCO-Stuff id - 1, 255 unlabeled)
    DIR/train2014/ val2014/                         JPEG images (instance, the ZSI splits)
    DIR/annotations/instances_{train,val}2014.json  COCO instances 2014

Each entry names the tasks that need it; ``check_layout`` says which are present and
which task each missing entry blocks. Pure Python, no torch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LayoutEntry:
    """One expected path under the COCO root.

    key: short name used by the loaders. path: relative to the root. kind: "dir" | "file".
    tasks: the protocols that need it ("panoptic", "semantic", "instance").
    made_by: a command that creates it ("" for the downloads). alternative_of: key of an entry
    this one can stand in for (either satisfies the tasks).
    """
    key: str
    path: str
    kind: str
    tasks: tuple[str, ...]
    note: str
    made_by: str = ""
    alternative_of: str = ""


LAYOUT: tuple[LayoutEntry, ...] = (
    LayoutEntry(key="images_train2017", path="train2017", kind="dir", tasks=("panoptic", "semantic"),
                note="COCO 2017 train images (118,287 JPEG)"),
    LayoutEntry(key="images_val2017", path="val2017", kind="dir", tasks=("panoptic", "semantic"),
                note="COCO 2017 val images (5,000 JPEG)"),
    LayoutEntry(key="panoptic_train_json", path="annotations/panoptic_train2017.json", kind="file",
                tasks=("panoptic",), note="COCO panoptic 2017 train annotations"),
    LayoutEntry(key="panoptic_val_json", path="annotations/panoptic_val2017.json", kind="file",
                tasks=("panoptic",), note="COCO panoptic 2017 val annotations"),
    LayoutEntry(key="panoptic_train_png", path="panoptic_train2017", kind="dir", tasks=("panoptic",),
                note="panoptic PNGs (unzipped from annotations/panoptic_train2017.zip)"),
    LayoutEntry(key="panoptic_val_png", path="panoptic_val2017", kind="dir", tasks=("panoptic",),
                note="panoptic PNGs (unzipped from annotations/panoptic_val2017.zip)"),
    LayoutEntry(key="panoptic_train_zsp_json", path="annotations/panoptic_train2017_zsp.json", kind="file",
                tasks=("panoptic",), note="ZSP training view: images with an unseen segment dropped",
                made_by="zsp data prepare --coco DIR"),
    LayoutEntry(key="stuff_train_labels", path="coco_stuff/annotations_detectron2/train2017", kind="dir",
                tasks=("semantic",), note="COCO-Stuff 171 train labels in ZegFormer/PADing train ids"),
    LayoutEntry(key="stuff_val_labels", path="coco_stuff/annotations_detectron2/val2017", kind="dir",
                tasks=("semantic",), note="COCO-Stuff 171 val labels in ZegFormer/PADing train ids"),
    LayoutEntry(key="stuffthing_train_labels", path="coco_stuff/stuffthingmaps_trainval2017/train2017",
                kind="dir", tasks=("semantic",), note="official COCO-Stuff train PNGs (id - 1)",
                alternative_of="stuff_train_labels"),
    LayoutEntry(key="stuffthing_val_labels", path="coco_stuff/stuffthingmaps_trainval2017/val2017",
                kind="dir", tasks=("semantic",), note="official COCO-Stuff val PNGs (id - 1)",
                alternative_of="stuff_val_labels"),
    LayoutEntry(key="images_train2014", path="train2014", kind="dir", tasks=("instance",),
                note="COCO 2014 train images (the ZSI splits are defined on 2014)"),
    LayoutEntry(key="images_val2014", path="val2014", kind="dir", tasks=("instance",),
                note="COCO 2014 val images"),
    LayoutEntry(key="instances_train_json", path="annotations/instances_train2014.json", kind="file",
                tasks=("instance",), note="COCO instances 2014 train annotations"),
    LayoutEntry(key="instances_val_json", path="annotations/instances_val2014.json", kind="file",
                tasks=("instance",), note="COCO instances 2014 val annotations"),
)

TASKS = ("panoptic", "semantic", "instance")


def entry(key: str) -> LayoutEntry:
    """The layout entry named ``key``; unknown keys raise KeyError listing the known ones."""
    for e in LAYOUT:
        if e.key == key:
            return e
    raise KeyError(f"unknown COCO layout entry {key!r}; known: {', '.join(e.key for e in LAYOUT)}")


def coco_path(root: str | os.PathLike, key: str) -> Path:
    """Absolute path of layout entry ``key`` under ``root``."""
    return Path(root) / entry(key).path


def _present(root: Path, e: LayoutEntry) -> bool:
    p = root / e.path
    if e.kind == "file":
        return p.is_file() and p.stat().st_size > 0
    return p.is_dir() and any(p.iterdir())


def check_layout(root: str | os.PathLike) -> dict[str, Any]:
    """Which expected paths exist under ``root`` and which tasks are ready.

    Returns ``{"root", "entries": [{key, path, kind, present, tasks, note, made_by,
    alternative_of}], "tasks": {task: {"ready": bool, "missing": [path, ...]}}}``. An empty
    folder counts as missing. An entry with ``made_by`` is reported but does not block a task
    (the command makes it); an entry and its alternative block only when both are missing.
    """
    root = Path(root)
    entries = [{"key": e.key, "path": e.path, "kind": e.kind, "present": _present(root, e),
                "tasks": list(e.tasks), "note": e.note, "made_by": e.made_by,
                "alternative_of": e.alternative_of} for e in LAYOUT]
    present = {d["key"]: d["present"] for d in entries}
    for d in entries:   # an alternative satisfies the entry it stands in for, and vice versa
        if d["alternative_of"] and d["present"]:
            present[d["alternative_of"]] = True
    for d in entries:
        if d["alternative_of"]:
            present[d["key"]] = present[d["key"]] or present[d["alternative_of"]]
    tasks = {}
    for task in TASKS:
        missing = [e.path for e in LAYOUT if task in e.tasks and not e.made_by and not present[e.key]
                   and not e.alternative_of]
        tasks[task] = {"ready": not missing, "missing": missing}
    return {"root": str(root), "entries": entries, "tasks": tasks}


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines of a ``check_layout`` report (one line per entry, then per task)."""
    lines = [f"COCO root: {report['root']}"]
    for d in report["entries"]:
        mark = "ok     " if d["present"] else "MISSING"
        extra = f"  (make it: {d['made_by']})" if d["made_by"] and not d["present"] else ""
        alt = f"  [alternative to {entry(d['alternative_of']).path}]" if d["alternative_of"] else ""
        slash = "/" if d["kind"] == "dir" else ""
        lines.append(f"  {mark} {d['path']}{slash:<1}  {d['note']}; for {', '.join(d['tasks'])}{alt}{extra}")
    for task, t in report["tasks"].items():
        state = "ready" if t["ready"] else "not ready: missing " + ", ".join(t["missing"])
        lines.append(f"  {task}: {state}")
    return "\n".join(lines)
