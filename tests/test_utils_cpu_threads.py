"""utils.cpu_threads: 0 = automatic (DEFAULT_THREADS capped by the CPUs), positive as given, negative refused."""
from __future__ import annotations

import argparse

import pytest
import torch

from zsp_ros.utils import cpu_threads
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads, resolve_threads


def test_resolve_rules(monkeypatch):
    monkeypatch.setattr(cpu_threads, "available_cpus", lambda: 8)
    monkeypatch.setattr(cpu_threads, "DEFAULT_THREADS", 2)
    assert resolve_threads(None) == resolve_threads(0) == 2 and resolve_threads(5) == 5
    monkeypatch.setattr(cpu_threads, "available_cpus", lambda: 1)
    assert resolve_threads(0) == 1 and resolve_threads(3) == 3               # asked for: taken as is
    with pytest.raises(ValueError, match="threads must be >= 0"):
        resolve_threads(-1)


def test_apply_sets_torch_and_the_argument_parses():
    before = torch.get_num_threads()
    try:
        assert apply_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    parser = argparse.ArgumentParser()
    add_threads_argument(parser)
    assert parser.parse_args([]).threads == 0 and parser.parse_args(["--threads", "3"]).threads == 3
    for bad in ("-1", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--threads", bad])
