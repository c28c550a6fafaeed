"""What colcon does with this repository on a robot, reproduced without colcon (not installable here).

1. Discovery: colcon (colcon-recursive-crawl) and rosdep (catkin_pkg) walk the source folder, follow
   links, and stop descending at the first package.xml, so msg/ (zsp_msgs) inside the clone is never
   found on its own. README "On a robot" links it next to the clone (``ln -s zsp_ros/msg src/zsp_msgs``);
   the test walks such a workspace with catkin_pkg's own crawl (the one rosdep uses).
2. Build: colcon-ros builds an ``ament_python`` package with colcon-core's PythonBuildTask; the test
   runs the same command line (colcon-core colcon_core/task/python/build.py, non-symlink install): a
   ``sitecustomize`` that points ``sys.prefix`` at the install base, then ``setup.py egg_info build
   install --record ... --install-scripts <setup.cfg [install] install_scripts>
   --single-version-externally-managed install_data``.
3. The installed tree: lib/zsp_ros/{zsp_node,zsp}, share/zsp_ros/{package.xml,launch,config}, the ament
   index marker, the embedded kit, no stray top-level packages; the installed ``zsp_node`` started with
   the environment ``install/setup.bash`` gives reads its defaults from the installed share, and, as a
   real ROS process, activates and answers ``add_categories`` (the README's service call).
4. package.xml declares every third-party module the package imports, or requirements-robot.txt does.
"""
from __future__ import annotations

import ast
import configparser
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "zsp_ros"
# colcon-core's _PYTHON_CMD: the interpreter with two deprecation warnings silenced
PYTHON_CMD = [sys.executable, "-W", "ignore:setup.py install is deprecated",
              "-W", "ignore:easy_install command is deprecated"]


# ------------------------------------------------------------------ the colcon-style build (once per module)

def _install_scripts_option(path: Path) -> str | None:
    """colcon-core's ``_get_install_scripts``: [install] install-scripts (or install_scripts) of setup.cfg."""
    parser = configparser.ConfigParser()
    parser.optionxform = str            # type: ignore[assignment,method-assign]
    if not (path / "setup.cfg").exists():
        return None
    parser.read(path / "setup.cfg", encoding="utf-8")
    return parser.get("install", "install-scripts", fallback=None) or parser.get("install", "install_scripts",
                                                                                  fallback=None)


def _python_lib(install_base: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(install_base)}))


