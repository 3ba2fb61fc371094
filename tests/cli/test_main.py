"""The root command: global options anywhere, the error boundary, output contract."""

import subprocess
import sys

from tests.helpers import invoke, one_line_error


def test_version():
    assert invoke(["--version"]).stdout.startswith("dbops ")


def test_global_options_are_accepted_after_the_subcommand(monkeypatch):
    from dbops.settings import write_profile

    write_profile("p1", {"aws_region": "eu-central-1"})
    rows = invoke(["config", "show", "-o", "json", "--profile", "p1", "--region=ap-east-1"]).json
    by_name = {r["name"]: r for r in rows}
    assert by_name["profile"]["value"] == "p1"
    assert by_name["aws_region"] == {
        "name": "aws_region",
        "value": "ap-east-1",
        "source": "flag",
        "secret": False,
    }


def test_global_option_without_value_is_a_usage_error():
    result = invoke(["config", "show", "--profile"], code=2)
    assert "--profile requires a value" in result.stderr


def test_dbops_error_becomes_one_line_and_its_exit_code():
    result = invoke(["log"], code=3)
    line = one_line_error(result.stderr)
    assert "no database configured" in line
    assert result.stdout == ""


def test_unknown_profile_exits_3():
    result = invoke(["config", "show", "--profile", "nope"], code=3)
    assert "profile 'nope' not found" in one_line_error(result.stderr)


def test_debug_shows_the_traceback(monkeypatch):
    result = invoke(["log", "--debug"], code=3)
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: no database configured")


def test_debug_env_var_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("DBOPS_DEBUG", "1")
    assert "Traceback" in invoke(["log"], code=3).stderr


def test_unknown_command_is_a_usage_error():
    result = invoke(["frobnicate"], code=2)
    assert "No such command" in result.stderr


def test_python_dash_m_entry_point_works():
    result = subprocess.run(
        [sys.executable, "-m", "dbops", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("dbops ")


def test_console_script_is_installed():
    import shutil

    script = shutil.which("dbops", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script is not None
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "Usage: dbops" in result.stdout
