"""Crash-safe persistence of the category registry's state in a state directory.

```
DIR/registry_state.zsp   b"ZSPSTATE" + sha256(payload) [32 bytes] + payload
                         payload = safetensors bytes; its "__metadata__" holds the JSON state
                         (format, version, kit sha256, text encoder, categories, next id, ...)
DIR/.lock                flock held by the one process that may write (its pid inside)
```

Writes are atomic (temporary file, fsync, rename, fsync of the folder), so a process killed at
any moment leaves either the previous or the new state. On load, a file whose checksum, format,
kit or text encoder does not match is reported and renamed ``registry_state.zsp.corrupt-<UTC time>``
— never used. Only one process at a time may open a directory for writing (`StateLockedError`).

Problems of the directory itself are `StateDirError`s whose message names the directory and the cause:
it is a file, it cannot be created, it is not writable, its state file is a directory, a save failed
(e.g. no space left). `StateStore.open(..., allow_read_only=True)` opens a directory that exists but
cannot be written as a read-only store (``writable`` False, ``read_only_reason`` says why) instead of
failing; the registry then refuses changes with that reason.

`MemoryStateStore` has the same interface and keeps the last saved state in memory only: a process
without a state directory that rebuilds its registry (a node's cleanup -> configure) keeps its version
and id counter, so ids are never reused within the process.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from zsp_ros.kit.category_set import CategorySet
from zsp_ros.utils.provenance import atomic_write_bytes

STATE_FILE = "registry_state.zsp"
LOCK_FILE = ".lock"
STATE_FORMAT = "zsp-registry-state"
STATE_FORMAT_VERSION = 1
_MAGIC = b"ZSPSTATE"
_READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)   # what `StateStore.open` may open read-only


class StateDirError(RuntimeError):
    """The state directory cannot be used as asked (it is a file, cannot be created or written, its state file
    is a directory, a save failed); the message names the directory and the cause. ``errno``: the OS error
    number behind it, when there is one."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class StateLockedError(StateDirError):
    """Another process holds the state directory for writing."""


@dataclass(frozen=True)
class RegistryState:
    """Everything needed to restore a registry exactly.

    Attributes:
        categories: the current set (its ``version`` and ``text_encoder`` included), head row order.
        next_id: the id the next added category gets (max of every id ever used + 1).
        removed_ids: kit ("seen") categories removed so far (their bank embeddings train as no-object).
        head_weight: float32 [K+1,E]; head_bias: float32 [K+1].
        synthetic_embeds: float32 [N,E] generated embeddings of the added categories;
        synthetic_ids: int64 [N], their category ids.
        added_text_embeds: float32 [A,D] text embeddings of added categories; added_ids: int64 [A].
    """
    categories: CategorySet
    next_id: int
    removed_ids: tuple[int, ...]
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    synthetic_embeds: torch.Tensor
    synthetic_ids: torch.Tensor
    added_text_embeds: torch.Tensor
    added_ids: torch.Tensor


@dataclass(frozen=True)
class LoadOutcome:
    """Result of `StateStore.load`: the state (None when absent or unusable), and why it was unusable."""
    state: RegistryState | None
    problem: str | None = None
    moved_to: Path | None = None


