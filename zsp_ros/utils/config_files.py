"""Where the package's config/ files are: the source checkout, or the installed package share.

A checkout has them at ``<repo>/config``; a pip install at ``<sys.prefix>/share/zsp_ros/config``; a colcon
workspace at ``<install>/zsp_ros/share/zsp_ros/config``, which only the ament index knows (a colcon
install's Python files live under lib/, and sys.prefix is the interpreter's, not the workspace's).
"""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "zsp_ros"


def config_candidates(*parts: str) -> list[Path]:
    """The places ``config/<parts...>`` may be, in the order they are tried."""
    candidates = [Path(__file__).resolve().parents[2] / "config" / Path(*parts),
                  Path(sys.prefix) / "share" / PACKAGE / "config" / Path(*parts)]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory(PACKAGE)) / "config" / Path(*parts))
    except Exception:       # no ament index here, or zsp_ros not in it: the other places still count
        pass
    return candidates


def find_config(*parts: str, directory: bool = False) -> Path | None:
    """The first existing ``config/<parts...>`` (a file, or a folder with ``directory``), else None."""
    return next((p for p in config_candidates(*parts) if (p.is_dir() if directory else p.is_file())), None)


def require_config(*parts: str, directory: bool = False) -> Path:
    """`find_config`, or FileNotFoundError naming every place it looked."""
    found = find_config(*parts, directory=directory)
    if found is None:
        raise FileNotFoundError(f"config/{'/'.join(parts)} not found; looked at "
                                f"{', '.join(map(str, config_candidates(*parts)))}")
    return found
