"""`dbops --help` must not import the SDKs (docs/architecture.md section 1)."""

import subprocess
import sys

import pytest

HEAVY = (
    "boto3",
    "botocore",
    "supabase",
    "psycopg",
    "httpx",
    "moto",
    "pgserver",
    "prometheus_client",
)
GROUPS = [
    "jobs",
    "dlq",
    "queue",
    "ratelimit",
    "audit",
    "runbook",
    "config",
    "db",
    "sandbox",
    "workers",
]


def imported_modules(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dbops", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Usage:" in result.stdout
    names = set()
    for line in result.stderr.splitlines():
        if "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize(
    "args", [["--help"], *[[g, "--help"] for g in GROUPS], ["top", "--help"], ["metrics", "--help"]]
)
def test_help_imports_no_sdk(args):
    imported = imported_modules(*args)
    assert imported, "importtime produced no output"
    assert "dbops" in imported
    heavy = sorted(imported.intersection(HEAVY))
    assert heavy == [], f"dbops {' '.join(args)} imported {heavy}"


@pytest.mark.parametrize("args", [["doctor", "--help"], ["config", "--help"], ["--help"]])
def test_help_does_not_load_the_settings_machinery(args):
    """pydantic-settings is built lazily, when a command needs its settings (not --help)."""
    imported = imported_modules(*args)
    assert "pydantic_settings" not in imported


def test_cli_modules_do_not_import_each_other_in_a_cycle():
    """`main` and `_deps` share their state through `_state`, not each other."""
    import ast
    from pathlib import Path

    folder = Path(__file__).parents[1] / "src" / "dbops" / "cli"
    deps = ast.parse((folder / "_deps.py").read_text())
    imported = {
        node.module
        for node in ast.walk(deps)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert "dbops.cli.main" not in imported


@pytest.mark.parametrize("group", GROUPS)
def test_group_help_loads_no_service_model_or_pydantic(group):
    """`dbops GROUP --help` is served from the generated help cache (issue 14)."""
    imported = imported_modules(group, "--help")
    assert "pydantic" not in imported
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dbops", group, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    full_names = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line
    }
    assert "dbops.cli.main" in full_names
    assert sorted(n for n in full_names if n.startswith(("dbops.services", "dbops.cli."))) == [
        "dbops.cli._help_cache",
        "dbops.cli._state",
        "dbops.cli.main",
    ]


def test_help_cache_is_fresh():
    """Regenerate with `uv run python -m dbops.cli.reference --help-cache >
    src/dbops/cli/_help_cache.py` after changing a group's commands or options."""
    from pathlib import Path

    from dbops.cli.reference import help_cache

    cached = Path(__file__).parents[1] / "src" / "dbops" / "cli" / "_help_cache.py"
    assert cached.read_text() == help_cache()


def _help_process(*args: str, columns: str = "80") -> str:
    import os

    env = {**os.environ, "COLUMNS": columns}
    result = subprocess.run(
        [sys.executable, "-m", "dbops", *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("group", GROUPS)
def test_cached_group_help_is_what_click_prints(group):
    import click
    import typer

    from dbops.cli.main import app, load_command

    command = load_command(group)
    root = typer.main.get_command(app)
    parent = click.Context(root, info_name="dbops", **root.context_settings)
    ctx = click.Context(command, info_name=group, parent=parent, terminal_width=78)
    assert _help_process(group, "--help") == command.get_help(ctx) + "\n"


def test_a_narrow_terminal_gets_the_real_help_wrapped_to_it():
    narrow = _help_process("dlq", "--help", columns="60")
    assert max(len(line) for line in narrow.splitlines()) <= 60
    assert narrow != _help_process("dlq", "--help")
