#!/usr/bin/env bash
# One set-up for everyone (README commands, CI, developers): create or reuse the project
# venv, install the pinned dependencies, build the zsp_msgs interfaces into it, and install
# zsp_ros in editable mode. A stamp keyed by the content of everything that affects the
# result makes a re-run with nothing changed take well under a second.
#
#   tools/setup_env.sh            # set up (or confirm) .venv
#   ZSP_VENV=/path tools/setup_env.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSP_VENV:-$ROOT/.venv}"
PY="${ZSP_PYTHON:-python3.11}"
STAMP="$VENV/.zsp_setup_stamp"

log() { printf '[setup] %s\n' "$*" >&2; }

stamp_of_inputs() {
  # Everything whose change needs a re-run of this script.
  (cd "$ROOT" && cat requirements.lock setup.py package.xml tools/setup_env.sh \
     msg/CMakeLists.txt msg/package.xml msg/msg/*.msg msg/srv/*.srv) | sha256sum | cut -d' ' -f1
}

# WordNet (Debian's wordnet-base) feeds the phrasing rewrite's lexicon rule (zsp_ros/semantics/lexicon.py).
# Optional: without it that one rule is off. Installed here when this user may (root with apt-get).
if [[ -z "${ZSP_WORDNET_DIR:-}" && ! -f /usr/share/wordnet/index.noun ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    log "installing WordNet (apt-get install wordnet-base)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base >/dev/null; } \
      || log "warning: could not install wordnet-base: the phrasing lexicon rule stays off"
  else
    log "note: WordNet not installed (sudo apt-get install wordnet-base): the phrasing lexicon rule stays off"
  fi
fi

want="$(stamp_of_inputs)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
  exit 0
fi

command -v "$PY" >/dev/null || { log "error: $PY not found (Python 3.11 is required)"; exit 1; }
command -v cmake >/dev/null || { log "error: cmake not found (apt-get install cmake)"; exit 1; }

t0=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
V="$VENV"
log "installing pinned dependencies (requirements.lock)"
# pip's "Location ... is ignored" warnings come from this machine's local index mirrors: noise.
"$V/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.lock" 2>&1 \
  | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

# Fix 2 of ENVIRONMENT.md: the ROS wheels' exported CMake files name the wheel-build host's
# Python and numpy include folders; point them at this venv's.
py_inc="$("$V/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_inc="$("$V/bin/python" -c 'import numpy; print(numpy.get_include())')"
log "rewriting wheel CMake include paths -> $py_inc, $np_inc"
# (grep finds nothing on a re-run, when the rewrite is already done: not an error)
{ find "$V/share" -name '*.cmake' -print0 | xargs -0 grep -lE '/opt/python/cp[0-9]+' 2>/dev/null || true; } \
  | while read -r f; do
      sed -i -E \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+[^;\"]*/site-packages/numpy/_core/include#${np_inc}#g" \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python3\.[0-9]+#${py_inc}#g" "$f"
    done

log "building zsp_msgs into the venv"
BUILD="$V/.zsp_msgs_build"
rm -rf "$BUILD"
cmake -S "$ROOT/msg" -B "$BUILD" -DCMAKE_PREFIX_PATH="$V" -DCMAKE_INSTALL_PREFIX="$V" \
  -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF >"$BUILD.log" 2>&1 \
  && cmake --build "$BUILD" -j2 >>"$BUILD.log" 2>&1 \
  && cmake --install "$BUILD" >>"$BUILD.log" 2>&1 \
  || { log "error: zsp_msgs build failed; log: $BUILD.log"; tail -30 "$BUILD.log" >&2; exit 1; }

log "installing zsp_ros (editable)"
"$V/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT"

"$V/bin/python" -c "from zsp_msgs.msg import PanopticSegmentation; from zsp_msgs.srv import AddCategories" \
  || { log "error: zsp_msgs does not import after the build"; exit 1; }
echo "$want" > "$STAMP"
log "done in $(( $(date +%s) - t0 )) s: $V"
