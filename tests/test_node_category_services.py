"""The category services' replies without ROS processes: every reply carries the current version, a
failure changes nothing and says why (the file for an OSError, the directory for a state-dir error),
and a failure after a successful change does not turn it into a failure."""
from __future__ import annotations

import errno
import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from zsp_ros.node.category_services import CategoryServices, describe_error
from zsp_ros.runtime.category_requests import CategoryError
from zsp_ros.runtime.state_store import StateDirError


class FakeRegistry:
    """version 5; add/remove raise ``error`` when set, else bump the version."""

    def __init__(self, error: BaseException | None = None, state_path: str | None = "/robot/state/registry_state.zsp"):
        self.version = 5
        self.error = error
        self.last_add_report: list = []
        self.store = SimpleNamespace(path=Path(state_path)) if state_path else None

    def add(self, names, isthing=None):
        if self.error is not None:
            raise self.error
        self.version += 1
        self.last_add_report = [SimpleNamespace(text=lambda n=n: f"'{n}': nearest 'red ring' 0.80") for n in names]
        return [SimpleNamespace(id=100 + i, name=n) for i, n in enumerate(names)]

    def remove(self, items):
        if self.error is not None:
            raise self.error
        self.version += 1
        return [7]

    def list(self):
        raise OSError(errno.EIO, "Input/output error")


def services(registry, *, on_changed=lambda: None):
    segmenter = None if registry is None else SimpleNamespace(registry=registry)
    return CategoryServices(segmenter=lambda: segmenter, lock=threading.Lock(), logger=logging.getLogger("test"),
                            lifecycle_state=lambda: "unconfigured", stamp=lambda: None, on_changed=on_changed)


def add(svc, names=("purple star",)):
    from zsp_msgs.srv import AddCategories
    return svc.on_add(AddCategories.Request(names=list(names)), AddCategories.Response())


def remove(svc):
    from zsp_msgs.srv import RemoveCategories
    return svc.on_remove(RemoveCategories.Request(names=["grass"]), RemoveCategories.Response())


@pytest.mark.parametrize("error, fragments", [
    (OSError(errno.ENOSPC, "No space left on device"),
     ["internal error OSError: [Errno 28] No space left on device",
      "while writing the state file /robot/state/registry_state.zsp"]),
    (OSError(errno.ENOSPC, "No space left on device", "/robot/state/.tmp123"),
     ["No space left on device: '/robot/state/.tmp123'"]),
    (StateDirError("state_dir /robot/state: cannot save registry_state.zsp (No space left on device)"),
     ["nothing added: state_dir /robot/state: cannot save registry_state.zsp (No space left on device)"]),
    (RuntimeError("fit diverged"), ["internal error RuntimeError: fit diverged"]),
    (CategoryError("'grass' is already a category"), ["nothing added: 'grass' is already a category"]),
])
def test_failed_add_keeps_the_version_and_says_why(error, fragments):
    registry = FakeRegistry(error)
    reply = add(services(registry))
    assert not reply.success and reply.version == 5 and list(reply.category_ids) == []
    for fragment in fragments:
        assert fragment in reply.message, reply.message
    assert registry.version == 5
    assert "internal error" not in reply.message or not isinstance(error, (StateDirError, CategoryError))


def test_failed_remove_keeps_the_version():
    reply = remove(services(FakeRegistry(OSError(errno.EROFS, "Read-only file system"))))
    assert not reply.success and reply.version == 5 and list(reply.removed_ids) == []
    assert "Read-only file system" in reply.message and "registry_state.zsp" in reply.message


def test_success_survives_a_failing_category_set_republish():
    def broken():
        raise RuntimeError("publisher gone")
    registry = FakeRegistry()
    reply = add(services(registry, on_changed=broken))
    assert reply.success and reply.version == 6 and list(reply.category_ids) == [100]
    reply = remove(services(registry, on_changed=broken))
    assert reply.success and reply.version == 7


def test_add_reply_says_how_each_name_was_understood():
    reply = add(services(FakeRegistry()), names=("crimson ring", "laptop"))
    assert reply.success and reply.message.startswith("added 'crimson ring' (id 100), 'laptop' (id 101) in ")
    assert ("understood as: 'crimson ring': nearest 'red ring' 0.80 | 'laptop': nearest 'red ring' 0.80; "
            "category set version 6") in reply.message


def test_unconfigured_replies_version_zero_and_list_failure_keeps_the_version():
    from zsp_msgs.srv import ListCategories

    reply = add(services(None))
    assert not reply.success and reply.version == 0 and "configure it first" in reply.message
    listing = services(FakeRegistry()).on_list(ListCategories.Request(), ListCategories.Response())
    assert not listing.success and listing.category_set.version == 5 and "Input/output error" in listing.message


def test_describe_error_names_the_file_once():
    assert describe_error(OSError(errno.ENOENT, "No such file", "/a/b")) == \
        "FileNotFoundError: [Errno 2] No such file: '/a/b'"
    assert describe_error(OSError(errno.ENOSPC, "No space left"), Path("/s/f")) == \
        "OSError: [Errno 28] No space left (while writing the state file /s/f)"
    assert describe_error(ValueError("x")) == "ValueError: x"
