"""`zsp export onnx` sizes the file by the kit's own resize rule, and warns when --size changes it (issue 19.9).

The tiny real kit's rule is short side 64, long side at most 96, multiples of 32: 480x640 frames
become 64x85, padded to 64x96. At that size the onnxruntime backend must give exactly what the torch
backend gives with the kit's rule; at another scale it is allowed to differ, with a warning.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from runtime_fakes import make_real_kit

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from zsp_ros.cli.main import main  # noqa: E402
from zsp_ros.export.onnx_export import kit_network_size, resize_rule_changes  # noqa: E402
from zsp_ros.runtime.backends.onnx_contract import read_metadata  # noqa: E402
from zsp_ros.runtime.segmenter import Segmenter  # noqa: E402

RULE = {"short_side": 64, "max_long_side": 96, "size_divisibility": 32}
EMBEDDED_RULE = {"short_side": 128, "max_long_side": 256, "size_divisibility": 32}


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return make_real_kit(tmp_path_factory.mktemp("kit") / "kit")


def test_kit_network_size_and_the_changes_another_size_makes():
    assert kit_network_size(EMBEDDED_RULE, (480, 640)) == (128, 192)          # the embedded kit, issue 19's case
    assert kit_network_size(RULE, (480, 640)) == (64, 96)
    assert resize_rule_changes(EMBEDDED_RULE, (480, 640), (128, 192)) == []
    [scale] = resize_rule_changes(EMBEDDED_RULE, (480, 640), (480, 640))
    assert "reach the network at 480x640 (scale 1)" in scale and "at 128x171 (scale 0.267)" in scale
    [padding] = resize_rule_changes(EMBEDDED_RULE, (480, 640), (128, 256))    # same scale, more padding
    assert "padded to 128x256 instead of 128x192" in padding


def test_default_export_is_the_kit_size_and_matches_torch(kit_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--kit", str(kit_dir), "--msda", "portable", "--out", str(out),
                 "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "network input 64x96: the kit's resize rule for 480x640 frames" in captured.out
    assert "warning" not in captured.err
    assert read_metadata(out)["input_hw"] == "64x96"
    frame = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    with Segmenter.from_kit(kit_dir, backend="torch", overlap_threshold=0.2) as reference, \
            Segmenter.from_kit(kit_dir, backend="onnxruntime", overlap_threshold=0.2,
                               backend_options={"onnx": str(out), "threads": 1}) as exported:
        want, got = reference.segment(frame), exported.segment(frame)
    assert reference.fixed_hw is None and exported.fixed_hw == (64, 96)
    np.testing.assert_array_equal(got.panoptic, want.panoptic)
    assert [(s.id, s.category_id) for s in got.segments] == [(s.id, s.category_id) for s in want.segments]
    assert len(want.segments) > 0, "the comparison must cover real segments"


def test_another_size_warns_how_results_change(kit_dir, tmp_path, capsys):
    out = tmp_path / "big.onnx"
    assert main(["export", "onnx", "--kit", str(kit_dir), "--msda", "portable", "--size", "64x64", "--out",
                 str(out), "--camera-size", "480x640"]) == 0
    err = capsys.readouterr().err
    assert "zsp export: warning: --size 64x64: 480x640 frames reach the network at 48x64" in err
    assert "the kit's own size for them is 64x96 (the default)" in err and out.is_file()
    assert main(["export", "onnx", "--kit", str(kit_dir), "--msda", "portable", "--camera-size", "480",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--camera-size '480': expected HxW" in capsys.readouterr().err
