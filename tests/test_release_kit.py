"""`zsp kit from-release` on files in the released formats (tests/release_fakes.py), end to end: the kit,
the Segmenter on an image, an add through the runtime registry, the ROS 2 node loading the kit and
answering add_categories; plus the head row orders, the full-size R50 layout and refusals by name."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from release_fakes import CLIP_PRELUDE, TINY_R50, write_release_files

from zsp_ros.cli.main import main
from zsp_ros.kit.checks import CLASS_HEAD_PREFIX
from zsp_ros.kit.meta_build import expected_state
from zsp_ros.kit.model_kit import load_kit
from zsp_ros.model.build import build_mask2former, load_config
from zsp_ros.semantics.clip_encoder import PADING_TEMPLATES
from zsp_ros.training.import_checkpoint import read_checkpoint
from zsp_ros.training.release_kit import build_release_kit, head_categories

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)
TIMEOUT_S = 120.0
NODE_PROGRAM = CLIP_PRELUDE + "import sys\nfrom zsp_ros.node.main import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture()
def release(tmp_path, monkeypatch):
    return write_release_files(tmp_path / "release", monkeypatch)


def _from_release(files, out, *extra):
    return main(["kit", "from-release", "--segmenter", str(files["segmenter"]), "--pading", str(files["pading"]),
                 "--clip", str(files["clip"]), "--config", str(files["config"]), "--out", str(out),
                 "--short-side", "64", "--max-long-side", "96", "--bank-rows", "16", *extra])


def test_official_r50_key_set_is_the_stand_in_s_and_the_kit_layout_of_the_real_config():
    table = json.loads((REPO / "tests/data/mask2former_r50_keys.json").read_text())
    network = {k: tuple(v) for k, v in table["keys"].items() if k not in table["not_in_network"]}
    tiny = build_mask2former(TINY_R50, 133).state_dict()
    assert set(tiny) == set(network) and all(tiny[k].ndim == len(network[k]) for k in network)
    real = expected_state(lambda: build_mask2former(load_config(REPO / "config/r50_coco_panoptic.yaml")["model"], 133))
    assert {k: shape for k, (shape, _) in real.items()} == network     # full size: every key and shape
    assert not any(k.startswith(CLASS_HEAD_PREFIX) for k in set(real) - set(network))


def test_head_row_orders_follow_the_released_registrations():
    zsp = head_categories("zsp")
    assert len(zsp) == 133 and [c["id"] for c in zsp] == sorted(c["id"] for c in zsp)
    assert [i for i, c in enumerate(zsp) if not c["seen"]] == [19, 23, 28, 29, 36, 51, 76, 83, 97, 99, 100, 116,
                                                                119, 125]      # PADing's unseen_index
    zss = head_categories("zss")
    assert len(zss) == 171 and all(c["seen"] for c in zss[:156]) and not any(c["seen"] for c in zss[156:])
    zsi = head_categories("zsi-48-17")
    assert len(zsi) == 65 and [c["name"] for c in zsi[:3]] == ["person", "bicycle", "car"]
    assert [c["name"] for c in zsi[-3:]] == ["airplane", "cat", "snowboard"] and not any(c["seen"] for c in zsi[48:])


def test_release_kit_end_to_end(release, tmp_path, capsys):
    from node_fixtures import node_args
    from ros_helpers import spawn_python, unique_namespace

    from zsp_ros.node.client import ZspClient
    from zsp_ros.runtime.segmenter import Segmenter

    kit_dir = tmp_path / "kit"
    assert _from_release(release, kit_dir) == 0
    assert "generated bank of 2128 rows" in capsys.readouterr().out
    kit = load_kit(kit_dir)
    pading, seg = read_checkpoint(release["pading"]), read_checkpoint(release["segmenter"])
    assert kit.bank_source == "generated" and len(kit.categories) == 133
    assert torch.equal(kit.head_weight, pading["new_fc.weight"]) and torch.equal(kit.head_bias, pading["new_fc.bias"])
    net = kit.network_state_dict()
    assert torch.equal(net["backbone.res4.5.conv2.weight"], seg["backbone.res4.5.conv2.weight"])
    assert not any(k.startswith(CLASS_HEAD_PREFIX) for k in net)
    te = kit.manifest["text_encoder"]
    assert te["id"] == "clip-vit-b-16" and te["dim"] == 512 and te["kwargs"]["templates"] == list(PADING_TEMPLATES)
    assert te["kwargs"]["quick_gelu"] is True and te["kwargs"]["weights"] == str(release["clip"].resolve())
    assert kit.inference == {"object_mask_threshold": 0.8, "overlap_threshold": 0.8}
    assert kit.bank_embeds.dtype == torch.float16 and kit.bank_embeds.shape == (133 * 16, 32)
    assert int((kit.bank_category_ids == 0).sum()) == 0 and kit.input["short_side"] == 64
    assert kit.manifest["provenance"]["release"]["pading_network_max_abs_diff"] == 0.0

    image = np.random.default_rng(0).integers(0, 256, (72, 100, 3), dtype=np.uint8)
    with Segmenter.from_kit(kit_dir, semantic=False, object_mask_threshold=0.0) as segmenter:
        before = segmenter.segment(image)
        assert before.panoptic.shape == (72, 100)
        added = segmenter.registry.add(["traffic cone"])
        assert added[0].id == 201 and segmenter.registry.snapshot.weight.shape == (135, 32)
        after = segmenter.segment(image)
        assert after.panoptic.shape == (72, 100) and after.category_set_version == before.category_set_version + 1

    namespace = unique_namespace("zsp_release_kit")
    with spawn_python(name="zsp_node", source=NODE_PROGRAM,
                      args=node_args(namespace, kit=str(kit_dir), autostart=True)) as node, \
            ZspClient(namespace=namespace, name="zsp_release_client") as client:
        node.wait_for_line("[INFO]", timeout=TIMEOUT_S)
        reply = client.add_categories(["traffic cone"], timeout=TIMEOUT_S)
        assert reply.success and reply.version == 2 and list(reply.category_ids) == [201], reply.message
        listing = client.list_categories(timeout=TIMEOUT_S)
        assert [c.name for c in listing.category_set.categories][-1] == "traffic cone"


def _after_change(release, tmp_path, change):
    """(kit, snapshot) of a release kit's registry after ``change(registry)``."""
    from zsp_ros.runtime.registry import build_registry

    kit_dir = tmp_path / "kit"
    assert _from_release(release, kit_dir) == 0
    kit = load_kit(kit_dir)
    registry = build_registry(kit, warm_up=False, writer_nice=None)
    try:
        change(registry)
        return kit, registry.snapshot
    finally:
        registry.close()


