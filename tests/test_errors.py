"""Exit codes are a public contract (README "Exit codes"): pinned here."""

from dbops.errors import (
    ConfigError,
    DbopsError,
    ExitCode,
    NotFoundError,
    RefusedError,
    RemoteError,
    UsageError,
)


def test_exit_codes_are_pinned():
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "UNEXPECTED": 1,
        "USAGE": 2,
        "CONFIG": 3,
        "NOT_FOUND": 4,
        "REMOTE": 5,
        "REFUSED": 6,
        "INTERRUPTED": 130,
    }


def test_each_error_class_carries_its_exit_code():
    assert DbopsError("x").exit_code == ExitCode.UNEXPECTED
    assert UsageError("x").exit_code == ExitCode.USAGE
    assert ConfigError("x").exit_code == ExitCode.CONFIG
    assert NotFoundError("x").exit_code == ExitCode.NOT_FOUND
    assert RemoteError("x").exit_code == ExitCode.REMOTE
    assert RefusedError("x").exit_code == ExitCode.REFUSED


def test_one_line_collapses_whitespace_and_appends_hint():
    error = RemoteError("queue\n  gone", hint="check\nthe URL")
    assert error.one_line() == "queue gone (check the URL)"


def test_readme_documents_every_exit_code():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1]
    for code in ExitCode:
        assert f"| {int(code)} " in section, f"exit code {int(code)} missing from README"
