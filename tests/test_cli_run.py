"""`zsp run` over a rosbag2 MCAP bag written here (rosbags), an image folder, and bad inputs."""
from __future__ import annotations

import json
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

STORE = get_typestore(Stores.ROS2_HUMBLE)


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    return make_real_kit(tmp_path_factory.mktemp("kit") / "kit")


def _image_msg(rgb: np.ndarray, stamp_ns: int):
    t = STORE.types
    h, w = rgb.shape[:2]
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9,
                                                                           nanosec=stamp_ns % 10**9), frame_id="cam")
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
            w.write(cam, stamp, STORE.serialize_cdr(_image_msg(f, stamp), "sensor_msgs/msg/Image"))
            w.write(other, stamp, STORE.serialize_cdr(STORE.types["std_msgs/msg/String"](data="hi"),
                                                      "std_msgs/msg/String"))
    return frames


def test_run_over_a_bag_writes_predictions_overlays_and_a_new_bag(kit, tmp_path):
    bag = tmp_path / "in_bag"
    _write_bag(bag)
    out = tmp_path / "out"
    assert main(["run", "--kit", str(kit), "--input", str(bag), "--out", str(out), "--write-bag"]) == 0
    pred = json.loads((out / "panoptic.json").read_text())
    assert [im["stamp_ns"] for im in pred["images"]] == [10**9, 10**9 + 10**8, 10**9 + 2 * 10**8]
    assert len(pred["annotations"]) == 3 and pred["categories"]
    for ann in pred["annotations"]:
        png = np.asarray(Image.open(out / "panoptic" / ann["file_name"]))
        assert png.shape == (40, 56, 3)
        p = png.astype(np.int64)
        ids = p[..., 0] + 256 * p[..., 1] + 65536 * p[..., 2]
        assert set(np.unique(ids)) - {0} == {s["id"] for s in ann["segments_info"]}
        assert (out / "overlay" / ann["file_name"]).is_file()
    with AnyReader([out / "bag"], default_typestore=STORE) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {"/camera/image_raw": 3, "/zsp/panoptic": 3, "/zsp/overlay": 3}
        conn = next(c for c in reader.connections if c.topic == "/zsp/panoptic")
        _, stamp, raw = next(reader.messages(connections=[conn]))
        msg = reader.deserialize(raw, conn.msgtype)
        assert stamp == 10**9 and (msg.height, msg.width, msg.encoding) == (40, 56, "rgb8")


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
