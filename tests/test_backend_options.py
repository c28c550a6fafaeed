"""Backend options end to end: a fixed-size ONNX file drives the Segmenter's input size, `zsp segment`
takes --onnx / --engine / --backend-option, and the node's onnx_path / engine_path are checked at configure.

The kit is the tiny real one of tests/runtime_fakes.py, exported once to a portable ONNX file at
64x96. The torch backend run at the same fixed size is the reference; images of other sizes and
aspects are resized to fit the file's H x W. The random network's masks overlap a lot, so the
overlap threshold is lowered to 0.2 to keep several segments per image in the comparison.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from runtime_fakes import make_real_kit

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from zsp_ros.cli.main import main  # noqa: E402
from zsp_ros.node import parameters as params  # noqa: E402
from zsp_ros.runtime.segmenter import Segmenter  # noqa: E402
from zsp_ros.utils.cpu_threads import resolve_threads  # noqa: E402

FIXED_HW = (64, 96)
SIZES = ((40, 150), (120, 50), (64, 96), (7, 9))        # (H, W) of the test images: none but one is 64x96


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return make_real_kit(tmp_path_factory.mktemp("kit") / "kit")


@pytest.fixture(scope="module")
def onnx_file(kit_dir, tmp_path_factory):
    from zsp_ros.export.onnx_export import export_onnx
    from zsp_ros.kit.model_kit import load_kit
    from zsp_ros.runtime.backends.torch_backend import TorchBackend

    kit = load_kit(kit_dir)
    network = TorchBackend.from_kit(kit).network
    out = tmp_path_factory.mktemp("onnx") / "network.onnx"
    return export_onnx(network, out, height=FIXED_HW[0], width=FIXED_HW[1], variant="portable",
                       kit_sha256=kit.sha256).path


@pytest.fixture(scope="module")
def reference(kit_dir):
    with Segmenter.from_kit(kit_dir, backend="torch", fixed_hw=FIXED_HW, overlap_threshold=0.2) as seg:
        yield seg


def _images():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def _same(a, b):
    np.testing.assert_array_equal(a.panoptic, b.panoptic)
    np.testing.assert_array_equal(a.semantic, b.semantic)
    assert [(s.id, s.category_id, s.area, s.bbox) for s in a.segments] == \
           [(s.id, s.category_id, s.area, s.bbox) for s in b.segments]
    np.testing.assert_allclose([s.score for s in a.segments], [s.score for s in b.segments], rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------ Segmenter.from_kit

def test_from_kit_takes_the_input_size_from_the_onnx_file(kit_dir, onnx_file, reference):
    with Segmenter.from_kit(kit_dir, backend="onnxruntime", overlap_threshold=0.2,
                            backend_options={"onnx": str(onnx_file), "threads": 1}) as seg:
        assert seg.backend.input_hw == FIXED_HW and seg.fixed_hw == FIXED_HW
        found = 0
        for image in _images():
            result = seg.segment(image)
            assert result.panoptic.shape == result.semantic.shape == image.shape[:2]
            _same(result, reference.segment(image))
            found += len(result.segments)
    assert found >= 4, "the comparison must cover real segments"


def test_torch_backend_keeps_the_kit_resize_rule(kit_dir):
    with Segmenter.from_kit(kit_dir, backend="torch") as seg:
        assert seg.fixed_hw is None and (seg.short_side, seg.max_long_side) == (64, 96)


def test_a_fixed_hw_other_than_the_files_is_refused_and_nothing_is_held(kit_dir, onnx_file, tmp_path):
    state = tmp_path / "state"
    with pytest.raises(ValueError, match=r"fixed_hw \(64, 64\) differs from the onnxruntime backend's fixed "
                                         r"input size \(64, 96\)"):
        Segmenter.from_kit(kit_dir, backend="onnxruntime", fixed_hw=(64, 64), state_dir=state,
                           backend_options={"onnx": str(onnx_file), "threads": 1})
    with Segmenter.from_kit(kit_dir, backend="onnxruntime", fixed_hw=FIXED_HW, state_dir=state,   # lock released
                            backend_options={"onnx": str(onnx_file), "threads": 1}) as seg:
        assert seg.fixed_hw == FIXED_HW


# ------------------------------------------------------------------ zsp segment

def _write_images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(_images()[:2]):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def test_zsp_segment_runs_the_onnx_file(kit_dir, onnx_file, reference, tmp_path, capsys):
    paths = _write_images(tmp_path / "in")
    out = tmp_path / "out"
    rc = main(["segment", *map(str, paths), "--kit", str(kit_dir), "--out", str(out), "--backend", "onnxruntime",
               "--onnx", str(onnx_file), "--backend-option", "threads=1", "--overlap-threshold", "0.2",
               "--no-overlay"])
    assert rc == 0, capsys.readouterr().err
    coco = json.loads((out / "panoptic.json").read_text())
    for path, ann in zip(paths, coco["annotations"]):
        png = np.asarray(Image.open(out / "panoptic" / ann["file_name"])).astype(np.int64)
        ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
        want = reference.segment(np.asarray(Image.open(path).convert("RGB")))
        np.testing.assert_array_equal(ids, want.panoptic)
        assert [(s["id"], s["category_id"]) for s in ann["segments_info"]] == \
               [(s.id, s.category_id) for s in want.segments]
    assert sum(len(a["segments_info"]) for a in coco["annotations"]) > 0


@pytest.mark.parametrize("extra, fragment", [
    (["--onnx", "{onnx}"], "--onnx is read by the onnxruntime and tensorrt backends only, not by --backend torch"),
    (["--backend", "onnxruntime", "--engine", "{onnx}"],
     "--engine is read by the tensorrt backend only, not by --backend onnxruntime"),
    (["--backend", "onnxruntime", "--onnx", "{missing}"], "no such file"),
    (["--backend", "onnxruntime", "--backend-option", "threads"], "expected KEY=VALUE"),
    (["--backend", "onnxruntime", "--onnx", "{onnx}", "--backend-option", "onnx={onnx}"], "both given"),
    (["--backend", "onnxruntime", "--onnx", "{onnx}", "--backend-option", "colour=red"],
     "backend 'onnxruntime' refused the options ['colour', 'onnx', 'threads']"),
    (["--backend", "onnxruntime"], "needs backend option onnx=PATH"),
])
def test_zsp_segment_refuses_bad_backend_options(kit_dir, onnx_file, tmp_path, capsys, extra, fragment):
    fill = {"onnx": str(onnx_file), "missing": str(tmp_path / "none.onnx")}
    args = [a.format(**fill) for a in extra]
    rc = main(["segment", str(tmp_path / "x.png"), "--kit", str(kit_dir), "--out", str(tmp_path / "o"), *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("zsp segment: error: ") and fragment in err, err


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_work_as_the_help_shows(kit_dir, onnx_file, tmp_path, capsys, keep_threads):
    """`--backend-option threads=1` (the help's example) and `--threads N` run on every backend."""
    paths = _write_images(tmp_path / "in")
    base = ["segment", str(paths[0]), "--kit", str(kit_dir), "--no-overlay"]
    torch.set_num_threads(2)
    assert main([*base, "--out", str(tmp_path / "a"), "--backend-option", "threads=1"]) == 0, capsys.readouterr().err
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    assert main([*base, "--out", str(tmp_path / "b"), "--threads", "1", "--backend", "onnxruntime",
                 "--onnx", str(onnx_file)]) == 0, capsys.readouterr().err
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    assert main([*base, "--out", str(tmp_path / "c")]) == 0                  # 0 = automatic
    assert torch.get_num_threads() == resolve_threads(0)
    a = json.loads((tmp_path / "a" / "panoptic.json").read_text())["annotations"]
    c = json.loads((tmp_path / "c" / "panoptic.json").read_text())["annotations"]
    assert a == c                                                            # threads change speed, not results
    for extra, fragment in [(["--threads", "2", "--backend-option", "threads=1"], "--threads 2 and --backend-option "
                                                                                  "threads=1 disagree"),
                            (["--backend-option", "threads=-1"], "threads=-1: expected a whole number >= 0"),
                            (["--backend-option", "threads=two"], "threads=two: expected a whole number >= 0")]:
        assert main([*base, "--out", str(tmp_path / "d"), *extra]) == 2
        assert fragment in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--out", str(tmp_path / "d"), "--threads", "-1"])
    assert "expected a whole number >= 0" in capsys.readouterr().err


def test_backends_take_threads(kit_dir, onnx_file, keep_threads):
    from zsp_ros.kit.model_kit import load_kit
    from zsp_ros.runtime.backends import build_backend

    kit = load_kit(kit_dir)
    torch.set_num_threads(2)
    backend = build_backend("torch", kit, threads=1)
    assert torch.get_num_threads() == 1 and backend.describe()["threads"] == 1
    for requested, want in ((None, 1), (2, 2), (0, resolve_threads(0))):     # None: the process's count
        backend = build_backend("onnxruntime", kit, onnx=str(onnx_file), threads=requested)
        assert backend.describe()["threads"] == want
        backend.close()


def test_backend_option_values_are_typed():
    from zsp_ros.cli.segment import _option_value

    assert [_option_value(t) for t in ("1", "2.5", "TRUE", "false", "64x96", "")] == [1, 2.5, True, False, "64x96", ""]


# ------------------------------------------------------------------ node parameters

def _values(**kw):
    return {**params.load_defaults(), **kw}


def test_node_backend_files_are_checked_against_the_backend(onnx_file, tmp_path):
    onnx = str(onnx_file)
    assert params.check_backend_files(_values()) == [] and params.backend_options(_values()) == {}
    good = _values(backend="onnxruntime", onnx_path=onnx)
    assert params.check_backend_files(good) == [] and params.backend_options(good) == {"onnx": onnx}
    both = _values(backend="tensorrt", onnx_path=onnx, engine_path=onnx)
    assert params.check_backend_files(both) == [] and params.backend_options(both) == {"onnx": onnx, "engine": onnx}
    missing = str(tmp_path / "gone.onnx")
    for values, fragment in [
        (_values(backend="onnxruntime", onnx_path=missing), f"onnx_path: no file at {missing!r}"),
        (_values(onnx_path=onnx), f"onnx_path: set to {onnx!r} but backend is 'torch'; onnx_path is read by the "
                                  "onnxruntime and tensorrt backends only"),
        (_values(backend="onnxruntime", onnx_path=onnx, engine_path=onnx),
         "engine_path: set to"),
        (_values(backend="onnxruntime"), "onnx_path: the onnxruntime backend runs a fixed-size ONNX file"),
        (_values(backend="tensorrt"), "engine_path: the tensorrt backend needs engine_path"),
        (_values(backend="tensorrt", engine_path=missing), "engine_path: no file at"),
    ]:
        problems = params.check_backend_files(values)
        assert len(problems) == 1 and fragment in problems[0], problems


@pytest.fixture
def ros_context():
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


def test_node_configure_refuses_a_missing_onnx_file_and_runs_a_present_one(ros_context, kit_dir, onnx_file,
                                                                          tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from zsp_ros.node.zsp_node import ZspNode

    node = ZspNode(context=ros_context, defaults=_values(kit=str(kit_dir), backend="onnxruntime",
                                                         onnx_path=str(tmp_path / "gone.onnx")))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.lifecycle_state() == "unconfigured" and node._segmenter is None
        assert node.set_parameters([Parameter("onnx_path", value=str(onnx_file))])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node._segmenter.fixed_hw == FIXED_HW
        assert node._segmenter.backend.describe()["onnx"] == str(onnx_file)
        result = node.set_parameters([Parameter("onnx_path", value="")])[0]
        assert not result.successful and "read at configure" in result.reason
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    finally:
        node.destroy_node()
