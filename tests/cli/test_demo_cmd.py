"""`dbops demo`: starts the sandbox if needed, seeds the incident, says what is wrong."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import invoke, pgdata_parent


@pytest.fixture(scope="module")
def first_demo() -> Iterator[dict[str, Any]]:
    """`dbops demo -o json` in fresh folders (it starts the sandbox); stopped at the end.

    The data folder is outside pytest's basetemp: any pytest session starting on this
    machine chmods `/tmp/pytest-of-<user>` back to 0700, and as root postgres runs as the
    `pgserver` user, who must traverse the path.
    """
    data = tempfile.mkdtemp(prefix="dbops-sbx-test-", dir=pgdata_parent())
    config = tempfile.mkdtemp(prefix="dbops-cfg-test-")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DBOPS_DATA_DIR", data)
        mp.setenv("DBOPS_CONFIG_DIR", config)
        try:
            report = invoke(["demo", "-o", "json"]).json
            yield {"report": report, "DBOPS_DATA_DIR": data, "DBOPS_CONFIG_DIR": config}
        finally:
            invoke(["sandbox", "down"], code=None)
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(config, ignore_errors=True)


@pytest.fixture
def demo_env(first_demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key in ("DBOPS_DATA_DIR", "DBOPS_CONFIG_DIR"):
        monkeypatch.setenv(key, first_demo[key])
    return first_demo


def test_demo_json_reports_the_incident(demo_env: dict[str, Any]) -> None:
    report = demo_env["report"]

    assert report["sandbox"]["already_running"] is False
    assert sorted(report["sandbox"]["started"]) == ["postgres", "sqs"]
    seeded, summary = report["seeded"], report["summary"]
    assert seeded["scenario"] == "incident"
    assert summary["stale_jobs"] == seeded["stale_jobs"] > 0
    assert summary["dlq_depth"] == seeded["dlq_messages"] > 0
    assert summary["main_queue_depth"] == seeded["main_queue_messages"] > 0
    assert summary["dead_workers_holding_jobs"] > 0
    assert summary["orphaned_pending_jobs"] > 0
    offender = summary["top_rate_limit_offender"]
    assert offender["identifier"].startswith("ip:") and offender["requests"] > offender["limit"]
    assert "dbops jobs stale --profile sandbox" in summary["next_commands"]
    assert "dbops doctor --profile sandbox" in summary["next_commands"]
    assert len(summary["findings"]) >= 5
    assert report["audit_error"] is None
    assert report["audit"]["checks"]  # demo runs the real audit against the sandbox


def test_demo_again_reuses_the_sandbox(demo_env: dict[str, Any]) -> None:
    summary = demo_env["report"]["summary"]

    again = invoke(["demo", "-o", "json"]).json

    assert again["sandbox"]["already_running"] is True
    assert (
        again["sandbox"]["status"]["sqs"]["pid"]
        == (demo_env["report"]["sandbox"]["status"]["sqs"]["pid"])
    )
    assert again["summary"]["stale_jobs"] == summary["stale_jobs"]
    assert again["summary"]["dlq_depth"] == summary["dlq_depth"]
    # And the profile it leaves behind works for every other command.
    assert invoke(["doctor", "--profile", "sandbox", "-o", "json"]).json["ok"] is True


def test_demo_table_lists_findings_and_next_steps(demo_env: dict[str, Any]) -> None:
    result = invoke(["demo"])

    assert "What is wrong" not in result.stdout  # the audit report replaces it
    assert "stale" in result.stdout
    assert "Try next" in result.stdout
    assert "dbops dlq list --profile sandbox" in result.stdout


def test_demo_ignores_the_configured_environment(
    demo_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real-looking DATABASE_URL in the environment must never be seeded or wiped.
    monkeypatch.setenv("DATABASE_URL", "postgresql://prod:hunter2hunter2@127.0.0.1:1/prod")
    monkeypatch.setenv("SQS_QUEUE_URL", "http://127.0.0.1:1/000000000000/prod-jobs")
    result = invoke(["demo", "-o", "json"])
    assert result.json["summary"]["stale_jobs"] > 0
    assert "hunter2" not in result.stdout + result.stderr


def test_demo_from_a_fresh_home() -> None:
    """What CI runs: `HOME=$(mktemp -d) dbops demo`, no DBOPS_* folders, no XDG_* set."""
    home = Path(tempfile.mkdtemp(prefix="dbops-home-test-", dir=pgdata_parent()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "XDG_"))}
    env["HOME"] = str(home)

    def dbops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dbops", *args],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
        )

    try:
        result = dbops("demo", "-o", "json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["summary"]["stale_jobs"] > 0 and report["summary"]["dlq_depth"] > 0
        assert (home / ".config" / "dbops" / "config.toml").exists()
        assert (home / ".local" / "share" / "dbops" / "sandbox" / "state.json").exists()
    finally:
        down = dbops("sandbox", "down")
        shutil.rmtree(home, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert "stopped postgres" in down.stderr and "stopped sqs" in down.stderr
