"""The `zsp` entry point: dispatch, help, unknown commands."""
import subprocess
import sys

from zsp_ros.cli import main as cli_main


def test_help_lists_every_command(capsys):
    assert cli_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli_main.COMMANDS:
        assert name in out


def test_unknown_command_is_a_clear_error(capsys):
    assert cli_main.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_module_has_the_subcommand_interface():
    import importlib
    for name, (module_name, _) in cli_main.COMMANDS.items():
        module = importlib.import_module(module_name)
        if name == "node":
            assert callable(module.main)
        else:
            assert callable(module.add_arguments) and callable(module.run), name


def test_console_script_runs_doctor_help():
    exe = [sys.executable, "-m", "zsp_ros.cli.main", "doctor", "--help"]
    out = subprocess.run(exe, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--json" in out.stdout
