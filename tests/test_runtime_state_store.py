"""Registry persistence: survives a new process and SIGKILL; corrupt or foreign state is set aside."""
from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import torch
from runtime_fakes import make_kit, make_registry

from zsp_ros.kit.category_set import Category, CategorySet
from zsp_ros.kit.model_kit import load_kit
from zsp_ros.runtime.state_store import (
    STATE_FILE,
    RegistryState,
    StateDirError,
    StateLockedError,
    StateStore,
    decode_state,
    encode_state,
)

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory):
    return make_kit(tmp_path_factory.mktemp("kit") / "kit")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")])
    return env


def test_state_survives_a_new_process(kit_dir, tmp_path, python_exe):
    state = tmp_path / "state"
    script = textwrap.dedent(f"""
        import torch; torch.set_num_threads(1)
        from runtime_fakes import make_registry
        reg = make_registry({str(kit_dir)!r}, state_dir={str(state)!r})
        reg.add(["purple star", "orange moon"], isthing=[True, False])
        reg.remove(["green square"])
        print(reg.version, reg.list().ids, flush=True)
    """)
    out = subprocess.run([python_exe, "-c", script], env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "3"
    reg = make_registry(kit_dir, state_dir=state)
    assert reg.load_problem is None
    cats = reg.list()
    assert cats.version == 3 and cats.ids == [1, 4, 7, 8, 9]
    assert [c.origin for c in cats] == ["seen", "seen", "seen", "added", "added"]
    assert cats.get("orange moon").isthing is False
    assert reg.snapshot.weight.shape == (6, 16)
    assert reg.add(["teal cone"])[0].id == 10                 # next id survived too
    reg.close()
    again = make_registry(kit_dir, state_dir=state)
    assert again.version == 4 and again.list().get("teal cone").id == 10


_WRITER = """
import os, sys, time, torch
from zsp_ros.kit.category_set import Category, CategorySet
from zsp_ros.runtime.state_store import RegistryState, StateStore
store = StateStore(sys.argv[1], kit_sha256="k" * 64, text_encoder="enc")
stall_at = int(sys.argv[2])                          # 0: never; else block inside that save's fsync
real_fsync, current = os.fsync, [0]
def fsync(fd):
    if current[0] == stall_at:
        print("stalled", flush=True)
        time.sleep(60)
    real_fsync(fd)
os.fsync = fsync
big = torch.randn(20000, 16)                         # ~1.3 MB per save, so kills land mid-write
for v in range(1, 100000):
    cats = CategorySet((Category(id=1, name="a", isthing=True),), version=v, text_encoder="enc")
    state = RegistryState(categories=cats, next_id=2, removed_ids=(), head_weight=torch.full((2, 16), float(v)),
                          head_bias=torch.zeros(2), synthetic_embeds=big,
                          synthetic_ids=torch.ones(20000, dtype=torch.long),
                          added_text_embeds=torch.zeros(0, 8), added_ids=torch.zeros(0, dtype=torch.long))
    current[0] = v
    store.save(state)
    print(v, flush=True)
"""


def _kill_writer(state_dir: Path, python_exe: str, *, stall_at: int) -> int:
    """Start the writer, SIGKILL it after >= 15 saves (or while it stalls in save ``stall_at``);
    return the last version it reported as saved."""
    proc = subprocess.Popen([python_exe, "-c", _WRITER, str(state_dir), str(stall_at)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    committed = 0
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
            if not line:
                raise AssertionError(f"writer died: {proc.stderr.read()}")
            if line == "stalled":
                break
            committed = int(line)
            if not stall_at and committed >= 15:
                time.sleep(0.013)                            # land somewhere in a later save
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in proc.stdout.read().split():
        committed = int(line)
    return committed


@pytest.mark.parametrize("stall_at", [0, 12], ids=["random-moment", "inside-a-write"])
def test_sigkill_during_many_saves_leaves_a_valid_state(tmp_path, python_exe, stall_at):
    state_dir = tmp_path / "state"
    committed = _kill_writer(state_dir, python_exe, stall_at=stall_at)
    if stall_at:
        assert committed == stall_at - 1 and list(state_dir.glob(f".{STATE_FILE}.*.tmp"))  # died mid-write
    store = StateStore(state_dir, kit_sha256="k" * 64, text_encoder="enc")   # the dead writer's lock is gone
    outcome = store.load()
    assert outcome.problem is None and outcome.state is not None
    version = outcome.state.categories.version
    assert version >= committed                                  # at least every save it reported
    if stall_at:
        assert version == stall_at - 1                           # the interrupted save never shows
    assert torch.equal(outcome.state.head_weight, torch.full((2, 16), float(version)))
    assert not list(state_dir.glob(f".{STATE_FILE}.*.tmp"))      # half-written temporaries cleaned up


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"hello, not a state file")


@pytest.mark.parametrize("how, message", [("flip", "checksum mismatch"), ("truncate", "checksum mismatch"),
                                          ("empty", "bad header or truncated"),
                                          ("garbage", "bad header or truncated")])
def test_corrupt_state_is_reported_and_set_aside(kit_dir, tmp_path, how, message):
    state = tmp_path / "state"
    reg = make_registry(kit_dir, state_dir=state)
    reg.add(["purple star"])
    reg.close()
    _damage(state / STATE_FILE, how)
    fresh = make_registry(kit_dir, state_dir=state)
    assert message in fresh.load_problem and "moved to registry_state.zsp.corrupt-" in fresh.load_problem
    assert fresh.list().ids == [1, 2, 4, 7] and fresh.version == 1          # the kit's set, not the bad file
    assert not (state / STATE_FILE).exists()
    assert len(list(state.glob(f"{STATE_FILE}.corrupt-*"))) == 1


def test_foreign_kit_and_foreign_encoder_are_refused(kit_dir, tmp_path):
    state = tmp_path / "state"
    reg = make_registry(kit_dir, state_dir=state)
    reg.add(["purple star"])
    reg.close()
    other_kit = make_kit(tmp_path / "other", seed=1)
    other = make_registry(other_kit, state_dir=state)
    assert "belongs to another model kit" in other.load_problem
    assert other.list().get("purple star") is None
    other.close()

    kit = load_kit(kit_dir)
    data = encode_state(make_registry(kit_dir)._state, kit_sha256=kit.sha256)
    with pytest.raises(ValueError, match="made with text encoder 'fake-words-16', the encoder in use is 'x'"):
        decode_state(data, kit_sha256=kit.sha256, text_encoder="x")


def test_second_writer_is_refused_and_readers_do_not_move_files(kit_dir, tmp_path):
    state = tmp_path / "state"
    reg = make_registry(kit_dir, state_dir=state)
    reg.add(["purple star"])
    with pytest.raises(StateLockedError, match=f"in use by another writer \\(pid {os.getpid()}\\)"):
        StateStore(state, kit_sha256="x", text_encoder="y")
    kit = load_kit(kit_dir)
    reader = StateStore(state, kit_sha256=kit.sha256, text_encoder="fake-words-16", writable=False)
    assert reader.load().state.categories.version == 2
    with pytest.raises(StateDirError, match="read-only"):
        reader.save(reg._state)
    _damage(state / STATE_FILE, "flip")
    outcome = reader.load()
    assert "checksum mismatch" in outcome.problem and outcome.moved_to is None
    assert (state / STATE_FILE).exists()                              # a reader reports, never moves
    reg.close()
    StateStore(state, kit_sha256="x", text_encoder="y").close()      # lock released


def test_failed_save_keeps_the_old_snapshot(kit_dir, tmp_path):
    reg = make_registry(kit_dir, state_dir=tmp_path / "state")
    before = reg.snapshot

    def broken(_state):
        raise OSError("disk full")

    reg.store.save = broken
    with pytest.raises(OSError, match="disk full"):
        reg.add(["purple star"])
    assert reg.snapshot is before and reg.list().get("purple star") is None


def test_state_round_trip_is_exact():
    cats = CategorySet((Category(id=3, name="a b", isthing=False, origin="seen"),
                        Category(id=9, name="c", isthing=True, origin="added")), version=5, text_encoder="e")
    state = RegistryState(categories=cats, next_id=12, removed_ids=(1, 2), head_weight=torch.randn(3, 4),
                          head_bias=torch.randn(3), synthetic_embeds=torch.randn(6, 4),
                          synthetic_ids=torch.full((6,), 9), added_text_embeds=torch.randn(1, 5),
                          added_ids=torch.tensor([9]))
    back = decode_state(encode_state(state, kit_sha256="k"), kit_sha256="k", text_encoder="e")
    assert back.categories == cats and back.next_id == 12 and back.removed_ids == (1, 2)
    for name in ("head_weight", "head_bias", "synthetic_embeds", "synthetic_ids", "added_text_embeds", "added_ids"):
        assert torch.equal(getattr(back, name), getattr(state, name)), name


# ------------------------------------------------------------------ state_dir problems, read-only, memory store
def test_state_dir_that_is_a_file(kit_dir, tmp_path):
    (tmp_path / "state").write_text("not a directory")
    for writable in (True, False):
        with pytest.raises(StateDirError, match=f"state_dir {tmp_path / 'state'} is a file, not a directory"):
            StateStore(tmp_path / "state", kit_sha256="k" * 64, text_encoder="e", writable=writable)
    with pytest.raises(StateDirError, match="is a file"):
        StateStore.open(tmp_path / "state", kit_sha256="k" * 64, text_encoder="e", allow_read_only=True)


def test_state_file_that_is_a_directory(kit_dir, tmp_path):
    (tmp_path / "state" / STATE_FILE).mkdir(parents=True)
    with pytest.raises(StateDirError, match=f"state_dir {tmp_path / 'state'}: {STATE_FILE} is a directory"):
        make_registry(kit_dir, state_dir=tmp_path / "state")


def test_state_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateDirError, match=f"state_dir {tmp_path / 'file' / 'state'} cannot be created "
                                            r"\(Not a directory\)"):
        StateStore(tmp_path / "file" / "state", kit_sha256="k" * 64, text_encoder="e")
    with pytest.raises(StateDirError, match="cannot be created"):        # not a permission problem: no fallback
        StateStore.open(tmp_path / "file" / "state", kit_sha256="k" * 64, text_encoder="e", allow_read_only=True)


def _make_unwritable(monkeypatch, directory: Path, how: str) -> None:
    """Tests run as root, for whom chmod 0555 stops nothing (and a read-only mount is not available here):
    the directory is made unwritable by faking what the OS would answer for it."""
    import errno as errno_module
    real_access, real_open = os.access, os.open
    if how == "access":
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == directory and mode & os.W_OK
                            else real_access(p, mode, *a, **k))
    else:                                                             # EROFS when the lock file is created
        def fake_open(path, flags, *args, **kwargs):
            if Path(path).parent == directory and flags & os.O_CREAT:
                raise OSError(errno_module.EROFS, "Read-only file system", str(path))
            return real_open(path, flags, *args, **kwargs)
        monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("how, cause", [("access", "permission denied"), ("erofs", "Read-only file system")])
