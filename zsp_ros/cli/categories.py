"""`zsp categories {list,add,remove} --state DIR [--kit KIT]`: manage a runtime category state.

``list`` reads the state (read-only; without --kit no kit check is made, and with no state it
lists the kit's categories). ``add`` and ``remove`` need the kit (text encoder, generator, bank)
and the state folder's write lock: they fail while a node holds the same folder.
"""
from __future__ import annotations

import argparse
import json
import sys

from zsp_ros.kit.category_set import CategorySet
from zsp_ros.kit.locate import resolve_kit
from zsp_ros.kit.model_kit import KitError, load_kit
from zsp_ros.runtime.category_requests import CategoryError
from zsp_ros.runtime.registry import build_registry
from zsp_ros.runtime.state_store import StateDirError, StateStore
from zsp_ros.utils.cpu_threads import add_threads_argument, apply_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="{list,add,remove}")
    for name, help_text in (("list", "print the categories"), ("add", "add categories by name"),
                            ("remove", "remove categories by name or id")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--state", required=True, help="registry state folder")
        p.add_argument("--kit", default=None, help="model kit directory (default: the embedded kit)")
        if name != "list":
            add_threads_argument(p)                 # the head refit runs in torch
        if name == "list":
            p.add_argument("--json", action="store_true", help="print JSON")
        elif name == "add":
            p.add_argument("names", nargs="+", help='names, each one argument: "purple star" "teal cone"')
            p.add_argument("--stuff", action="store_true", help="the new categories are stuff (default: things)")
        else:
            p.add_argument("names", nargs="*", help="names to remove")
            p.add_argument("--id", dest="ids", type=int, action="append", default=[], help="id to remove (repeatable)")


def _print(categories, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(categories.to_dict(), indent=2))
        return
    print(f"version {categories.version}, text encoder {categories.text_encoder}, {len(categories)} categories")
    for c in categories:
        print(f"{c.id:5d}  {'thing' if c.isthing else 'stuff'}  {c.origin:5s}  {c.name}")


def _list(args: argparse.Namespace) -> int:

    kit = None
    if args.kit is not None:
        kit = load_kit(args.kit)
    store = StateStore(args.state, kit_sha256=kit.sha256 if kit else None,
                       text_encoder=kit.text_encoder_id if kit else None, writable=False)
    outcome = store.load()
    if outcome.problem:
        print(f"zsp categories: warning: {outcome.problem}", file=sys.stderr)
    if outcome.state is not None:
        _print(outcome.state.categories, args.json)
        return 0
    if kit is None:
        try:
            kit = load_kit(resolve_kit(None))
        except KitError:
            print(f"zsp categories: no usable state in {args.state}; give --kit to list a kit's categories",
                  file=sys.stderr)
            return 2
    _print(CategorySet(kit.categories.categories, version=1, text_encoder=kit.text_encoder_id), args.json)
    return 0


def run(args: argparse.Namespace) -> int:

    try:
        if args.action == "list":
            return _list(args)
        apply_threads(args.threads)
        kit = load_kit(resolve_kit(args.kit))
        registry = build_registry(kit, state_dir=args.state)
    except (KitError, StateDirError) as exc:   # a locked, read-only or broken state_dir included
        print(f"zsp categories: error: {exc}", file=sys.stderr)
        return 2
    try:
        if registry.load_problem:
            print(f"zsp categories: warning: {registry.load_problem}", file=sys.stderr)
        if args.action == "add":
            added = registry.add(args.names, isthing=not args.stuff)
            print(f"added {', '.join(f'{c.name} (id {c.id})' for c in added)} in "
                  f"{registry.last_timings_ms['total']:.0f} ms; version {registry.version}")
            for report in registry.last_add_report:
                print(f"  {report.text()}")
        else:
            removed = registry.remove([*args.names, *args.ids])
            print(f"removed ids {', '.join(map(str, removed))}; version {registry.version}")
    except CategoryError as exc:
        print(f"zsp categories: {exc}", file=sys.stderr)
        return 2
    finally:
        registry.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="zsp categories")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
