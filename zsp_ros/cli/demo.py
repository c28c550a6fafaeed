"""`zsp demo`: the whole system, offline on the CPU, in about a minute (at most 3).

Three processes talk over ROS 2 (Fast DDS, localhost):

1. **zsp_node** (its own process) with the model kit (default: the embedded kit);
2. **a camera** (zsp_ros.node.synthetic_camera) streaming synthetic-world scenes, each holding
   categories the kit has never seen, at a steady rate;
3. **this process**, a client that drives the node's lifecycle (configure, activate), records every
   result, calls ``add_categories`` with the unseen names part way through the stream, then
   ``list_categories``.

It writes ``demo_out/`` (or ``--out``):
    report.json           unseen_pq_before / unseen_pq_after (PQ in percent on the streamed frames,
                          zsp_ros.evaluation.panoptic_quality), seen PQ, add_category_s, frames_sent,
                          frames_received, frames_dropped, latency_ms {p50, p90, p99} (camera stamp ->
                          result received), category versions, provenance
    overlay_before.png    the node's overlay of the scene with the most unseen pixels, before the add
    overlay_after.png     the same scene after the add
    scene_<k>_{before,after}.png   the same for every scene
    contact_sheet.png     per scene: camera image | ground truth | before | after
    node.log, camera.log  the two processes' output

and prints a short table. Exit code 0 on success; 1 with ``zsp demo: FAILED: <reason>`` when any
part failed (kit missing, node not configured, no frames, add refused, ...).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class DemoFailure(RuntimeError):
    """A part of the demo failed; the message is the reason shown to the user."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kit", default="", help="model kit directory (default: the embedded kit)")
    parser.add_argument("--out", default="demo_out", help="output directory (replaced; default demo_out)")
    parser.add_argument("--scenes", type=int, default=24,
                        help="distinct scenes the camera cycles through (PQ over fewer is too noisy)")
    parser.add_argument("--size", type=int, default=0, help="scene size in pixels (default: the kit's input size)")
    parser.add_argument("--rate", type=float, default=4.0, help="camera frames per second (default 4)")
    parser.add_argument("--before-s", type=float, default=12.0, help="streaming time before the add (s)")
    parser.add_argument("--after-s", type=float, default=12.0, help="streaming time after the add (s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes")
    parser.add_argument("--deadline-s", type=float, default=170.0, help="give up after this long (s)")


# ------------------------------------------------------------------ scenes and ground truth

@dataclass
class SceneSet:
    """Rendered scenes with COCO-style ground truth.

    images: uint8 [N,H,W,3]; panoptic: int32 [N,H,W] segment ids (0 = void);
    segments: per scene [{"id", "category_id", "iscrowd", "area", "isthing"}]; unseen_pixels: [N].
    """
    images: np.ndarray
    panoptic: np.ndarray
    segments: list[list[dict]]
    unseen_pixels: list[int]


def render_scenes(*, count: int, size: int, unseen_ids: set[int], seed: int, min_unseen_fraction: float = 0.05,
                  max_tries: int = 2000) -> SceneSet:
    """``count`` synthetic-world scenes (all categories), each with >= ``min_unseen_fraction`` unseen pixels."""
    from zsp_ros.data.synth_render import render_scene
    from zsp_ros.data.synth_world import world_categories

    cats = world_categories()
    things = [c for c in cats if c["isthing"]]
    stuff = [c for c in cats if not c["isthing"]]
    images, pans, segs, unseen_px = [], [], [], []
    for attempt in range(max_tries):
        scene = render_scene(np.random.default_rng([seed, attempt]), height=size, width=size, things=things,
                             stuff=stuff)
        pan = (scene.segment_map + 1).astype(np.int32)                       # -1 (void) -> 0
        areas = np.bincount(pan.ravel(), minlength=len(scene.segments) + 1)
        info = [{"id": i + 1, "category_id": s["category_id"], "iscrowd": 0, "area": int(areas[i + 1]),
                 "isthing": s["isthing"]} for i, s in enumerate(scene.segments)]
        unseen = sum(s["area"] for s in info if s["category_id"] in unseen_ids)
        if unseen < min_unseen_fraction * size * size:
            continue
        images.append(scene.image)
        pans.append(pan)
        segs.append(info)
        unseen_px.append(int(unseen))
        if len(images) == count:
            return SceneSet(np.stack(images), np.stack(pans), segs, unseen_px)
    raise DemoFailure(f"could not render {count} scenes with unseen categories in {max_tries} tries")


