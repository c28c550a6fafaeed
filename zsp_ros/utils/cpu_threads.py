"""How many CPU threads torch (and onnxruntime) may use: one rule for every command and the node.

``threads`` as users give it (a node parameter, ``--threads`` on the CLI): 0 means "automatic",
a positive number is taken as is. Automatic is `DEFAULT_THREADS` capped by the CPUs this process
may run on. The figure behind the default is in the README ("CPU threads"); change it there too.
"""
from __future__ import annotations

import argparse
import os

import torch

# Automatic thread count, chosen by measurement (issue 19; the table is in the README's
# "CPU threads"): 2-core AMD EPYC VM shared with other jobs (load average 6-8 throughout), torch backend,
# the embedded kit. 1 thread vs 2 (= torch's default here, one per core), e2e p50 per frame:
#   bench latency 128x192: no neighbour of ours 542 vs 5662 ms; one busy neighbour 452 vs 3559 ms
#   zsp segment, 640x480 frames (-> 128x192): 338 vs 5806 ms; busy neighbour 589 vs 1976 ms
#   bench latency 480x640: 2146 vs 7952 ms; busy neighbour 4337 vs 17725 ms
# Two threads were never faster: OpenMP workers spin-wait for a core someone else holds. A truly idle
# machine could not be had here; on one, 2 threads may gain a little, which --threads 2 gives.
DEFAULT_THREADS = 1

THREADS_HELP = ("CPU threads for torch / onnxruntime (0 = automatic: {default}, capped by the CPUs this process "
                "may use; more threads than idle cores makes every call far slower)")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """The thread count to use for a requested ``threads`` (None or 0 = automatic; < 0 is an error)."""
    if threads is None or int(threads) == 0:
        return max(1, min(DEFAULT_THREADS, available_cpus()))
    if int(threads) < 0:
        raise ValueError(f"threads must be >= 0 (0 = automatic), got {threads}")
    return int(threads)


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count from a requested ``threads``; returns the count set.

    Inter-op threads are left alone (torch allows setting them only once per process).
    """
    n = resolve_threads(threads)
    torch.set_num_threads(n)
    return n


def current_threads() -> int:
    """torch's intra-op thread count in this process now (what `apply_threads` last set, or torch's default)."""
    return int(torch.get_num_threads())


def _threads_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (0 = automatic), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (0 = automatic), got {value}")
    return value


def add_threads_argument(parser: argparse.ArgumentParser, *, default: int = 0) -> None:
    """``--threads N`` (0 = automatic) on a command's parser; pass ``args.threads`` to `apply_threads`."""
    shown = f"{DEFAULT_THREADS} thread{'s' if DEFAULT_THREADS != 1 else ''}"
    parser.add_argument("--threads", type=_threads_arg, default=default, metavar="N",
                        help=THREADS_HELP.format(default=shown) + f"; default {default}")
