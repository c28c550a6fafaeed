#!/usr/bin/env bash
# Write requirements.lock from a venv (default .venv). ROS wheels register an extra
# dist-info under their bare package name; the lock names each ROS wheel by its PyPI
# name (ros-*), which is what pip can install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
SP="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
{
  echo "# Pinned, complete dependency set of the project venv (Python 3.11, x86_64)."
  echo "# Regenerate: install requirements.in into a fresh venv, then tools/freeze_lock.sh."
  for d in "$SP"/*.dist-info; do
    base="$(basename "$d" .dist-info)"; wheel_name="${base%-*}"
    name="$(grep -m1 '^Name:' "$d/METADATA" | cut -d" " -f2 | tr -d "\r")"
    version="$(grep -m1 '^Version:' "$d/METADATA" | cut -d" " -f2 | tr -d "\r")"
    if [[ "$wheel_name" == ros_* ]]; then name="${wheel_name//_/-}"; fi
    case "$name" in pip|setuptools|wheel|zsp_ros|zsp-ros) continue;; esac
    echo "$name==$version"
  done | sort -f
} > "$ROOT/requirements.lock"
