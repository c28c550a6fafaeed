"""zsp_node and its state directory, through real node processes: problems of the directory are
reported as such (not as a kit problem), a save that fails changes nothing and the reply says why and
keeps the version, and a read-only directory starts the node read-only (adds refused, frames served).

Read-only: ``chmod 0555`` stops writes for an ordinary user; root writes anyway, so there the directory
is made immutable with ``chattr +i`` (which binds root too; needs CAP_LINUX_IMMUTABLE and ext2/3/4, xfs,
btrfs...). When neither makes the directory unwritable (``os.access``), that test is skipped, saying so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from node_fixtures import NODE_PROGRAM, TESTS_DIR, make_quadrant_kit, node_args
from ros_helpers import spawn_python, unique_namespace

TIMEOUT_S = 90.0
pytestmark = pytest.mark.timeout(300)
IMAGE = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
NODE_PARAMS = {"backend": "quadrant-test", "object_mask_threshold": 0.5, "autostart": True}
FAST_FIT = {"optimizer": "adam", "steps": 30, "lr": 0.02}


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    return make_quadrant_kit(tmp_path_factory.mktemp("state_dir_kit"), fit_kwargs=FAST_FIT)


def start_node(namespace, kit, state_dir):
    return spawn_python(name="zsp_node", source=NODE_PROGRAM,
                        args=node_args(namespace, kit=str(kit), state_dir=str(state_dir), **NODE_PARAMS),
                        env_extra={"ZSP_TEST_DIR": str(TESTS_DIR)})


def configure_error(kit, state_dir) -> str:
    """Start an autostarting node that must fail configure; its [ERROR] line."""
    with start_node(unique_namespace("zsp_state_dir_bad"), kit, state_dir) as node:
        assert node.wait_exit(timeout=TIMEOUT_S) == 1, node.transcript
        assert "autostart failed" in node.transcript
        return node.wait_for_line("[ERROR]", timeout=5.0)


def test_a_state_dir_that_is_a_file_is_reported_as_such(kit, tmp_path):
    path = tmp_path / "state"
    path.write_text("not a directory")
    line = configure_error(kit, path)
    assert f"state_dir {path} is a file, not a directory" in line and "state_dir" in line
    assert "cannot load model kit" not in line


def test_a_state_file_that_is_a_directory_is_reported_as_such(kit, tmp_path):
    state_dir = tmp_path / "state"
    (state_dir / "registry_state.zsp").mkdir(parents=True)
    line = configure_error(kit, state_dir)
    assert f"state_dir {state_dir}" in line and "registry_state.zsp is a directory" in line
    assert "cannot load model kit" not in line


@pytest.fixture(scope="module")
def shared_state(tmp_path_factory):
    """A state directory the next two tests share (the second reuses what the first added)."""
    return tmp_path_factory.mktemp("shared_state") / "state"


def test_a_failed_save_changes_nothing_and_the_reply_says_why(kit, shared_state):
    from zsp_ros.node.client import ZspClient

    namespace = unique_namespace("zsp_state_dir_save")
    with start_node(namespace, kit, shared_state) as node, \
            ZspClient(namespace=namespace, name="zsp_state_dir_client") as client:
        node.wait_for_line("[INFO]", timeout=TIMEOUT_S)
        ok = client.add_categories(["purple star"], timeout=TIMEOUT_S)
        assert ok.success and ok.version == 2, ok.message
        state_file = shared_state / "registry_state.zsp"
        saved = state_file.read_bytes()
        state_file.unlink()
        state_file.mkdir()                                 # the next save's rename fails: EISDIR
        bad = client.add_categories(["orange ring"], timeout=TIMEOUT_S)
        assert not bad.success and bad.version == 2 and list(bad.category_ids) == []
        assert f"state_dir {shared_state}" in bad.message and "Is a directory" in bad.message, bad.message
        assert "internal error" not in bad.message
        listing = client.list_categories(timeout=TIMEOUT_S)
        assert listing.category_set.version == 2
        assert [c.name for c in listing.category_set.categories][-1] == "purple star"
        state_file.rmdir()
        state_file.write_bytes(saved)
        again = client.add_categories(["orange ring"], timeout=TIMEOUT_S)
        assert again.success and again.version == 3 and again.category_ids[0] == ok.category_ids[0] + 1


def _make_read_only(path) -> str | None:
    """Make ``path`` unwritable for this process; how (a sentence), or None when it cannot be done here."""
    os.chmod(path, 0o555)
    if not os.access(path, os.W_OK):
        return "chmod 0555"
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
        if not os.access(path, os.W_OK):
            return "chattr +i (running as root, where chmod does not stop writes)"
    return None


def _make_writable(path) -> None:
    chattr = shutil.which("chattr")
    if chattr:
        subprocess.run([chattr, "-i", str(path)], capture_output=True)
    os.chmod(path, 0o755)


def test_a_read_only_state_dir_starts_the_node_read_only(kit, shared_state):
    from sensor_msgs.msg import Image
    from zsp_msgs.msg import PanopticSegmentation

    from zsp_ros.node.client import ZspClient
    from zsp_ros.node.raw_image import numpy_to_image

    assert (shared_state / "registry_state.zsp").is_file()      # left by the test before (version 3)
    how = _make_read_only(shared_state)
    try:
        if how is None:
            pytest.skip("cannot make a directory read-only here: chmod does not bind this user (root) and "
                        "chattr +i is unavailable or refused")
        print(f"state_dir made read-only with {how}")
        namespace = unique_namespace("zsp_state_dir_ro")
        with start_node(namespace, kit, shared_state) as node, \
                ZspClient(namespace=namespace, name="zsp_state_dir_ro_client") as client:
            warning = node.wait_for_line("[WARN]", timeout=TIMEOUT_S)
            assert f"state_dir {shared_state}" in warning and "read-only" in warning, warning
            node.wait_for_line("[INFO]", timeout=TIMEOUT_S)
            listing = client.list_categories(timeout=TIMEOUT_S)
            assert listing.success and listing.category_set.version == 3
            assert [c.name for c in listing.category_set.categories][-2:] == ["purple star", "orange ring"]
            refused = client.add_categories(["white cross"], timeout=TIMEOUT_S)
            assert not refused.success and refused.version == 3
            assert str(shared_state) in refused.message and "cannot be changed" in refused.message, refused.message
            refused = client.remove_categories(["grass"], timeout=TIMEOUT_S)
            assert not refused.success and refused.version == 3 and str(shared_state) in refused.message

            client.subscribe("panoptic", PanopticSegmentation)            # and frames are served
            pub = client.node.create_publisher(Image, "image", 10)
            msg = numpy_to_image(IMAGE, "rgb8")
            deadline = time.monotonic() + TIMEOUT_S
            while not client.messages("panoptic") and time.monotonic() < deadline:
                pub.publish(msg)
                time.sleep(0.2)
            result = client.messages("panoptic")[0]
            assert result.category_set_version == 3 and "purple star" in {s.label for s in result.segments}
    finally:
        _make_writable(shared_state)
