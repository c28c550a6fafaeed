"""zsp_node's parameters: the code's spec against config/zsp.yaml (the only home of defaults),
validators refusing bad values with reasons, and the declared ROS parameters of a real node."""
from __future__ import annotations

import math

import pytest
import yaml

from zsp_ros.node import parameters as params

CONFIG = params.default_config_path()


def test_config_file_is_the_repository_one_and_matches_the_spec():
    assert CONFIG == params.Path(__file__).resolve().parents[1] / "config" / "zsp.yaml"
    document = yaml.safe_load(CONFIG.read_text())
    section = params.node_section(document, source=str(CONFIG))
    assert list(section) == [p.name for p in params.PARAMETERS]      # same names, same order
    defaults = params.load_defaults()
    for spec in params.PARAMETERS:
        value = defaults[spec.name]
        assert type(value) is spec.type, (spec.name, value)
        assert params.check_value(spec.name, value) is None
        assert spec.description.endswith(".") and len(spec.description) > 20
        assert spec.applies in params.APPLIES and spec.constraints


def test_key_matches_any_namespace_in_rcl_terms():
    (key,) = yaml.safe_load(CONFIG.read_text())
    assert key == "/**/zsp_node"


@pytest.mark.parametrize("name, value, fragment", [
    ("backend", "tensorflow", "unknown backend 'tensorflow'"),
    ("device", "gpu", "'cpu', 'cuda' or 'cuda:N'"),
    ("device", "cuda:x", "'cpu', 'cuda' or 'cuda:N'"),
    ("precision", "int8", "one of fp32, fp16"),
    ("input_reliability", "best-effort", "one of best_effort, reliable"),
    ("object_mask_threshold", 1.5, "[0, 1]"),
    ("overlap_threshold", -0.1, "-1 (the kit's value) or lie in [0, 1]"),
    ("input_short_side", 16, "[32, 8192]"),
    ("input_max_long_side", -1, "[32, 8192]"),
    ("max_rate_hz", -2.0, "no cap"),
    ("max_rate_hz", math.inf, "no cap"),
    ("diagnostics_period_s", 0.0, "[0.05, 3600]"),
    ("kit", " /kits/a", "whitespace"),
    ("state_dir", "a\x00b", "NUL"),
    ("publish_overlay", "yes", "must be a bool"),
    ("input_short_side", 64.0, "must be a int"),
    ("object_mask_threshold", True, "must be a float"),
    ("no_such_parameter", 1, "not a parameter"),
])
def test_bad_values_are_refused_with_a_reason(name, value, fragment):
    problem = params.check_value(name, value)
    assert problem is not None and problem.startswith(f"{name}: ") and fragment in problem, problem


def test_good_values_pass():
    for name, value in [("device", "cuda:1"), ("max_rate_hz", 15), ("input_short_side", 0),
                        ("input_short_side", 480), ("kit", ""), ("object_mask_threshold", 0.0),
                        ("object_mask_threshold", -1.0), ("overlap_threshold", -1.0)]:
        assert params.check_value(name, value) is None, name


