"""The demo run: the sequence of steps, the report and the printed table.

Contract of `run(args, command=)` (what `zsp demo` calls): ``args`` carries ``kit`` ("" = the
embedded kit), ``out``, ``scenes``, ``size`` (0 = the kit's input size), ``rate``, ``before_s``,
``after_s``, ``seed`` and ``deadline_s`` (see zsp_ros.cli.demo). It replaces the folder ``out``
and writes there:

    report.json           unseen_pq_before / unseen_pq_after (PQ in percent on the streamed frames,
                          zsp_ros.evaluation.panoptic_quality), seen PQ, add_category_s, frames_sent,
                          frames_received, frames_dropped, latency_ms {p50, p90, p99} (camera stamp ->
                          result received), category versions, provenance (of ``command``)
    overlay_before.png    the node's overlay of the scene with the most unseen pixels, before the add
    overlay_after.png     the same scene after the add
    scene_<k>_{before,after}.png   the same for every scene
    contact_sheet.png     per scene: camera image | ground truth | before | after
    node.log, camera.log  the two processes' output

and prints a short table. It returns 0 on success; 1 with ``zsp demo: FAILED: <reason>`` on
stderr when any part failed (kit missing, node not configured, no frames, add refused, ...).

`run_demo(args, out, workdir)` does the steps and returns the report without provenance: load
the kit, render the scenes, start the node and a client, configure and activate, stream for
``before_s`` (until every scene came back), add the unseen names, stream for ``after_s`` (until
every scene came back labelled by the new set), list the categories, stop everything, score and
draw.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from zsp_ros.demo.failure import DemoFailure
from zsp_ros.demo.pictures import write_pictures
from zsp_ros.demo.processes import open_client, ros_environment, start_camera, start_node, wait_until
from zsp_ros.demo.recording import Recording, parse_camera_log, scenes_covered, stamp
from zsp_ros.demo.scenes import render_scenes, unseen_categories
from zsp_ros.demo.scoring import evaluate
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import KitError, load_kit
from zsp_ros.node import topics
from zsp_ros.utils.provenance import provenance, write_json


def run_demo(args: argparse.Namespace, out: Path, workdir: Path) -> dict[str, Any]:
    """All the steps of the demo; the report (without provenance). Raises DemoFailure."""
    t_start = time.monotonic()
    deadline = t_start + args.deadline_s
    kit_dir = resolve_kit(args.kit)
    try:
        kit = load_kit(kit_dir)
    except KitError as exc:
        hint = " (the embedded kit is not installed here; pass --kit DIR)" if not args.kit else ""
        raise DemoFailure(f"{exc}{hint}") from None
    unseen = unseen_categories(kit.manifest, set(kit.categories.names))
    if not unseen:
        raise DemoFailure(f"kit {kit_dir} already holds every unseen category of the synthetic world: "
                          "nothing to add")
    unseen_ids = {c["id"] for c in unseen}
    seen_ids = {c.id for c in kit.categories}
    size = args.size or int(kit.input["short_side"])
    scenes = render_scenes(count=args.scenes, size=size, unseen_ids=unseen_ids, seed=args.seed)
    np.savez(workdir / "scenes.npz", images=scenes.images)

    namespace, env = ros_environment()
    recording = Recording()
    summary: dict[str, Any] = {"kit": str(kit_dir), "kit_sha256": kit.sha256, "scenes": args.scenes,
                               "scene_size": size, "camera_rate_hz": args.rate,
                               "unseen_names": [c["name"] for c in unseen]}
    with start_node(namespace=namespace, kit_dir=kit_dir, state_dir=workdir / "state", log_path=out / "node.log",
                    env=env, threads=getattr(args, "threads", 0)) as node, open_client(namespace, recording) as client:
        t0 = time.monotonic()
        if not client.change_state("configure", timeout=max(deadline - time.monotonic(), 1.0)):
            raise DemoFailure(f"the node refused to configure:\n{node.log_tail()}")
        summary["node_ready_s"] = round(time.monotonic() - t0, 2)
        if not client.change_state("activate"):
            raise DemoFailure(f"the node refused to activate:\n{node.log_tail()}")
        info = client.wait_for(topics.CATEGORY_SET, timeout=30)
        summary["categories_before"], summary["version_before"] = len(info.categories), info.version

        with start_camera(namespace=namespace, scenes_path=workdir / "scenes.npz", rate=args.rate,
                          log_path=out / "camera.log", env=env) as camera:
            n_scenes = len(scenes.images)

            def results_cover_scenes(version_ok) -> bool:
                return len(scenes_covered(recording, parse_camera_log(camera.log_text()), version_ok)) == n_scenes

            t_phase = time.monotonic()
            wait_until(lambda: time.monotonic() - t_phase >= args.before_s and
                       results_cover_scenes(lambda v: v < info.version + 1),
                       timeout=min(args.before_s + 60, deadline - time.monotonic()),
                       what="results for every scene before the add", node=node)

            t0 = time.monotonic()
            response = client.add_categories([c["name"] for c in unseen], [c["isthing"] for c in unseen])
            summary["add_category_s"] = round(time.monotonic() - t0, 3)
            if not response.success:
                raise DemoFailure(f"add_categories refused: {response.message}")
            version_after = int(response.version)
            summary["add_message"] = response.message
            summary["version_after"] = version_after

            t_phase = time.monotonic()
            wait_until(lambda: time.monotonic() - t_phase >= args.after_s and
                       results_cover_scenes(lambda v: v >= version_after),
                       timeout=min(args.after_s + 60, deadline - time.monotonic()),
                       what="results for every scene after the add", node=node)
            listing = client.list_categories()
            names = {c.name for c in listing.category_set.categories}
            if not listing.success or not {c["name"] for c in unseen} <= names:
                raise DemoFailure(f"list_categories does not hold the added names: {listing.message}")
            summary["categories_after"] = len(listing.category_set.categories)
            label = client.wait_for(topics.CATEGORY_SET, lambda m: m.version >= version_after, timeout=30)
            summary["category_set_version"] = int(label.version)
            time.sleep(1.0)                            # let the last frames come back
            camera_code = camera.stop()
        recording.sent = parse_camera_log(camera.log_text())
        diagnostics_tail = node.log_tail(5)
        node_code = node.stop()
    if camera_code != 0:
        raise DemoFailure(f"the camera exited with code {camera_code}:\n{camera.log_tail()}")
    if node_code != 0:
        raise DemoFailure(f"the node exited with code {node_code} on SIGINT:\n{diagnostics_tail}")

    received = sum(1 for _, m in recording.results if stamp(m) in recording.sent)
    if received == 0:
        raise DemoFailure("no result matched a camera frame")
    metrics = evaluate(recording, scenes, version_after=version_after, unseen_ids=unseen_ids, seen_ids=seen_ids)
    pictures = write_pictures(out, recording, scenes, version_after=version_after)
    return {**summary, **metrics, "frames_sent": len(recording.sent), "frames_received": received,
            "frames_dropped": len(recording.sent) - received, **pictures,
            "duration_s": round(time.monotonic() - t_start, 1)}


def _fmt(value: Any, unit: str = "") -> str:
    return "n/a" if value is None else f"{value}{unit}"


def print_table(report: dict[str, Any], out: Path) -> None:
    """The report's headline figures as a short two-column table on stdout."""
    lat = report["latency_ms"]
    rows = [
        ("node start + configure (kit, text encoder)", f"{report['node_ready_s']} s"),
        ("frames sent / received / dropped",
         f"{report['frames_sent']} / {report['frames_received']} / {report['frames_dropped']}"),
        ("latency camera -> result p50/p90/p99", f"{_fmt(lat['p50'])} / {_fmt(lat['p90'])} / {_fmt(lat['p99'])} ms"),
        (f"add_categories ({len(report['unseen_names'])} unseen names)", f"{report['add_category_s']} s"),
        ("categories (version)", f"{report['categories_before']} (v{report['version_before']}) -> "
                                 f"{report['categories_after']} (v{report['version_after']})"),
        ("unseen PQ before -> after", f"{_fmt(report['unseen_pq_before'])} -> {_fmt(report['unseen_pq_after'])}"),
        ("seen PQ before -> after", f"{_fmt(report['seen_pq_before'])} -> {_fmt(report['seen_pq_after'])}"),
        ("outputs", f"{out}/ (report.json, overlay_before.png, overlay_after.png, contact_sheet.png)"),
        ("total time", f"{report['duration_s']} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"zsp demo: kit {report['kit']}, {report['scenes']} scenes of {report['scene_size']} px at "
          f"{report['camera_rate_hz']:g} Hz")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def run(args: argparse.Namespace, *, command: list[str]) -> int:
    """The demo into a fresh ``args.out``: report.json (provenance of ``command``), table; exit code."""
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        with tempfile.TemporaryDirectory(prefix="zsp_demo_") as tmp:
            report = run_demo(args, out, Path(tmp))
    except DemoFailure as exc:
        print(f"zsp demo: FAILED: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"zsp demo: FAILED: {exc}", file=sys.stderr)
        return 1
    report["provenance"] = provenance(command)
    write_json(out / "report.json", report)
    print_table(report, out)
    return 0