def unseen_categories(manifest: dict, kit_names: set[str]) -> list[dict]:
    """The world categories the kit has never seen, in world order: the manifest's
    ``world.unseen`` names when recorded, else the synthetic world's default unseen split,
    minus anything the kit already holds."""
    from zsp_ros.data.synth_world import DEFAULT_UNSEEN, world_categories

    declared = (manifest.get("world") or {}).get("unseen") or list(DEFAULT_UNSEEN)
    by_name = {c["name"].casefold(): c for c in world_categories()}
    missing = [n for n in declared if n.casefold() not in by_name]
    if missing:
        raise DemoFailure(f"the kit names unseen categories that are not in the synthetic world: {missing}")
    wanted = {n.casefold() for n in declared} - {n.casefold() for n in kit_names}
    return [c for c in world_categories() if c["name"].casefold() in wanted]


# ------------------------------------------------------------------ evaluation of what came back

@dataclass
class Recording:
    """What the client saw. ``sent``: (sec, nanosec) -> scene index, from the camera's log."""
    sent: dict[tuple[int, int], int] = field(default_factory=dict)
    results: list[tuple[float, Any]] = field(default_factory=list)      # (arrival s, PanopticSegmentation)
    overlays: dict[tuple[int, int], Any] = field(default_factory=dict)  # stamp -> overlay Image


def parse_camera_log(text: str) -> dict[tuple[int, int], int]:
    """``SENT sec nanosec index`` lines -> {(sec, nanosec): index}."""
    sent = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "SENT":
            sent[(int(parts[1]), int(parts[2]))] = int(parts[3])
    return sent


def prediction_in_world_ids(ids: np.ndarray, segments: list[dict], world_by_name: dict[str, int]
                            ) -> tuple[np.ndarray, list[dict]]:
    """Map predicted segments to world category ids by name; unknown names become void."""
    keep, out = [], ids.copy()
    for s in segments:
        cid = world_by_name.get(s["label"].casefold())
        if cid is None:
            out[out == s["id"]] = 0
        else:
            keep.append({"id": s["id"], "category_id": cid})
    return out, keep


def evaluate(recording: Recording, scenes: SceneSet, *, version_after: int, unseen_ids: set[int],
             seen_ids: set[int]) -> dict[str, Any]:
    """PQ before/after (percent), latencies and counts from a recording."""
    from zsp_ros.data.synth_world import world_categories
    from zsp_ros.evaluation.panoptic_quality import PQStat, pq_single_image
    from zsp_ros.node.messages import panoptic_from_message

    world = world_categories()
    by_name = {c["name"].casefold(): c["id"] for c in world}
    known = {c["id"] for c in world}
    stats = {"before": PQStat(), "after": PQStat()}
    latencies, per_phase = [], {"before": 0, "after": 0}
    for arrival, msg in recording.results:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if key not in recording.sent:
            continue
        k = recording.sent[key]
        latencies.append((arrival - (key[0] + key[1] * 1e-9)) * 1e3)
        phase = "after" if msg.category_set_version >= version_after else "before"
        per_phase[phase] += 1
        ids, segments = panoptic_from_message(msg)
        pred, pred_segments = prediction_in_world_ids(ids, segments, by_name)
        stats[phase] += pq_single_image(scenes.panoptic[k], pred, scenes.segments[k], pred_segments, known)

    def pq(stat: Any, ids: set[int]) -> float | None:
        value = stat.average(sorted(ids))["pq"]
        return None if value is None else round(100.0 * value, 2)

    lat = np.asarray(latencies, dtype=np.float64)
    return {
        "unseen_pq_before": pq(stats["before"], unseen_ids), "unseen_pq_after": pq(stats["after"], unseen_ids),
        "seen_pq_before": pq(stats["before"], seen_ids), "seen_pq_after": pq(stats["after"], seen_ids),
        "frames_evaluated": per_phase,
        "latency_ms": {f"p{q}": (round(float(np.percentile(lat, q)), 1) if lat.size else None) for q in (50, 90, 99)},
    }


