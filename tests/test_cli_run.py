"""`zsp run` over a rosbag2 MCAP bag written here (rosbags), an image folder, and bad inputs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("rosbags")
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from runtime_fakes import make_real_kit  # noqa: E402

from zsp_ros.cli.main import main  # noqa: E402
from zsp_ros.node.messages import panoptic_from_message, segments_consistent  # noqa: E402

STORE = get_typestore(Stores.ROS2_HUMBLE)


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    return make_real_kit(tmp_path_factory.mktemp("kit") / "kit")


HEADER_SEC = 1700000000            # the camera's clock: header stamps differ from the bag's receive times


def _image_msg(rgb: np.ndarray, i: int):
    t = STORE.types
    h, w = rgb.shape[:2]
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=HEADER_SEC + i, nanosec=1000 + i),
                                      frame_id=f"cam_optical_{i}")
    return t["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding="bgr8", is_bigendian=0,
                                      step=3 * w, data=np.ascontiguousarray(rgb[..., ::-1]).reshape(-1))


def _write_bag(path: Path, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(n)]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        cam = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=STORE)
        other = w.add_connection("/chatter", "std_msgs/msg/String", typestore=STORE)
        for i, f in enumerate(frames):
            stamp = 10**9 + i * 10**8
            w.write(cam, stamp, STORE.serialize_cdr(_image_msg(f, i), "sensor_msgs/msg/Image"))
            w.write(other, stamp, STORE.serialize_cdr(STORE.types["std_msgs/msg/String"](data="hi"),
                                                      "std_msgs/msg/String"))
    return frames


def _ids(png: np.ndarray) -> np.ndarray:
    p = png.astype(np.int64)
    return p[..., 0] + 256 * p[..., 1] + 65536 * p[..., 2]


def test_write_bag_round_trip_keeps_stamps_frame_ids_and_labels(kit, tmp_path):
    """The bag holds the node's PanopticSegmentation (labels, ids), overlay and colour mask per input
    frame, with the input's header stamp and frame_id and its receive time; --add and --state work."""
    pytest.importorskip("zsp_msgs")
    bag = tmp_path / "in_bag"
    frames = _write_bag(bag)
    out, state = tmp_path / "out", tmp_path / "state"
    assert main(["run", "--kit", str(kit), "--input", str(bag), "--out", str(out), "--write-bag", "--add",
                 "red star", "--state", str(state), "--threads", "1"]) == 0
    pred = json.loads((out / "panoptic.json").read_text())
    assert [im["stamp_ns"] for im in pred["images"]] == [10**9, 10**9 + 10**8, 10**9 + 2 * 10**8]
    assert [(im["header_stamp"], im["frame_id"]) for im in pred["images"]] == \
           [({"sec": HEADER_SEC + i, "nanosec": 1000 + i}, f"cam_optical_{i}") for i in range(3)]
    names = {c["id"]: c["name"] for c in pred["categories"]}
    assert "red star" in names.values() and pred["info"]["threads"] == 1
    by_file = {a["file_name"]: a for a in pred["annotations"]}

    with AnyReader([out / "bag"], default_typestore=STORE) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {"/camera/image_raw": 3, "/zsp/panoptic": 3, "/zsp/overlay": 3, "/zsp/color_mask": 3}
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types["/zsp/panoptic"] == "zsp_msgs/msg/PanopticSegmentation"
        seen = {}
        for conn, stamp, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            seen.setdefault(conn.topic, []).append((stamp, msg))
    labelled = 0
    for i, ((stamp, pan), (_, overlay), (_, mask), (_, src)) in enumerate(zip(
            seen["/zsp/panoptic"], seen["/zsp/overlay"], seen["/zsp/color_mask"], seen["/camera/image_raw"])):
        assert stamp == 10**9 + i * 10**8                                  # the input's receive time
        for msg in (pan, pan.id_image, overlay, mask, src):
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == \
                   (HEADER_SEC + i, 1000 + i, f"cam_optical_{i}")
        ann = by_file[f"{i:06d}.png"]
        ids, segments = panoptic_from_message(pan)               # the node's own reader of its message
        assert pan.id_image.encoding in ("16UC1", "32SC1") and ids.shape == (40, 56)
        np.testing.assert_array_equal(ids, _ids(np.asarray(Image.open(out / "panoptic" / ann["file_name"]))))
        assert [(s["id"], s["category_id"], s["label"]) for s in segments] == \
               [(s["id"], s["category_id"], names[s["category_id"]]) for s in ann["segments_info"]]
        assert segments_consistent(ids, segments) == []
        labelled += len(pan.segments)
        assert (overlay.encoding, mask.encoding, overlay.height, mask.width) == ("rgb8", "rgb8", 40, 56)
        np.testing.assert_array_equal(np.frombuffer(bytes(src.data), np.uint8).reshape(40, 56, 3)[..., ::-1],
                                      frames[i])
    assert labelled > 0, "the round trip must carry real segments"

    # --state kept the added category: a second run without --add still labels with it.
    out2 = tmp_path / "out2"
    assert main(["run", "--kit", str(kit), "--input", str(bag), "--out", str(out2), "--state", str(state),
                 "--max-frames", "1"]) == 0
    assert "red star" in {c["name"] for c in json.loads((out2 / "panoptic.json").read_text())["categories"]}


def test_write_bag_refuses_early_with_a_reason(kit, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(folder / "f0.png")
    bag = tmp_path / "in_bag"
    _write_bag(bag, n=1)
    out = tmp_path / "out"
    (out / "bag").mkdir(parents=True)
    cases = [([str(folder)], "--write-bag applies to bag input only"),
             ([str(bag)], f"{out / 'bag'} already exists")]
    for input_, fragment in cases:
        assert main(["run", "--kit", str(tmp_path / "no_kit"), "--input", *input_, "--out", str(out),
                     "--write-bag"]) == 2                    # refused before the (missing) kit is even looked at
        err = capsys.readouterr().err
        assert err.startswith("zsp run: error: ") and fragment in err, err
    (out / "bag").rmdir()
    for module, fragment in (("rosbags", "needs the rosbags package"), ("zsp_msgs", "zsp_msgs interfaces are not "
                                                                                    "importable")):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)
            assert main(["run", "--kit", str(tmp_path / "no_kit"), "--input", str(bag), "--out", str(out),
                         "--write-bag"]) == 2
        assert fragment in capsys.readouterr().err
    assert not (out / "bag").exists()


def test_run_over_an_image_folder_and_bad_inputs(kit, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 48, 3), 60 * i, dtype=np.uint8)).save(folder / f"f{i}.png")
    out = tmp_path / "out"
    assert main(["run", "--kit", str(kit), "--input", str(folder), "--out", str(out), "--no-overlay"]) == 0
    pred = json.loads((out / "panoptic.json").read_text())
    assert [im["file_name"] for im in pred["images"]] == ["f0.png", "f1.png"]
    assert not (out / "overlay").exists()
    assert main(["run", "--kit", str(kit), "--input", str(tmp_path / "absent.mcap"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    bag = tmp_path / "bag"
    _write_bag(bag, n=1)
    assert main(["run", "--kit", str(kit), "--input", str(bag), "--topic", "/nope", "--out", str(out)]) == 2
    assert "/camera/image_raw" in capsys.readouterr().err