class StateStore:
    """Reads and writes one registry state file for a given kit and text encoder.

    Args:
        state_dir: the directory (created when missing, when writable).
        kit_sha256: identity of the kit the state belongs to (`ModelKit.sha256`); None skips the check
            (read-only listing without the kit).
        text_encoder: identifier of the text encoder in use (None skips the check, as above).
        writable: take the directory's write lock (released by `close` or process exit); False opens it
            read-only: `load` reports a bad file without moving it and `save` refuses.

    Raises:
        StateDirError: the directory is a file, or (writable) cannot be created or written.
        StateLockedError: (writable) another process holds the directory.

    Attributes:
        dir, path: the directory and its state file. writable: whether `save` may be called.
        read_only_reason: why the store is read-only (None when writable).
    """

    def __init__(self, state_dir: str | Path, *, kit_sha256: str | None, text_encoder: str | None,
                 writable: bool = True):
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE
        self.kit_sha256 = kit_sha256
        self.text_encoder = text_encoder
        self.writable = writable
        self.read_only_reason: str | None = None if writable else f"state_dir {self.dir} was opened read-only"
        self._lock_fd: int | None = None
        if writable and (kit_sha256 is None or text_encoder is None):
            raise ValueError("a writable state store needs the kit sha256 and the text encoder identifier")
        if self.dir.exists() and not self.dir.is_dir():
            raise StateDirError(f"state_dir {self.dir} is a file, not a directory")
        if writable:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateDirError(f"state_dir {self.dir} cannot be created ({_cause(exc)})",
                                    errno=exc.errno) from None
            if not os.access(self.dir, os.W_OK | os.X_OK):
                raise StateDirError(f"state_dir {self.dir} is not writable (permission denied)", errno=errno.EACCES)
            self._lock()
            for stale in self.dir.glob(f".{STATE_FILE}.*.tmp"):  # left by a killed writer
                stale.unlink(missing_ok=True)

    @classmethod
    def open(cls, state_dir: str | Path, *, kit_sha256: str, text_encoder: str,
             allow_read_only: bool = False) -> StateStore:
        """A writable store; with ``allow_read_only``, a read-only one (``read_only_reason`` set) when the
        directory exists but cannot be written, or cannot be created. Other problems raise as the constructor."""
        try:
            return cls(state_dir, kit_sha256=kit_sha256, text_encoder=text_encoder)
        except StateLockedError:
            raise
        except StateDirError as exc:
            if not allow_read_only or exc.errno not in _READ_ONLY_ERRNOS:
                raise
            store = cls(state_dir, kit_sha256=kit_sha256, text_encoder=text_encoder, writable=False)
            store.read_only_reason = str(exc)
            return store

    def _lock(self) -> None:
        try:
            fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise StateDirError(f"state_dir {self.dir}: its lock file {LOCK_FILE} is a directory") from None
        except OSError as exc:
            raise StateDirError(f"state_dir {self.dir} is not writable ({_cause(exc)})", errno=exc.errno) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateLockedError(f"state directory {self.dir} is in use by another writer "
                                       f"(pid {holder}); open it read-only or stop that process") from None
            raise StateDirError(f"state_dir {self.dir}: cannot lock {LOCK_FILE} ({_cause(exc)})") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise StateDirError(f"state_dir {self.dir} is not writable ({_cause(exc)})", errno=exc.errno) from None
        self._lock_fd = fd

    def close(self) -> None:
        """Release the write lock (idempotent)."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -------------------------------------------------------------- write
    def save(self, state: RegistryState) -> None:
        """Atomically replace the state file with ``state``; StateDirError (directory and cause) when it fails."""
        if not self.writable or self._lock_fd is None:
            raise StateDirError(f"state_dir {self.dir} was opened read-only (or closed); cannot save")
        data = encode_state(state, kit_sha256=str(self.kit_sha256))
        try:
            atomic_write_bytes(self.path, data)
        except OSError as exc:
            raise StateDirError(f"state_dir {self.dir}: cannot save {STATE_FILE} ({_cause(exc)})",
                                errno=exc.errno) from None

    # -------------------------------------------------------------- read
    def load(self) -> LoadOutcome:
        """Read the state. Absent: (None). Corrupt or foreign: (None, problem, moved_to) — set aside
        when this store is writable, reported only when read-only."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return LoadOutcome(state=None)
        except IsADirectoryError:
            raise StateDirError(f"state_dir {self.dir}: {STATE_FILE} is a directory, not a file") from None
        except OSError as exc:
            raise StateDirError(f"state_dir {self.dir}: cannot read {STATE_FILE} ({_cause(exc)})") from None
        try:
            state = decode_state(data, kit_sha256=self.kit_sha256, text_encoder=self.text_encoder)
        except ValueError as exc:
            problem = f"state file {self.path} was not used: {exc}"
            moved = self.set_aside() if self.writable else None
            if moved is not None:
                problem += f"; moved to {moved.name}"
            return LoadOutcome(state=None, problem=problem, moved_to=moved)
        return LoadOutcome(state=state)

    def set_aside(self) -> Path:
        """Rename the state file to ``*.corrupt-<UTC time>`` and return the new path."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, target)
        except OSError as exc:
            raise StateDirError(f"state_dir {self.dir}: cannot set {STATE_FILE} aside ({_cause(exc)})") from None
        return target


class MemoryStateStore:
    """The `StateStore` interface without a directory: the last saved state, kept in this process only.

    A node without ``state_dir`` holds one for its lifetime and hands it to every registry it builds
    (`build_registry(..., store=...)`), so a cleanup -> configure keeps the version and the id counter
    (ids are never reused within the process). The saved state belongs to one kit and text encoder
    (`bind`, done by `build_registry`); a registry of another kit does not get it (`load` reports it).
    `close` keeps the state (it is this store's whole point).
    """

    path: Path | None = None
    dir: Path | None = None
    writable = True
    read_only_reason: str | None = None

    def __init__(self, *, kit_sha256: str | None = None, text_encoder: str | None = None) -> None:
        self.kit_sha256 = kit_sha256
        self.text_encoder = text_encoder
        self._saved: tuple[str | None, str | None, RegistryState] | None = None

    def bind(self, *, kit_sha256: str, text_encoder: str) -> None:
        """Say which kit and text encoder the next `load` / `save` concern."""
        self.kit_sha256, self.text_encoder = kit_sha256, text_encoder

    def save(self, state: RegistryState) -> None:
        self._saved = (self.kit_sha256, self.text_encoder, state)

    def load(self) -> LoadOutcome:
        if self._saved is None:
            return LoadOutcome(state=None)
        kit_sha256, text_encoder, state = self._saved
        if (kit_sha256, text_encoder) != (self.kit_sha256, self.text_encoder):
            return LoadOutcome(state=None, problem=f"the categories kept in memory belong to kit "
                                                   f"{str(kit_sha256)[:12]}… / text encoder {text_encoder!r}, "
                                                   f"not this one; starting from the kit's categories")
        return LoadOutcome(state=state)

    def set_aside(self) -> None:
        """Forget the kept state (the registry found it inconsistent with its kit)."""
        self._saved = None

    def close(self) -> None:
        """Nothing to release; the state is kept."""


def _cause(exc: OSError) -> str:
    """'No space left on device' / 'Permission denied' / ...: the OS's words, without the errno prefix."""
    return exc.strerror or str(exc) or type(exc).__name__


# ------------------------------------------------------------------ encoding

def encode_state(state: RegistryState, *, kit_sha256: str) -> bytes:
    """Serialise ``state`` to the checksummed file format (see module docstring)."""
    from safetensors.torch import save as st_save

    meta = {"format": STATE_FORMAT, "format_version": STATE_FORMAT_VERSION, "kit_sha256": kit_sha256,
            "text_encoder": state.categories.text_encoder, "version": state.categories.version,
            "next_id": int(state.next_id), "removed_ids": [int(i) for i in state.removed_ids],
            "categories": [c.to_dict() for c in state.categories]}
    tensors = {"head_weight": state.head_weight.float(), "head_bias": state.head_bias.float(),
               "synthetic_embeds": state.synthetic_embeds.float(),
               "synthetic_ids": state.synthetic_ids.long(),
               "added_text_embeds": state.added_text_embeds.float(), "added_ids": state.added_ids.long()}
    payload = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                      metadata={"state": json.dumps(meta, sort_keys=True)})
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def decode_state(data: bytes, *, kit_sha256: str | None, text_encoder: str | None) -> RegistryState:
    """Parse and verify a state file; ValueError says what is wrong. ``None`` skips that identity check."""
    from safetensors.torch import load as st_load

    if len(data) < len(_MAGIC) + 32 + 8 or not data.startswith(_MAGIC):
        raise ValueError("not a registry state file (bad header or truncated)")
    digest, payload = data[len(_MAGIC):len(_MAGIC) + 32], data[len(_MAGIC) + 32:]
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError("checksum mismatch (file is corrupt or truncated)")
    try:
        (header_len,) = struct.unpack("<Q", payload[:8])
        header = json.loads(payload[8:8 + header_len])
        meta = json.loads(header["__metadata__"]["state"])
        tensors = st_load(payload)
    except Exception as exc:
        raise ValueError(f"unreadable payload ({exc})") from None
    if meta.get("format") != STATE_FORMAT or meta.get("format_version") != STATE_FORMAT_VERSION:
        raise ValueError(f"format {meta.get('format')!r} v{meta.get('format_version')!r}, expected "
                         f"{STATE_FORMAT!r} v{STATE_FORMAT_VERSION}")
    if kit_sha256 is not None and meta.get("kit_sha256") != kit_sha256:
        raise ValueError(f"it belongs to another model kit (kit sha256 {str(meta.get('kit_sha256'))[:12]}…, "
                         f"this kit {kit_sha256[:12]}…)")
    if text_encoder is not None and meta.get("text_encoder") != text_encoder:
        raise ValueError(f"it was made with text encoder {meta.get('text_encoder')!r}, "
                         f"the encoder in use is {text_encoder!r}")
    try:
        categories = CategorySet.from_dicts(meta["categories"], version=int(meta["version"]),
                                            text_encoder=str(meta["text_encoder"]))
        state = RegistryState(categories=categories, next_id=int(meta["next_id"]),
                              removed_ids=tuple(int(i) for i in meta["removed_ids"]),
                              head_weight=tensors["head_weight"], head_bias=tensors["head_bias"],
                              synthetic_embeds=tensors["synthetic_embeds"],
                              synthetic_ids=tensors["synthetic_ids"],
                              added_text_embeds=tensors["added_text_embeds"], added_ids=tensors["added_ids"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"inconsistent content ({exc})") from None
    k = len(categories)
    if state.head_weight.ndim != 2 or state.head_weight.shape[0] != k + 1 or state.head_bias.shape != (k + 1,):
        raise ValueError(f"head shape {list(state.head_weight.shape)} / {list(state.head_bias.shape)} does "
                         f"not fit {k} categories + no-object")
    if state.synthetic_embeds.shape[0] != state.synthetic_ids.shape[0] or \
            state.added_text_embeds.shape[0] != state.added_ids.shape[0]:
        raise ValueError("embedding and id counts differ")
    if categories.ids and state.next_id <= max(categories.ids):
        raise ValueError(f"next_id {state.next_id} is not above the largest id in use")
    return state
