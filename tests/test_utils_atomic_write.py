"""utils.provenance.atomic_write_bytes: files other users can read (the umask decides), never half-written.

Every file the project writes (kits, category states, exports, results) goes through this one helper.
It used to create its temporary file with ``tempfile.mkstemp`` (mode 0600), so a kit built by one user
could not be loaded by the robot's service user. Each case runs in a fresh process that sets its own
umask, so the test process's umask is never changed.
"""
from __future__ import annotations

import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _run(python_exe: str, umask: int, body: str) -> None:
    script = f"import os\nos.umask({umask:#o})\n" + textwrap.dedent(body)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")])
    out = subprocess.run([python_exe, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o000, 0o666)])
def test_new_file_mode_follows_the_umask(tmp_path, python_exe, umask, expected):
    target = tmp_path / "sub" / "out.json"
    _run(python_exe, umask, f"""
        from zsp_ros.utils.provenance import write_json
        write_json({str(target)!r}, {{"a": 1}})
    """)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert _mode(target) == expected
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]      # no temporary left behind


def test_replacing_a_private_file_gives_the_umask_mode(tmp_path, python_exe):
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")
    target.chmod(0o600)
    _run(python_exe, 0o022, f"""
        from zsp_ros.utils.provenance import atomic_write_bytes
        atomic_write_bytes({str(target)!r}, b"new")
    """)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from zsp_ros.utils.provenance import atomic_write_bytes

    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())          # type: ignore[arg-type]   # write() raises mid-way
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


def test_a_saved_kit_is_readable_by_other_users(tmp_path, python_exe):
    """The case of the report: a kit saved under the usual umask 022 is world-readable, every file of it."""
    kit = tmp_path / "kit"
    _run(python_exe, 0o022, f"""
        import torch; torch.set_num_threads(1)
        from runtime_fakes import make_kit
        make_kit({str(kit)!r})
    """)
    files = sorted(p for p in kit.iterdir() if p.is_file())
    assert len(files) >= 5, [p.name for p in files]       # manifest + network, head, generator, bank
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: oct(0o644) for p in files}
