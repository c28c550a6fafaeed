"""Helpers for tests that start real rclpy processes (separate OS processes, not threads).

- ``spawn_python(...)`` starts the venv's own python (``sys.executable``: its bootstrap sets
  the ROS wheels' LD_LIBRARY_PATH) with this session's environment, so children inherit the
  ``ROS_DOMAIN_ID`` and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` set by tests/conftest.py.
- ``ChildProcess.wait_for_line(prefix, timeout=...)`` reads the child's merged stdout/stderr
  line by line (a reader thread, so a full pipe never blocks the child) and fails with the
  child's whole transcript when the line does not come in time or the child dies.
- ``ChildProcess.stop()`` (also on leaving a ``with`` block) ends the child: SIGINT (rclpy
  shuts down cleanly), then SIGTERM, then SIGKILL, each after a grace period.

Children should print one line per protocol event (``READY``, ``RESULT {...}``) with
``flush=True`` and have their own deadline, so that nothing outlives a crashed test run.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Sequence

from zsp_ros.node.launcher import stop_process_group

# Discovery takes ~0.1 s on an idle machine but several seconds on a loaded 2-core one.
DEFAULT_TIMEOUT_S = 60.0


class ChildProcess:
    """A running python child whose output lines are collected as they arrive."""

    def __init__(self, *, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = list(argv)
        self._lines: list[str] = []
        self._cursor = 0                       # lines before this were consumed by wait_for_line
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            self.argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"reader-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def transcript(self) -> str:
        """Everything the child printed so far (stdout and stderr, merged)."""
        with self._cond:
            return "\n".join(self._lines)

    def lines_starting_with(self, prefix: str) -> list[str]:
        """All lines so far that start with ``prefix``, with the prefix stripped."""
        with self._cond:
            return [ln[len(prefix):].strip() for ln in self._lines if ln.startswith(prefix)]

    def _fail(self, why: str) -> AssertionError:
        if self._eof:                          # output ended: let the exit code settle
            try:
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
        return AssertionError(
            f"{self.name}: {why} (exit code {self.proc.poll()})\n--- {self.name} output ---\n"
            f"{self.transcript}\n--- end of {self.name} output ---")

    def wait_for_line(self, prefix: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> str:
        """Wait for the next unread line starting with ``prefix``; return the rest of it.

        Lines before the match are skipped (they stay in the transcript). Raises
        AssertionError with the transcript on timeout or when the child's output ends.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(self._cursor, len(self._lines)):
                    if self._lines[i].startswith(prefix):
                        self._cursor = i + 1
                        return self._lines[i][len(prefix):].strip()
                self._cursor = len(self._lines)
                if self._eof:
                    raise self._fail(f"exited before printing a line starting with {prefix!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._fail(f"no line starting with {prefix!r} within {timeout:.0f} s")
                self._cond.wait(timeout=min(left, 0.5))

    def send_line(self, text: str) -> None:
        """Write one line to the child's stdin (ignored if the child has already gone)."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def wait_exit(self, *, timeout: float = DEFAULT_TIMEOUT_S) -> int:
        """Wait for the child to exit by itself; AssertionError with the transcript if not."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"did not exit within {timeout:.0f} s") from None
        self._reader.join(timeout=5.0)
        return code

    def stop(self, *, grace_s: float = 5.0) -> int:
        """End the child: SIGINT, then SIGTERM, then SIGKILL; close the pipes. Idempotent."""
        code = stop_process_group(self.proc, grace_s=grace_s)
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        self._reader.join(timeout=5.0)
        return code

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a ROS child; refuses to run without ROS_DOMAIN_ID.

    tests/conftest.py sets ROS_DOMAIN_ID per session; without it the children would share
    domain 0 with anything else on the machine.
    """
    if "ROS_DOMAIN_ID" not in os.environ:
        raise RuntimeError("ROS_DOMAIN_ID is not set: run the tests through pytest "
                           "(tests/conftest.py sets a per-session domain)")
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.update(extra or {})
    return env


def spawn_python(*, name: str, source: str | None = None, script: Path | None = None,
                 args: Sequence[str] = (), env_extra: dict[str, str] | None = None) -> ChildProcess:
    """Start ``sys.executable`` on ``source`` (a program text) or ``script`` (a file).

    ``args`` become the child's ``sys.argv[1:]`` (after the program). Use as a context
    manager, or call ``stop()`` in a ``finally``.
    """
    if (source is None) == (script is None):
        raise ValueError("give exactly one of source= and script=")
    program = ["-c", source] if source is not None else [str(script)]
    return ChildProcess(name=name, argv=[sys.executable, "-u", *program, *args],
                        env=child_env(env_extra))


def unique_namespace(prefix: str = "zsp_test") -> str:
    """A ROS namespace no other test run uses (guards against a shared ROS_DOMAIN_ID)."""
    return f"/{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
