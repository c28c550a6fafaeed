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


class StateLockedError(RuntimeError):
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
        state_dir: the directory (created when missing).
        kit_sha256: identity of the kit the state belongs to (`ModelKit.sha256`); None skips the check
            (read-only listing without the kit).
        text_encoder: identifier of the text encoder in use (None skips the check, as above).
        writable: take the directory's write lock (released by `close` or process exit).
    """

    def __init__(self, state_dir: str | Path, *, kit_sha256: str | None, text_encoder: str | None,
                 writable: bool = True):
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE
        self.kit_sha256 = kit_sha256
        self.text_encoder = text_encoder
        self.writable = writable
        self._lock_fd: int | None = None
        if writable and (kit_sha256 is None or text_encoder is None):
            raise ValueError("a writable state store needs the kit sha256 and the text encoder identifier")
        if writable:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            for stale in self.dir.glob(f".{STATE_FILE}.*.tmp"):  # left by a killed writer
                stale.unlink(missing_ok=True)

    def _lock(self) -> None:
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateLockedError(f"state directory {self.dir} is in use by another writer "
                                       f"(pid {holder}); open it read-only or stop that process") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
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
        """Atomically replace the state file with ``state``."""
        if not self.writable or self._lock_fd is None:
            raise RuntimeError(f"state store {self.dir} was opened read-only (or closed); cannot save")
        atomic_write_bytes(self.path, encode_state(state, kit_sha256=str(self.kit_sha256)))

    # -------------------------------------------------------------- read
    def load(self) -> LoadOutcome:
        """Read the state. Absent: (None). Corrupt or foreign: (None, problem, moved_to) — set aside
        when this store is writable, reported only when read-only."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return LoadOutcome(state=None)
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
        os.replace(self.path, target)
        return target


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
