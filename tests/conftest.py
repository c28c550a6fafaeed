"""Test-session set-up shared by every test.

- Each pytest session gets its own ROS_DOMAIN_ID (claimed with a lock file, so two sessions on
  one machine never share one) and discovery limited to localhost. Set at import time so
  that every subprocess a test starts inherits it.
- Nothing may reach the network: Hugging Face hubs are forced offline.
- torch uses few threads so tests behave the same on the 2-core CI machine.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]



def _claim_domain_id() -> int:
    """Claim a ROS_DOMAIN_ID no other live test session on this machine holds.

    An exclusive flock on /tmp/zsp_ros_test_domain_<id>.lock, held for the life of this process
    (the kernel drops it when the process dies, even by SIGKILL). Valid ids on Linux: 0..101.
    """
    import fcntl
    start = os.getpid() % 100
    for k in range(100):
        domain = 1 + (start + k) % 100
        handle = open(f"/tmp/zsp_ros_test_domain_{domain}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _DOMAIN_LOCK.append(handle)  # keep it open (and locked) until the session ends
        return domain
    raise RuntimeError("no free ROS_DOMAIN_ID: 100 test sessions hold one each")


_DOMAIN_LOCK: list = []
if "ZSP_TEST_DOMAIN_FIXED" not in os.environ:
    os.environ["ROS_DOMAIN_ID"] = str(_claim_domain_id())
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    """The ROS_DOMAIN_ID of this test session (inherited by subprocesses)."""
    return int(os.environ["ROS_DOMAIN_ID"])


@pytest.fixture(scope="session")
def python_exe() -> str:
    """The venv's own python (its bootstrap sets LD_LIBRARY_PATH for the ROS wheels)."""
    return sys.executable


@pytest.fixture(autouse=True)
def _few_torch_threads():
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(2)
    yield