# ------------------------------------------------------------------ pictures

def _overlay_array(msg: Any) -> np.ndarray:
    from zsp_ros.node.image_conversion import to_rgb8
    return to_rgb8(msg)


def ground_truth_overlay(image: np.ndarray, pan: np.ndarray, segments: list[dict]) -> np.ndarray:
    from zsp_ros.data.synth_world import world_categories
    from zsp_ros.runtime.overlay import draw_overlay
    from zsp_ros.runtime.result import Segment

    names = {c["id"]: c["name"] for c in world_categories()}
    segs = [Segment(id=s["id"], category_id=s["category_id"], name=names[s["category_id"]], score=1.0,
                    isthing=s["isthing"], area=s["area"], bbox=(0, 0, 0, 0)) for s in segments]
    return draw_overlay(image, pan, segs, labels=True)


def contact_sheet(rows: list[list[np.ndarray]], captions: list[str], header: list[str], *, scale: int = 2) -> Any:
    """A PIL image: one row per scene, columns of equal-size RGB arrays, titles on top."""
    from PIL import Image, ImageDraw

    h, w = rows[0][0].shape[:2]
    cw, ch, pad, top = w * scale, h * scale, 6, 18
    sheet = Image.new("RGB", (len(header) * (cw + pad) + pad, top + len(rows) * (ch + top + pad)), (25, 25, 25))
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(header):
        draw.text((pad + j * (cw + pad), 3), title, fill=(235, 235, 235))
    for i, (row, caption) in enumerate(zip(rows, captions)):
        y = top + i * (ch + top + pad)
        draw.text((pad, y + 2), caption, fill=(200, 200, 200))
        for j, cell in enumerate(row):
            tile = Image.fromarray(cell).resize((cw, ch), Image.NEAREST)
            sheet.paste(tile, (pad + j * (cw + pad), y + top))
    return sheet


def write_pictures(out: Path, recording: Recording, scenes: SceneSet, *, version_after: int) -> dict[str, Any]:
    """Before/after overlays per scene (latest of each phase) and the contact sheet; what was written."""
    from PIL import Image

    latest: dict[tuple[int, str], Any] = {}
    for _, msg in recording.results:               # oldest first: the last one of each phase wins
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if key in recording.sent and key in recording.overlays:
            phase = "after" if msg.category_set_version >= version_after else "before"
            latest[(recording.sent[key], phase)] = recording.overlays[key]
    rows, captions, written = [], [], []
    for k in range(len(scenes.images)):
        pair = [latest.get((k, p)) for p in ("before", "after")]
        if any(p is None for p in pair):
            continue
        before, after = (_overlay_array(p) for p in pair)
        Image.fromarray(before).save(out / f"scene_{k}_before.png")
        Image.fromarray(after).save(out / f"scene_{k}_after.png")
        written.append(k)
        rows.append([scenes.images[k], ground_truth_overlay(scenes.images[k], scenes.panoptic[k], scenes.segments[k]),
                     before, after])
        captions.append(f"scene {k}: {scenes.unseen_pixels[k]} unseen pixels")
    if not written:
        raise DemoFailure("no scene has overlays both before and after the add (overlay topic silent?)")
    best = max(written, key=lambda k: scenes.unseen_pixels[k])
    shutil.copyfile(out / f"scene_{best}_before.png", out / "overlay_before.png")
    shutil.copyfile(out / f"scene_{best}_after.png", out / "overlay_after.png")
    contact_sheet(rows, captions, ["camera", "ground truth", "before add", "after add"]).save(out / "contact_sheet.png")
    return {"overlay_scene": best, "scenes_with_pairs": written}


# ------------------------------------------------------------------ the run