def test_read_only_state_dir_opens_read_only_and_refuses_changes(kit_dir, tmp_path, monkeypatch, how, cause):
    from zsp_ros.kit.model_kit import load_kit
    from zsp_ros.runtime.category_requests import CategoryError
    from zsp_ros.runtime.registry import build_registry

    state = tmp_path / "state"
    reg = make_registry(kit_dir, state_dir=state)
    reg.add(["purple star"])                                          # version 2, saved while writable
    reg.close()
    _make_unwritable(monkeypatch, state, how)
    kit = load_kit(kit_dir)
    with pytest.raises(StateDirError, match=f"state_dir {state} is not writable \\({cause}\\)"):
        StateStore(state, kit_sha256=kit.sha256, text_encoder="fake-words-16")
    store = StateStore.open(state, kit_sha256=kit.sha256, text_encoder="fake-words-16", allow_read_only=True)
    assert not store.writable and f"state_dir {state} is not writable ({cause})" == store.read_only_reason
    from runtime_fakes import FakeTextEncoder
    ro = build_registry(kit, text_encoder=FakeTextEncoder(), state_dir=state, allow_read_only=True, warm_up=False)
    assert ro.version == 2 and ro.list().get("purple star") is not None     # the saved state is served
    assert ro.read_only_reason == store.read_only_reason
    for change in (lambda: ro.add(["orange moon"]), lambda: ro.remove(["purple star"])):
        with pytest.raises(CategoryError, match=f"state_dir {state} is not writable .*; categories cannot be changed"):
            change()
    assert ro.version == 2
    with pytest.raises(StateDirError, match="is not writable"):       # without allow_read_only: refused
        build_registry(kit, text_encoder=FakeTextEncoder(), state_dir=state, warm_up=False)