def _write(tmp_path, change):
    document = yaml.safe_load(CONFIG.read_text())
    change(document["/**/zsp_node"]["ros__parameters"])
    path = tmp_path / "zsp.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("change, fragment", [
    (lambda p: p.pop("backend"), "backend: missing"),
    (lambda p: p.update(colour="red"), "unknown parameter(s) ['colour']"),
    (lambda p: p.update(device="tpu"), "device: must be"),
    (lambda p: p.update(max_rate_hz="fast"), "max_rate_hz: must be a float"),
])
def test_bad_config_files_are_refused_naming_the_file(tmp_path, change, fragment):
    path = _write(tmp_path, change)
    with pytest.raises(ValueError) as info:
        params.load_defaults(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_config_without_the_node_entry_is_refused(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text("other_node:\n  ros__parameters: {a: 1}\n")
    with pytest.raises(ValueError, match="exactly one entry for zsp_node"):
        params.load_defaults(path)


def test_resolve_kit():
    from zsp_ros.kit.locate import resolve_kit

    assert resolve_kit("").parts[-3:] == ("zsp_ros", "kits", "default") == resolve_kit(None).parts[-3:]
    assert str(resolve_kit("/data/kit")) == "/data/kit"


@pytest.fixture
def ros_context():
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


def test_real_node_declares_every_parameter_with_descriptor_and_refuses_bad_changes(ros_context, tmp_path):
    from rcl_interfaces.msg import ParameterType
    from rclpy.parameter import Parameter

    from zsp_ros.node.zsp_node import ZspNode

    override = _write(tmp_path, lambda p: p.update(max_rate_hz=7.5, device="cuda:0"))
    node = ZspNode(context=ros_context, namespace="/robot/front",
                   cli_args=["--ros-args", "--params-file", str(override)])
    try:
        defaults = params.load_defaults()
        for spec in params.PARAMETERS:
            descriptor = node.describe_parameter(spec.name)
            assert descriptor.description.startswith(spec.description)
            assert descriptor.type == {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                                       float: ParameterType.PARAMETER_DOUBLE,
                                       str: ParameterType.PARAMETER_STRING}[spec.type]
            want = {"max_rate_hz": 7.5, "device": "cuda:0"}.get(spec.name, defaults[spec.name])
            assert node.get_parameter(spec.name).value == want, spec.name   # the file applies in a namespace
        assert node.describe_parameter("autostart").read_only

        result = node.set_parameters([Parameter("device", value="quantum")])[0]
        assert not result.successful and "device: must be 'cpu', 'cuda' or 'cuda:N'" in result.reason
        result = node.set_parameters([Parameter("backend", value="nope")])[0]
        assert not result.successful and "unknown backend 'nope'" in result.reason
        assert node.set_parameters([Parameter("max_rate_hz", value=2.0)])[0].successful
        assert node.set_parameters([Parameter("device", value="cpu")])[0].successful   # not configured yet
        assert node.get_parameter("device").value == "cpu"
        assert node.lifecycle_state() == "unconfigured"
    finally:
        node.destroy_node()


def test_configure_refuses_bad_values_without_raising(ros_context, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn

    from zsp_ros.node.zsp_node import ZspNode

    node = ZspNode(context=ros_context, defaults={**params.load_defaults(), "kit": str(tmp_path / "missing")})
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.lifecycle_state() == "unconfigured"
    finally:
        node.destroy_node()


@pytest.mark.parametrize("override, reason", [
    ("max_rate_hz:=fast", "expecting type 'DOUBLE'"),
    ("max_rate_hz:=2000.0", "out of range"),
])
def test_zsp_node_refuses_bad_overrides_at_start_with_the_reason(override, reason):
    from ros_helpers import spawn_python, unique_namespace

    source = "import sys\nfrom zsp_ros.cli.main import main\nsys.exit(main(['node', *sys.argv[1:]]))\n"
    with spawn_python(name="zsp node", source=source,
                      args=["--ros-args", "-r", f"__ns:={unique_namespace()}", "-p", override]) as child:
        assert child.wait_exit(timeout=60) == 1
        assert "zsp_node: cannot start:" in child.transcript and reason in child.transcript, child.transcript


def test_autostart_with_a_bad_value_exits_with_the_reason():
    from ros_helpers import spawn_python, unique_namespace

    source = "import sys\nfrom zsp_ros.node.main import main\nsys.exit(main(sys.argv[1:]))\n"
    with spawn_python(name="zsp_node", source=source,
                      args=["--ros-args", "-r", f"__ns:={unique_namespace()}", "-p", "device:=tpu",
                            "-p", "autostart:=true"]) as child:
        assert child.wait_exit(timeout=60) == 1
        assert "configure refused: device: must be 'cpu', 'cuda' or 'cuda:N'; got 'tpu'" in child.transcript
        assert "autostart failed" in child.transcript


def test_help_lists_every_parameter_with_its_default(capsys):
    from zsp_ros.node.main import main

    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    defaults = params.load_defaults()
    for spec in params.PARAMETERS:
        assert f"  {spec.name} = {defaults[spec.name]!r}" in text and spec.description in text


def test_minus_one_means_the_kits_threshold():
    from zsp_ros.node.zsp_node import _threshold_or_kit

    assert _threshold_or_kit(-1.0) is None and _threshold_or_kit(0.0) == 0.0 and _threshold_or_kit(0.3) == 0.3


def test_numbers_of_the_other_kind_are_taken_where_exact():
    assert params.coerce("max_rate_hz", 5) == 5.0 and type(params.coerce("max_rate_hz", 5)) is float
    assert params.coerce("input_short_side", 480.0) == 480 and type(params.coerce("input_short_side", 480.0)) is int
    for name, value in (("input_short_side", 480.5), ("input_short_side", math.inf), ("max_rate_hz", "5"),
                        ("max_rate_hz", True), ("publish_overlay", 1), ("no_such_parameter", 1)):
        assert params.coerce(name, value) is value, (name, value)
    assert params.coerce("max_rate_hz", 2**60 + 1) == 2**60 + 1           # not exact as a double: unchanged


def test_input_limit_defaults_are_the_input_limits_modules(tmp_path):
    from zsp_ros.node.input_limits import DEFAULT_LIMITS

    assert params.input_limits(params.load_defaults()) == DEFAULT_LIMITS
    for name in ("max_input_pixels", "max_compressed_bytes", "max_raw_bytes", "max_jpeg_scans"):
        assert params.check_value(name, 0) is not None and params.check_value(name, 1) is None
    assert "max_text_chunk_bytes" in (params.check_value("max_text_chunk_bytes", -1) or "")


def test_real_node_takes_integers_for_doubles_at_start_and_at_runtime(ros_context):
    from rclpy.parameter import Parameter

    from zsp_ros.node.zsp_node import ZspNode

    node = ZspNode(context=ros_context, cli_args=["--ros-args", "-p", "max_rate_hz:=5", "-p", "input_short_side:=480.0",
                                                  "-p", "max_input_pixels:=1000"])
    try:
        assert node.get_parameter("max_rate_hz").value == 5.0 and type(node.get_parameter("max_rate_hz").value) is float
        assert node.get_parameter("input_short_side").value == 480
        assert node._limits.max_pixels == 1000                                # the limits follow the parameters
        assert node.set_parameters([Parameter("stall_warn_s", value=2)])[0].successful
        assert node.get_parameter("stall_warn_s").value == 2.0
        assert node.set_parameters([Parameter("max_input_pixels", value=4096.0)])[0].successful
        assert node._limits.max_pixels == 4096
        refused = node.set_parameters([Parameter("input_short_side", value=64.5)])[0]
        assert not refused.successful
    finally:
        node.destroy_node()