def _wait_until(predicate, *, timeout: float, what: str, node: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if node is not None and not node.alive:
            raise DemoFailure(f"the node exited while waiting for {what}:\n{node.log_tail()}")
        if time.monotonic() > deadline:
            raise DemoFailure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def run_demo(args: argparse.Namespace, out: Path, workdir: Path) -> dict[str, Any]:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from zsp_msgs.msg import CategorySet, PanopticSegmentation

    from zsp_ros.node.client import ZspClient
    from zsp_ros.node.launcher import ChildProgram, ros_args
    from zsp_ros.node.parameters import resolve_kit
    from zsp_ros.runtime.kit import KitError, load_kit

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

    namespace = f"/zsp_demo_{os.getpid()}"
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")}
    os.environ.update(env)
    node_params = {"kit": str(kit_dir.resolve()), "state_dir": str(workdir / "state"), "publish_overlay": True,
                   "publish_semantic": False}
    recording = Recording()
    summary: dict[str, Any] = {"kit": str(kit_dir), "kit_sha256": kit.sha256, "scenes": args.scenes,
                               "scene_size": size, "camera_rate_hz": args.rate,
                               "unseen_names": [c["name"] for c in unseen]}
    with ChildProgram(name="zsp_node", module="zsp_ros.node.main", args=ros_args(namespace, node_params),
                      log_path=out / "node.log", env_extra=env) as node, \
            ZspClient(namespace=namespace, name="zsp_demo_client") as client:
        client.subscribe("panoptic", PanopticSegmentation, keep=False,
                         on_message=lambda t, m: recording.results.append((t, m)))
        client.subscribe("overlay", Image, keep=False, on_message=lambda t, m: recording.overlays.__setitem__(
            (m.header.stamp.sec, m.header.stamp.nanosec), m))
        client.subscribe("label_info", CategorySet, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                                durability=DurabilityPolicy.TRANSIENT_LOCAL))

        t0 = time.monotonic()
        if not client.change_state("configure", timeout=max(deadline - time.monotonic(), 1.0)):
            raise DemoFailure(f"the node refused to configure:\n{node.log_tail()}")
        summary["node_ready_s"] = round(time.monotonic() - t0, 2)
        if not client.change_state("activate"):
            raise DemoFailure(f"the node refused to activate:\n{node.log_tail()}")
        info = client.wait_for("label_info", timeout=30)
        summary["categories_before"], summary["version_before"] = len(info.categories), info.version

        with ChildProgram(name="camera", module="zsp_ros.node.synthetic_camera",
                          args=["--scenes", str(workdir / "scenes.npz"), "--rate", str(args.rate),
                                *ros_args(namespace)], log_path=out / "camera.log", env_extra=env) as camera:
            n_scenes = len(scenes.images)

            def results_cover_scenes(version_ok) -> bool:
                sent = parse_camera_log(camera.log_text())
                got = {sent[(m.header.stamp.sec, m.header.stamp.nanosec)] for _, m in list(recording.results)
                       if (m.header.stamp.sec, m.header.stamp.nanosec) in sent and version_ok(m.category_set_version)}
                return len(got) == n_scenes

            t_phase = time.monotonic()
            _wait_until(lambda: time.monotonic() - t_phase >= args.before_s and
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
            _wait_until(lambda: time.monotonic() - t_phase >= args.after_s and
                        results_cover_scenes(lambda v: v >= version_after),
                        timeout=min(args.after_s + 60, deadline - time.monotonic()),
                        what="results for every scene after the add", node=node)
            listing = client.list_categories()
            names = {c.name for c in listing.category_set.categories}
            if not listing.success or not {c["name"] for c in unseen} <= names:
                raise DemoFailure(f"list_categories does not hold the added names: {listing.message}")
            summary["categories_after"] = len(listing.category_set.categories)
            label = client.wait_for("label_info", lambda m: m.version >= version_after, timeout=30)
            summary["label_info_version"] = int(label.version)
            time.sleep(1.0)                            # let the last frames come back
            camera_code = camera.stop()
        recording.sent = parse_camera_log(camera.log_text())
        diagnostics_tail = node.log_tail(5)
        node_code = node.stop()
    if camera_code != 0:
        raise DemoFailure(f"the camera exited with code {camera_code}:\n{camera.log_tail()}")
    if node_code != 0:
        raise DemoFailure(f"the node exited with code {node_code} on SIGINT:\n{diagnostics_tail}")

    received = sum(1 for _, m in recording.results if (m.header.stamp.sec, m.header.stamp.nanosec) in recording.sent)
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


def run(args: argparse.Namespace) -> int:
    from zsp_ros.utils.provenance import provenance, write_json

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
    report["provenance"] = provenance(["zsp", "demo", *sys.argv[2:]])
    write_json(out / "report.json", report)
    print_table(report, out)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="zsp demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
