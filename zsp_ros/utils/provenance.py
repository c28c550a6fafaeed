"""Reproducibility helpers: seeding, machine/library description, atomic JSON writes.

Every training run and benchmark records `provenance()` next to its results.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import random
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

# module name -> distribution name (read from the installed metadata: importing open_clip or
# sentence_transformers just to ask costs seconds per command)
_LIBRARIES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "scipy": "scipy",
              "numba": "numba", "onnx": "onnx", "onnxruntime": "onnxruntime", "pycocotools": "pycocotools",
              "safetensors": "safetensors", "open_clip": "open_clip_torch",
              "sentence_transformers": "sentence-transformers", "rclpy": "rclpy"}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % (2**32))
    except ImportError:
        pass
    try:
        import torch
        torch.manual_seed(seed)
    except ImportError:
        pass


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory and GPU (if torch sees one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gb = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info: dict[str, Any] = {"hostname": platform.node(), "platform": platform.platform(),
                            "cpu": cpu, "cpu_count": os.cpu_count(), "memory_gb": mem_gb,
                            "python": sys.version.split()[0]}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def library_versions() -> dict[str, str]:
    """Versions of the libraries that can change results; absent ones are left out."""
    from importlib import metadata

    versions = {}
    for name, dist in _LIBRARIES.items():
        loaded = sys.modules.get(name)
        if loaded is not None and getattr(loaded, "__version__", None):   # e.g. torch's "+cu130" build tag
            versions[name] = str(loaded.__version__)
            continue
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if importlib.util.find_spec(name) is not None:      # importable without metadata (ROS wheels)
                versions[name] = "present"
    return versions


def git_revision() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(command: list[str] | None = None) -> dict[str, Any]:
    """Everything needed to tell which code, machine and libraries produced a result."""
    return {"command": command if command is not None else sys.argv, "git": git_revision(),
            "machine": machine_info(), "versions": library_versions()}


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old or the new file, never half.

    Temporary file in the same folder, fsync, rename, fsync of the folder. The file is created
    with mode 0666 less the process umask, as ``open()`` would (``tempfile.mkstemp`` would make
    it 0600, unreadable to the other users of a robot: kits, states and results are shared).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)        # the kernel applies the umask
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"{path.parent}: no free temporary name for {path.name} after 100 tries")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())