def _setup_bash_env(install_base: Path) -> dict[str, str]:
    """What ``source install/setup.bash`` adds for this package (ament_prefix_path and pythonpath hooks)."""
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in (str(install_base), env.get("AMENT_PREFIX_PATH")) if p)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_python_lib(install_base)), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def colcon_build(ws: Path) -> Path:
    """``colcon build --packages-select zsp_ros`` in workspace ``ws`` as colcon-core + colcon-ros run it
    (non-symlink install); returns install/zsp_ros."""
    build_base, install_base = ws / "build" / PACKAGE, ws / "install" / PACKAGE
    prefix_override = build_base / "prefix_override"
    prefix_override.mkdir(parents=True)
    (prefix_override / "sitecustomize.py").write_text(     # colcon-core template sitecustomize.py.em
        f"import sys\nif sys.prefix == {sys.prefix!r}:\n    sys.real_prefix = sys.prefix\n"
        f"    sys.prefix = sys.exec_prefix = {str(install_base)!r}\n")
    python_lib = _python_lib(install_base)
    python_lib.mkdir(parents=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(prefix_override), str(python_lib), env.get("PYTHONPATH", "")])
    cmd = [*PYTHON_CMD, "setup.py", "egg_info", "--egg-base", os.path.relpath(build_base, REPO),
           "build", "--build-base", str(build_base / "build"),
           "install", "--record", str(build_base / "install.log")]
    scripts = _install_scripts_option(REPO)
    if scripts:
        cmd += ["--install-scripts", scripts]
    cmd += ["--single-version-externally-managed", "install_data"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return install_base


@pytest.fixture(scope="module")
def install_base(tmp_path_factory) -> Path:
    return colcon_build(tmp_path_factory.mktemp("ws"))


# ------------------------------------------------------------------ 1. discovery


def _workspace(tmp_path: Path, *, link_msgs: bool) -> Path:
    src = tmp_path / "ws" / "src"
    src.mkdir(parents=True)
    (src / PACKAGE).symlink_to(REPO, target_is_directory=True)            # git clone ... src/zsp_ros
    if link_msgs:
        (src / "zsp_msgs").symlink_to(Path(PACKAGE) / "msg", target_is_directory=True)   # the README's ln -s
    return src


def _found(src: Path) -> dict[str, str]:
    from catkin_pkg.packages import find_packages
    return {pkg.name: pkg.get_build_type() for pkg in find_packages(str(src)).values()}


def test_the_crawl_stops_at_the_clone_without_the_link(tmp_path):
    assert _found(_workspace(tmp_path, link_msgs=False)) == {"zsp_ros": "ament_python"}


def test_with_the_link_a_plain_crawl_finds_both_packages(tmp_path):
    src = _workspace(tmp_path, link_msgs=True)
    assert _found(src) == {"zsp_ros": "ament_python", "zsp_msgs": "ament_cmake"}
    assert (src / "zsp_msgs" / "CMakeLists.txt").resolve() == REPO / "msg" / "CMakeLists.txt"


def test_package_manifests_are_valid_and_zsp_msgs_is_a_workspace_package(tmp_path):
    from catkin_pkg.package import parse_package
    ros, msgs = parse_package(str(REPO / "package.xml")), parse_package(str(REPO / "msg" / "package.xml"))
    ros.validate()
    msgs.validate()
    assert msgs.name == "zsp_msgs" and "zsp_msgs" in {d.name for d in ros.exec_depends}
    assert ros.version == re.search(r'version="([^"]+)"', (REPO / "setup.py").read_text()).group(1)


# ------------------------------------------------------------------ 2-3. build and installed tree

def test_setup_cfg_puts_scripts_in_lib_zsp_ros():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    assert _install_scripts_option(REPO) == "$base/lib/zsp_ros"
    assert parser.get("develop", "script_dir") == "$base/lib/zsp_ros"         # colcon build --symlink-install


def test_installed_tree_is_what_ros2_run_and_launch_look_for(install_base):
    for script in ("zsp_node", "zsp"):
        path = install_base / "lib" / PACKAGE / script
        assert path.is_file() and os.access(path, os.X_OK), path
        assert path.read_text().splitlines()[0] == f"#!{sys.executable}"
    assert not (install_base / "bin").exists()            # scripts in bin/ are invisible to ros2 run
    share = install_base / "share" / PACKAGE
    assert (share / "package.xml").read_bytes() == (REPO / "package.xml").read_bytes()
    assert (share / "launch" / "zsp.launch.py").read_bytes() == (REPO / "launch" / "zsp.launch.py").read_bytes()
    assert (share / "config" / "zsp.yaml").is_file()
    for name in ("phrasing.yaml", "colours/xkcd.tsv", "coco_splits/zsp_panoptic_119_14.json"):
        assert (share / "config" / name).read_bytes() == (REPO / "config" / name).read_bytes(), name
    assert (install_base / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    lib = _python_lib(install_base)
    assert (lib / PACKAGE / "kits" / "default" / "manifest.json").is_file()     # the embedded kit
    top_level = {p.name for p in lib.iterdir() if not p.name.endswith(".egg-info")}
    assert top_level == {PACKAGE}, top_level               # no stray training/, engines/, experiments/, tests/
    record = (install_base.parents[1] / "build" / PACKAGE / "install.log").read_text().split()
    assert record and all(Path(f).is_relative_to(install_base) for f in record)


def test_installed_zsp_node_reads_the_installed_share(install_base, tmp_path):
    env = _setup_bash_env(install_base)
    where = subprocess.run([sys.executable, "-c", "import zsp_ros; print(zsp_ros.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(install_base), where.stdout + where.stderr
    out = subprocess.run([str(install_base / "lib" / PACKAGE / "zsp_node"), "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"defaults from {install_base / 'share' / PACKAGE / 'config' / 'zsp.yaml'}" in out.stdout
    # the add path's config files are found in the installed share (through the ament index)
    found = subprocess.run([sys.executable, "-c", "from zsp_ros.semantics.phrasing_config import default_config_path; from "
                            "zsp_ros.semantics.colour_words import survey_table_path; "
                            "print(default_config_path()); print(survey_table_path())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    config = install_base / "share" / PACKAGE / "config"
    assert found.stdout.split() == [str(config / "phrasing.yaml"), str(config / "colours" / "xkcd.tsv")], \
        found.stdout + found.stderr


def test_installed_zsp_node_activates_and_adds_a_category(install_base, tmp_path):
    """The README's last two steps on the installed executable: run the node, add a category by name."""
    from node_fixtures import make_attribute_kit, node_args
    from ros_helpers import ChildProcess, child_env, unique_namespace

    from zsp_ros.data.synth_world import DEFAULT_UNSEEN
    from zsp_ros.node.client import ZspClient

    kit = make_attribute_kit(tmp_path / "kit")
    namespace = unique_namespace("colcon_install")
    env = child_env({k: v for k, v in _setup_bash_env(install_base).items() if k in ("AMENT_PREFIX_PATH", "PYTHONPATH")})
    argv = [str(install_base / "lib" / PACKAGE / "zsp_node"),
            *node_args(namespace, kit=str(kit), autostart=True)]
    with ChildProcess(name="installed zsp_node", argv=argv, env=env) as node:
        with ZspClient(namespace=namespace) as client:
            deadline = time.monotonic() + 180.0
            while client.get_state(timeout=120.0) != "active":
                if node.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the installed zsp_node did not become active:\n{node.transcript}")
                time.sleep(0.5)
            name = sorted(DEFAULT_UNSEEN)[0]
            reply = client.add_categories([name], timeout=120)
            assert reply.success, reply.message
            listed = client.list_categories().category_set.categories
            assert name in [c.name for c in listed]


# ------------------------------------------------------------------ 4. declared dependencies

# third-party module -> where a robot gets it: a package.xml key, or "pip:<name>" in requirements-robot.txt
MODULE_SOURCES = {
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "lifecycle_msgs": "lifecycle_msgs",
    "builtin_interfaces": "builtin_interfaces", "std_msgs": "std_msgs", "sensor_msgs": "sensor_msgs", "diagnostic_msgs": "diagnostic_msgs",
    "zsp_msgs": "zsp_msgs", "ament_index_python": "ament_index_python", "launch": "launch",
    "launch_ros": "launch_ros", "numpy": "python3-numpy", "PIL": "python3-pil", "yaml": "python3-yaml",
    "numba": "python3-numba", "scipy": "python3-scipy", "tqdm": "python3-tqdm", "imageio": "python3-imageio",
    "torch": "pip:torch", "safetensors": "pip:safetensors", "sentence_transformers": "pip:sentence-transformers",
    "onnxruntime": "pip:onnxruntime", "onnx": "pip:onnx", "open_clip": "pip:open-clip-torch",
    "rosbags": "pip:rosbags", "pycocotools": "pip:pycocotools",
    "tensorrt": None,        # JetPack / NVIDIA's wheels only (docs/DEPLOYMENT.md), imported by its backend
}


def _imported_modules() -> set[str]:
    names: set[str] = set()
    for path in [*(REPO / PACKAGE).rglob("*.py"), *(REPO / "launch").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("zsp_ros", "__future__")}


def test_every_imported_module_is_declared_for_a_robot():
    from catkin_pkg.package import parse_package
    declared = {d.name for d in parse_package(str(REPO / "package.xml")).exec_depends}
    requirements = (REPO / "requirements-robot.txt").read_text()
    # requirement lines, and the optional ones commented out as "# name   # why"; not prose comments
    pip_named = {m.group(1).lower() for m in re.finditer(
        r"^(?:#[ \t]*)?([A-Za-z0-9][A-Za-z0-9._-]*)[ \t]*(?:[<>=!~][^#\n]*)?(?:#.*)?$", requirements, re.M)}
    unknown = _imported_modules() - set(MODULE_SOURCES)
    assert not unknown, f"imported but not mapped to a rosdep key or pip requirement: {sorted(unknown)}"
    for module, source in MODULE_SOURCES.items():
        if source is None:
            continue
        if source.startswith("pip:"):
            assert source[4:] in pip_named, f"{module}: {source[4:]} missing from requirements-robot.txt"
        else:
            assert source in declared, f"{module}: <exec_depend>{source}</exec_depend> missing from package.xml"
    assert "std_srvs" not in declared or "std_srvs" in _imported_modules()
    assert not {"rclpy_lifecycle", "python3-torch-pip", "python3-safetensors-pip"} & declared   # not rosdep keys
