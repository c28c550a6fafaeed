"""The demo's one error type.

Contract: every part of `zsp demo` that fails for a reason the user should read raises
``DemoFailure(reason)``; `zsp_ros.demo.run.run` prints ``zsp demo: FAILED: <reason>`` and exits 1.
"""
from __future__ import annotations


class DemoFailure(RuntimeError):
    """A part of the demo failed; the message is the reason shown to the user."""
