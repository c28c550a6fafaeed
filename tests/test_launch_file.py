"""launch/zsp.launch.py, checked with small stand-ins for `launch` and `launch_ros`.

`ros2 launch` cannot run here (no launch wheels on PyPI), so the test injects recording stand-ins
for the modules the launch file imports (clearly named ``Recorded*``), calls
``generate_launch_description()``, resolves the launch-argument substitutions with their declared
defaults (or given values), and checks what a robot's `ros2 launch` would start: the node's
package/executable/name, its parameters (the installed config/zsp.yaml), its remaps, and the
lifecycle autostart (configure event, then activate once inactive, both under the autostart flag).
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import types
from pathlib import Path

import pytest
from test_colcon_install import colcon_build

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "zsp.launch.py"
SHARE = "/opt/share/zsp_ros"       # what the stand-in ament index answers


class Recorded:
    """A stand-in object that keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args}, {self.kwargs})"


def _stand_ins(share: str = SHARE) -> dict[str, types.ModuleType]:
    names = {
        "launch": {"LaunchDescription": "RecordedLaunchDescription"},
        "launch.actions": {"DeclareLaunchArgument": "RecordedDeclareLaunchArgument", "EmitEvent": "RecordedEmitEvent",
                           "RegisterEventHandler": "RecordedRegisterEventHandler"},
        "launch.conditions": {"IfCondition": "RecordedIfCondition"},
        "launch.substitutions": {"LaunchConfiguration": "RecordedLaunchConfiguration"},
        "launch_ros": {},
        "launch_ros.actions": {"LifecycleNode": "RecordedLifecycleNode"},
        "launch_ros.event_handlers": {"OnStateTransition": "RecordedOnStateTransition"},
        "launch_ros.events": {},
        "launch_ros.events.lifecycle": {"ChangeState": "RecordedChangeState"},
        "ament_index_python": {},
    }
    modules = {}
    for module_name, classes in names.items():
        module = types.ModuleType(module_name)
        module.__doc__ = "test stand-in (tests/test_launch_file.py)"
        for public, recorded in classes.items():
            setattr(module, public, type(recorded, (Recorded,), {}))
        modules[module_name] = module
    events = types.ModuleType("launch.events")
    events.matches_action = lambda action: ("matches_action", action)
    modules["launch.events"] = events
    packages = types.ModuleType("ament_index_python.packages")
    packages.get_package_share_directory = lambda name: {"zsp_ros": share}[name]
    modules["ament_index_python.packages"] = packages
    return modules


@pytest.fixture
def description(monkeypatch):
    for name, module in _stand_ins().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("zsp_launch_under_test", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _entities(description):
    (entities,) = description.args
    return entities


def _arguments(description) -> dict[str, str]:
    return {e.args[0]: e.kwargs["default_value"] for e in _entities(description)
            if type(e).__name__ == "RecordedDeclareLaunchArgument"}


def _resolve(value, given: dict[str, str]):
    """Evaluate a recorded substitution (LaunchConfiguration, list of parts, dict, tuple)."""
    if type(value).__name__ == "RecordedLaunchConfiguration":
        return given[value.args[0]]
    if isinstance(value, list):
        parts = [_resolve(v, given) for v in value]
        return "".join(parts) if all(isinstance(p, str) for p in parts) else parts
    if isinstance(value, tuple):
        return tuple(_resolve(v, given) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, given) for k, v in value.items()}
    return value


def _only(description, kind: str):
    found = [e for e in _entities(description) if type(e).__name__ == kind]
    assert len(found) == 1, f"expected one {kind}, found {found}"
    return found[0]


def test_node_executable_parameters_and_remaps(description):
    args = _arguments(description)
    assert args == {"kit": "", "namespace": "", "image": "/camera/image_raw",
                    "params_file": f"{SHARE}/config/zsp.yaml", "autostart": "true"}
    node = _only(description, "RecordedLifecycleNode")
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["name"]) == ("zsp_ros", "zsp_node", "zsp_node")
    assert _resolve(kw["namespace"], args) == ""
    assert _resolve(kw["parameters"], args) == [f"{SHARE}/config/zsp.yaml", {"kit": ""}]
    # only the image is remapped: with image_transport compressed the node subscribes to
    # <resolved image>/compressed itself, so the remap reaches both transports
    assert dict(_resolve(kw["remappings"], args)) == {"image": "/camera/image_raw"}
    given = {**args, "image": "/front/rgb", "kit": "/kits/mine", "namespace": "robot1"}
    assert dict(_resolve(kw["remappings"], given)) == {"image": "/front/rgb"}
    assert _resolve(kw["parameters"], given)[1] == {"kit": "/kits/mine"}
    assert _resolve(kw["namespace"], given) == "robot1"


def test_autostart_configures_then_activates_through_lifecycle_events(description):
    from lifecycle_msgs.msg import Transition

    node = _only(description, "RecordedLifecycleNode")
    configure = _only(description, "RecordedEmitEvent")
    event = configure.kwargs["event"]
    assert event.kwargs["transition_id"] == Transition.TRANSITION_CONFIGURE
    assert event.kwargs["lifecycle_node_matcher"] == ("matches_action", node)

    handler = _only(description, "RecordedRegisterEventHandler")
    (on_transition,) = handler.args
    assert on_transition.kwargs["target_lifecycle_node"] is node
    assert (on_transition.kwargs["start_state"], on_transition.kwargs["goal_state"]) == ("configuring", "inactive")
    (activate,) = on_transition.kwargs["entities"]
    assert activate.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_ACTIVATE
    assert activate.kwargs["event"].kwargs["lifecycle_node_matcher"] == ("matches_action", node)

    for action in (configure, handler):                   # both only when autostart is true
        condition = action.kwargs["condition"]
        assert type(condition).__name__ == "RecordedIfCondition"
        assert _resolve(condition.args[0], {"autostart": "true"}) == "true"
    entities = _entities(description)                      # the handler is registered before configure fires
    assert entities.index(handler) < entities.index(configure)


def test_installed_launch_file_names_installed_files(tmp_path, monkeypatch):
    """The launch file as colcon installs it (tests/test_colcon_install.py's build), with the ament index
    answering that install's share: its params file exists there, and its node's executable is where
    launch_ros looks for it, ``<prefix>/lib/<package>/<executable>``."""
    install_base = colcon_build(tmp_path / "ws")
    share = install_base / "share" / "zsp_ros"
    for name, module in _stand_ins(share=str(share)).items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("zsp_launch_installed", share / "launch" / "zsp.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    params_file = Path(_arguments(description)["params_file"])
    assert params_file == share / "config" / "zsp.yaml" and params_file.is_file()
    kw = _only(description, "RecordedLifecycleNode").kwargs
    executable = install_base / "lib" / kw["package"] / kw["executable"]
    assert executable.is_file() and os.access(executable, os.X_OK), executable


def test_launch_file_holds_no_logic():
    text = LAUNCH_FILE.read_text()
    assert not re.search(r"^\s*(if|for|while)\b", text, re.M), "launch file holds logic"
