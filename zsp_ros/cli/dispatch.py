"""Second-level dispatch for `zsp bench NAME` and `zsp train NAME`: plain dicts of modules.

Each target module defines ``add_arguments(parser)`` and ``run(args) -> int`` and is imported
only when chosen.
"""
from __future__ import annotations

import argparse
import importlib


def run_choice(prog: str, table: dict[str, tuple[str, str]], argv: list[str]) -> int:
    """Parse ``argv`` = [NAME, ...] against ``table`` and run the chosen module."""
    names = ", ".join(table)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} {{{names}}} [options]\n")
        for name, (_, help_text) in table.items():
            print(f"  {name:<22} {help_text}")
        return 0
    if argv[0] not in table:
        print(f"{prog}: unknown choice {argv[0]!r}; choose from {names}")
        return 2
    module_name, help_text = table[argv[0]]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"{prog} {argv[0]}", description=help_text)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv[1:])) or 0)