def test_a_failed_save_names_the_directory_and_keeps_the_version(kit_dir, tmp_path, monkeypatch):
    import errno as errno_module

    import zsp_ros.runtime.state_store as state_store

    reg = make_registry(kit_dir, state_dir=tmp_path / "state")
    reg.add(["purple star"])

    def full(path, data):
        raise OSError(errno_module.ENOSPC, "No space left on device")

    monkeypatch.setattr(state_store, "atomic_write_bytes", full)
    with pytest.raises(StateDirError, match=f"state_dir {tmp_path / 'state'}: cannot save {STATE_FILE} "
                                            r"\(No space left on device\)"):
        reg.add(["orange moon"])
    assert reg.version == 2 and reg.list().get("orange moon") is None


def test_memory_store_keeps_version_and_ids_across_rebuilds(kit_dir, tmp_path, monkeypatch):
    from runtime_fakes import FakeTextEncoder, prototype_fit

    import zsp_ros.runtime.registry as registry_module
    from zsp_ros.kit.model_kit import load_kit
    from zsp_ros.runtime.registry import build_registry
    from zsp_ros.runtime.state_store import MemoryStateStore

    monkeypatch.setattr(registry_module, "pading_fit_head", prototype_fit)      # instant fits

    kit, memory = load_kit(kit_dir), MemoryStateStore()
    assert memory.path is None and memory.writable and memory.load().state is None

    def rebuild():                                                   # a node's cleanup -> configure
        return build_registry(kit, text_encoder=FakeTextEncoder(), store=memory, warm_up=False)

    reg = rebuild()
    assert reg.add(["purple star"])[0].id == 8 and reg.version == 2
    reg.close()
    reg = rebuild()
    assert reg.version == 2 and reg.list().get("purple star").id == 8
    reg.remove(["purple star"])
    reg.close()
    reg = rebuild()
    assert reg.version == 3 and reg.add(["orange moon"])[0].id == 9            # id 8 is never reused
    reg.close()
    other = load_kit(make_kit(tmp_path / "other", seed=1))
    fresh = build_registry(other, text_encoder=FakeTextEncoder(), store=memory, warm_up=False)
    assert fresh.version == 1 and "belong to kit" in fresh.load_problem
    with pytest.raises(ValueError, match="state_dir or store, not both"):
        build_registry(kit, text_encoder=FakeTextEncoder(), store=memory, state_dir=tmp_path / "s", warm_up=False)
