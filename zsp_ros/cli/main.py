"""The `zsp` command: one entry point, one small module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int`` and is
imported only when that subcommand runs, so `zsp doctor` works without torch or rclpy.
The registry is a plain dict (no import-time registration).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("zsp_ros.cli.doctor", "report what is installed and what each missing piece disables"),
    "synth": ("zsp_ros.cli.synth", "generate the synthetic zero-shot world (COCO formats)"),
    "eval": ("zsp_ros.cli.evaluate", "PQ / mIoU / mAP of predictions against COCO-format ground truth"),
    "train": ("zsp_ros.cli.train", "train the segmenter, PADing stages or the oracle"),
    "bench": ("zsp_ros.cli.bench", "benchmarks that write JSON (synth, msda, zeroshot, runtime, node, latency)"),
    "segment": ("zsp_ros.cli.segment", "segment image files with a model kit"),
    "categories": ("zsp_ros.cli.categories", "list / add / remove categories of a runtime state"),
    "export": ("zsp_ros.cli.export", "export the network to ONNX"),
    "engine": ("zsp_ros.cli.engine", "build a TensorRT engine from ONNX"),
    "node": ("zsp_ros.node.main", "start the ROS 2 node (extra args go to --ros-args)"),
    "demo": ("zsp_ros.cli.demo", "offline end-to-end ROS 2 demo on the embedded kit"),
    "run": ("zsp_ros.cli.run", "segment every frame of a bag, image folder or video"),
    "embed": ("zsp_ros.cli.embed", "encode class names with a text encoder"),
    "data": ("zsp_ros.cli.data", "check a COCO data layout"),
    "kit": ("zsp_ros.cli.kit", "build a model kit from released checkpoints (from-release)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zsp", description="zsp_ros: universal zero-shot segmentation for ROS 2 (PADing).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = _top_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"zsp: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}",
                  file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("zsp_ros"):
            print(f"zsp {name}: not available in this version yet ({help_text}).", file=sys.stderr)
            return 3
        raise
    if name == "node":  # everything after `zsp node` belongs to rclpy
        return int(module.main(rest) or 0)
    parser = argparse.ArgumentParser(prog=f"zsp {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
