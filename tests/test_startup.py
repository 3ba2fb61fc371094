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
GROUPS = ["jobs", "dlq", "queue", "ratelimit", "audit", "runbook", "config", "db", "sandbox"]


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