def test_generated_bank_kit_keeps_the_released_head_rows_after_an_add(release, tmp_path):
    kit, snap = _after_change(release, tmp_path, lambda registry: registry.add(["traffic cone"]))
    assert torch.equal(snap.weight[:133], kit.head_weight[:133]) and torch.equal(snap.weight[-1], kit.head_weight[-1])


def test_generated_bank_kit_removal_drops_rows_without_refitting(release, tmp_path):
    kit, snap = _after_change(release, tmp_path, lambda registry: registry.remove([registry.list().categories[0].id]))
    first = kit.categories.categories[0]
    assert first.id not in snap.categories.ids and snap.weight.shape[0] == kit.head_weight.shape[0] - 1
    assert torch.equal(snap.weight, kit.head_weight[1:]) and torch.equal(snap.bias, kit.head_bias[1:])


def test_refusals_name_the_file_and_key(release, tmp_path, capsys):
    ckpt = torch.load(release["pading"], weights_only=True)
    ckpt["model"]["new_fc.weight"] = torch.zeros(81, 32)
    wrong = tmp_path / "wrong_split.pth"
    torch.save(ckpt, wrong)
    with pytest.raises(ValueError, match=r"new_fc\.weight has shape \[81, 32\] but split coco_zsp"):
        build_release_kit(segmenter=release["segmenter"], pading=wrong, clip=release["clip"], out=tmp_path / "k",
                          config=release["config"])
    del ckpt["model"]["backbone.stem.conv1.weight"]
    ckpt["model"]["new_fc.weight"] = torch.zeros(134, 32)
    torch.save(ckpt, wrong)
    assert _from_release({**release, "segmenter": wrong}, tmp_path / "k") == 1
    assert "1 network tensors are absent (first: ['backbone.stem.conv1.weight'])" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()
