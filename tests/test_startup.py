"""`dbops --help` must not import the SDKs (DESIGN.md section 1)."""

import subprocess
import sys

import pytest

HEAVY = ("boto3", "botocore", "supabase", "psycopg", "httpx", "moto", "pgserver")
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


@pytest.mark.parametrize("args", [["--help"], *[[g, "--help"] for g in GROUPS]])
def test_help_imports_no_sdk(args):
    imported = imported_modules(*args)
    assert imported, "importtime produced no output"
    assert "dbops" in imported
    heavy = sorted(imported.intersection(HEAVY))
    assert heavy == [], f"dbops {' '.join(args)} imported {heavy}"
