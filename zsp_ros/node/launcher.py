"""Start ROS programs (zsp_node, the synthetic camera) as child processes, for `zsp demo` and
`zsp bench node`; `ros2 launch` is the way on a robot.

Each child runs ``sys.executable -m MODULE ARGS`` (the venv's python: its bootstrap sets the ROS
wheels' library path) in its own process group, with stdout and stderr written to a log file.
`ChildProgram.stop` sends SIGINT (rclpy shuts down cleanly), then SIGTERM, then SIGKILL.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence


class ChildProgram:
    """One child process running a python module, its output in ``log_path``.

    Args:
        name: for messages.
        module: the module to run with ``python -m``.
        args: its command-line arguments (``--ros-args ...`` included).
        log_path: file receiving stdout and stderr.
        env_extra: environment variables added to this process's environment.
    """

    def __init__(self, *, name: str, module: str, args: Sequence[str], log_path: str | os.PathLike[str],
                 env_extra: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(env_extra or {})
        self._log = self.log_path.open("wb")
        self.argv = [sys.executable, "-u", "-m", module, *args]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        """Everything the child wrote so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, text: str, *, timeout: float) -> bool:
        """True once ``text`` appears in the log; False on timeout or when the child exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text():
                return True
            if not self.alive:
                return text in self.log_text()
            time.sleep(0.1)
        return False

    def memory_mb(self) -> dict[str, float]:
        """{"rss_mb": resident now, "peak_rss_mb": high-water mark} from /proc (Linux); {} if gone."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return {}
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        out = {}
        for key, name in (("VmRSS", "rss_mb"), ("VmHWM", "peak_rss_mb")):
            if key in fields:
                out[name] = round(int(fields[key].split()[0]) / 1024.0, 1)
        return out

    def stop(self, *, grace_s: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL, each after ``grace_s``; the exit code. Idempotent."""
        code = stop_process_group(self.proc, grace_s=grace_s)
        self._log.close()
        return code

    def __enter__(self) -> ChildProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ros_args(namespace: str, parameters: dict[str, object] | None = None) -> list[str]:
    """``--ros-args -r __ns:=NS -p name:=value ...`` (booleans as true/false)."""
    args = ["--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in (parameters or {}).items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        args += ["-p", f"{name}:={text}"]
    return args


def stop_process_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str], *, grace_s: float) -> int:
    """End a child started in its own session: SIGINT, then SIGTERM, then SIGKILL to its process
    group, each after ``grace_s`` seconds without exit. Returns the exit code. Idempotent."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)               # the child's own group: only this child
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()
